"""Truncation on token ids (Sun et al. 2019): head, tail, head+tail, special tokens kept.

Texts are tokenised in full first and cut afterwards, so the cut is exact in tokens. The
tokenizer's own `truncation=True` only keeps the head; transformers 5 tokenizers no longer
expose `build_inputs_with_special_tokens`, so the position of the special tokens is read off
once per tokenizer (`special_layout`) and kept around the cut.
"""

from __future__ import annotations


def special_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a single text."""
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello")["input_ids"]
    for lead in range(len(full) - len(plain) + 1):
        if full[lead:lead + len(plain)] == plain:
            return lead, len(full) - lead - len(plain)
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}")


def truncate_ids(ids: list[int], max_length: int, mode: str = "head", head_tokens: int = 128,
                 layout: tuple[int, int] = (1, 1)) -> list[int]:
    """Cut `ids` (with special tokens, as the tokenizer returns them) to `max_length`.

    `head`: the first tokens; `tail`: the last; `head_tail`: `head_tokens` from the start and
    the rest of the room from the end (128 + 382 for 512 in the paper).
    """
    if len(ids) <= max_length:
        return list(ids)
    lead, trail = layout
    body = ids[lead:len(ids) - trail]
    room = max_length - lead - trail
    if mode == "head":
        kept = body[:room]
    elif mode == "tail":
        kept = body[len(body) - room:]
    elif mode == "head_tail":
        head = min(head_tokens, room)
        kept = body[:head] + (body[len(body) - (room - head):] if room > head else [])
    else:
        raise ValueError(f"unknown truncation mode {mode!r}; use head, tail or head_tail")
    return list(ids[:lead]) + kept + list(ids[len(ids) - trail:])


def tokenize_for_classification(batch: dict, tokenizer, max_length: int, mode: str, head_tokens: int,
                                layout: tuple[int, int]) -> dict:
    """Batched `datasets.map` function: full tokenisation, exact truncation, `length` before the cut."""
    encoded = tokenizer(batch["text"], verbose=False)["input_ids"]  # cut on ids below: no >max warning
    ids = [truncate_ids(x, max_length, mode, head_tokens, layout) for x in encoded]
    return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
            "length": [len(x) for x in ids], "full_length": [len(x) for x in encoded]}


def check_chunk_overlap(overlap: int, max_length: int, layout: tuple[int, int]) -> int:
    """The text tokens a chunk holds (`max_length` less the special tokens); `overlap` must be fewer."""
    room = max_length - layout[0] - layout[1]
    if not 0 <= overlap < room:
        raise ValueError(f"chunk overlap {overlap} must be in [0, {room}) for chunks of {max_length} tokens")
    return room


def chunk_ids(ids: list[int], max_length: int, max_chunks: int, overlap: int = 0,
              layout: tuple[int, int] = (1, 1)) -> list[list[int]]:
    """Split `ids` (with special tokens) into at most `max_chunks` chunks of at most `max_length`,
    each wrapped in the text's special tokens; consecutive chunks share `overlap` tokens.

    Text beyond `max_chunks` chunks is dropped (the head is kept, as in Sun et al. 2019).
    """
    lead, trail = layout
    prefix, suffix = list(ids[:lead]), list(ids[len(ids) - trail:])
    body = ids[lead:len(ids) - trail]
    room = check_chunk_overlap(overlap, max_length, layout)
    chunks, start = [], 0
    while True:
        chunks.append(prefix + list(body[start:start + room]) + suffix)
        start += room - overlap
        if len(chunks) == max_chunks or start + overlap >= len(body):
            return chunks


def tokenize_for_chunks(batch: dict, tokenizer, max_length: int, max_chunks: int, overlap: int,
                        layout: tuple[int, int]) -> dict:
    """Batched `datasets.map` function for the hierarchical model: each text -> a list of chunks.

    A fast tokenizer cuts the chunks itself (`return_overflowing_tokens` with `stride` = overlap):
    the same chunks as `chunk_ids` on the full ids (tests/test_hierarchical.py holds them equal),
    in one pass. Its chunks cover the whole text, so the full length is read off them before the
    first `max_chunks` are kept. A slow tokenizer goes through `chunk_ids`.
    """
    if not getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(batch["text"], verbose=False)["input_ids"]  # cut on ids below: no >max warning
        chunks = [chunk_ids(x, max_length, max_chunks, overlap, layout) for x in encoded]
        full = [len(x) for x in encoded]
    else:
        lead, trail = layout
        check_chunk_overlap(overlap, max_length, layout)
        out = tokenizer(batch["text"], truncation=True, max_length=max_length, stride=overlap,
                        return_overflowing_tokens=True, verbose=False)
        every: list[list[list[int]]] = [[] for _ in batch["text"]]
        for ids, text in zip(out["input_ids"], out["overflow_to_sample_mapping"]):
            every[text].append(ids)
        full = [sum(len(c) - lead - trail for c in x) - overlap * (len(x) - 1) + lead + trail for x in every]
        chunks = [x[:max_chunks] for x in every]
    return {"input_ids": chunks, "length": [sum(len(c) for c in x) for x in chunks],
            "chunks": [len(x) for x in chunks], "full_length": full}
