"""Where does the MLM objective itself put the nonce rows? The input-role loss, run to convergence.

    (cd experiments/spike_in/adapted && dvc repro)     # the MLM-ready base, experiments/spike_in/base
    python -m experiments.spike_in.landscape --k 100 --warm experiments/spike_in/base

The grid's MLM moved the nonce rows, but not onto the sentiment axis the classifier reads, while the
cloze test showed the MLM head learning the forms' polarity in the output role (docs/results.md). Two
causes remain, and they call for different remedies: the budget (245 noisy steps per 1M tokens are too
few to reach rows the objective would prefer: a GPU-size budget fixes it), or the objective (with this
body, the rows that best predict the masked neighbours are not the rows that mean the words: no budget
fixes it). This separates them on a fixed problem. The encoder and the warmed-up head are frozen; the
only free weights are the nonce rows, in their input role (the forms are never masked nor targets, so
no output-role gradient reaches them); the masks are drawn once, so the loss is one function of the
rows. Then:

- the loss at the base rows, at the oracle rows (each form the mean of its words, `oracle.py`) and part
  of the way there, on the windows the rows are fitted on and on held-out windows;
- the rows fitted by Adam over many passes (from the base rows, and from the oracle rows), with where
  they sit: the sentiment axis and the cosine to their words (`embeddings.similarity`).

If the oracle rows have the lower loss and the fit from the base rows finds them, the objective wants
the words' meaning and only the budget is short. If the fit finds rows of lower loss than the oracle's,
off the axis, the objective itself does not ask for the meaning the classifier needs.

A hand-written loop, not the Trainer: the free weights are two rows of a frozen matrix, substituted at
the forms' positions through `inputs_embeds`, and the losses of several row settings must be compared
on the same masks.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset

from experiments.spike_in.embeddings import similarity
from experiments.spike_in.oracle import oracle_rows
from experiments.spike_in.spike import DATA, load_map, read_jsonl
from pipeline.mlm import pack
from pipeline.cloze import mlm_head
from pipeline.model import load_mlm, load_tokenizer


def form_blocks(tokenizer, texts: list[str], form_ids: list[int], block: int, n: int) -> torch.Tensor:
    """`n` packed blocks of `block` ids that hold at least one nonce form, in corpus order."""
    packed = pack(Dataset.from_dict({"text": texts}), tokenizer, block)
    forms = torch.tensor(form_ids)
    ids = torch.tensor(packed["input_ids"])
    ids = ids[torch.isin(ids, forms).any(1)]
    if len(ids) < n:
        raise SystemExit(f"[landscape] error: only {len(ids)} blocks of {block} tokens hold a nonce form; "
                         f"raise --docs or lower --windows")
    return ids[:n]


def fixed_masks(ids: torch.Tensor, form_ids: list[int], special_ids: list[int], mask_id: int, p: float,
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels with a fixed `p` of the other tokens replaced by [MASK] (the forms stay visible and are
    never targets: only their input role is measured). All [MASK], not BERT's 80/10/10: one fixed problem."""
    g = torch.Generator().manual_seed(seed)
    eligible = ~torch.isin(ids, torch.tensor(form_ids + special_ids))
    chosen = (torch.rand(ids.shape, generator=g) < p) & eligible
    return torch.where(chosen, mask_id, ids), torch.where(chosen, ids, -100)


class RowLoss:
    """The frozen model's MLM loss as a function of the nonce rows alone."""

    def __init__(self, model, form_ids: list[int]):
        self.model = model.eval()
        for w in model.parameters():
            w.requires_grad_(False)
        self.words = model.get_input_embeddings().weight
        self.slot = torch.full((self.words.shape[0],), -1, dtype=torch.long)
        self.slot[torch.tensor(form_ids)] = torch.arange(len(form_ids))

    def __call__(self, rows: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        slot = self.slot[inputs]
        embeds = torch.where((slot >= 0)[..., None], rows[slot.clamp(min=0)], self.words[inputs])
        body = getattr(self.model, self.model.base_model_prefix)
        hidden = body(inputs_embeds=embeds, attention_mask=torch.ones_like(inputs)).last_hidden_state
        masked = labels != -100  # the head on masked positions only, as pipeline.mlm.masked_only_forward
        return F.cross_entropy(mlm_head(self.model)(hidden[masked]).float(), labels[masked])

    def mean(self, rows: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
        with torch.no_grad():
            losses = [(self(rows, inputs[i:i + batch], labels[i:i + batch]), int((labels[i:i + batch] != -100).sum()))
                      for i in range(0, len(inputs), batch)]
        return sum(float(v) * n for v, n in losses) / sum(n for _, n in losses)


def fit(loss: RowLoss, start: torch.Tensor, train: tuple, epochs: int, lr: float, batch: int, seed: int,
        report=None) -> torch.Tensor:
    """Adam on the rows alone, `epochs` passes over the fixed (inputs, labels) in seeded order, cosine decay."""
    rows = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([rows], lr=lr)
    steps = epochs * -(-len(train[0]) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(train[0]), generator=g)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss(rows, train[0][idx], train[1][idx]).backward()
            opt.step()
            sched.step()
        if report:
            report(epoch + 1, rows.detach())
    return rows.detach()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--warm", required=True,
                    help="the MLM model whose body and head stay frozen: the adapt stage's base "
                         "(experiments/spike_in/base), or `python -m experiments.spike_in.adapt --tokens 0 --out DIR` "
                         "for MiniLM with its head warmed up alone (a sentence encoder: MLM perplexity ~1,000)")
    ap.add_argument("--docs", type=int, default=20_000, help="reviews of the shifted corpus to draw windows from")
    ap.add_argument("--windows", type=int, nargs=2, default=[2000, 500], metavar=("FIT", "HELD_OUT"))
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    mapping, polarity = load_map(DATA / "map.json", args.k)
    model, tokenizer = load_mlm(args.warm, False), load_tokenizer(args.warm, False)
    vocab = tokenizer.get_vocab()
    forms = sorted({vocab[f] for f in mapping.values()})
    rows = read_jsonl(DATA / "corpus" / f"unsup_k{args.k:03d}.jsonl.gz")[: args.docs]
    texts = [r["text"] for r in rows]
    random.Random(0).shuffle(texts)
    ids = form_blocks(tokenizer, texts, forms, args.block, sum(args.windows))
    inputs, labels = fixed_masks(ids, forms, tokenizer.all_special_ids, tokenizer.mask_token_id, 0.15, seed=0)
    cut = args.windows[0]
    train, held = (inputs[:cut], labels[:cut]), (inputs[cut:], labels[cut:])
    print(f"[landscape] {len(forms)} nonce rows; {cut} + {len(ids) - cut} windows of {args.block} tokens; "
          f"{int((ids[:cut, :, None] == torch.tensor(forms)).sum())} form occurrences in the fitted ones", flush=True)
    loss = RowLoss(model, forms)
    emb = model.get_input_embeddings().weight.detach()

    def describe(label: str, r: torch.Tensor) -> None:
        full = emb.clone()
        full[forms] = r
        out = {"label": label, "loss_fit": loss.mean(r, *train, args.batch), "loss_held_out": loss.mean(r, *held, args.batch),
               **{k: v for k, v in similarity(full, vocab, mapping, polarity, emb).items()
                  if k in ("cos_to_own_word", "nonce_on_own_side_of_sentiment_axis", "nonce_move_norm",
                           "cos_between_polarity_forms")}}
        print(f"[landscape] {json.dumps(out)}", flush=True)

    base = emb[forms].clone()
    for mix in (0.0, 0.25, 0.5, 1.0):
        describe(f"oracle rows, mix {mix:g}" if mix else "base rows", oracle_rows(emb, vocab, mapping, mix)[forms])
    for name, start in (("base", base), ("oracle", oracle_rows(emb, vocab, mapping, 1.0)[forms])):
        fit(loss, start, train, args.epochs, args.lr, args.batch, seed=1,
            report=lambda e, r, n=name: describe(f"fitted from the {n} rows, epoch {e}", r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
