"""Loading tokenizers and models from a local directory or a hub id, safely.

Only safetensors weights are loaded and `trust_remote_code` stays off unless the user sets
`model.trust_remote_code`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from pipeline.config import ConfigError
from pipeline.distributed import is_main_process
from pipeline.sources import OFFLINE_HELP, local_or_hub, local_path


# Files that make a tokenizer, by kind: fast (tokenizer.json), WordPiece, BPE, SentencePiece.
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spm.model",),
                   ("spiece.model",), ("sentencepiece.bpe.model",), ("tokenizer.model",))


def check_model_dir(path: Path, needs: tuple[str, ...] = ("config", "tokenizer", "weights")) -> None:
    """Refuse, before any work, a local model directory that lacks what `needs` names: its config,
    tokenizer files or weights. `load_config`, the first load of every stage, asks for all three.

    Without this, transformers fails late or, worse, not at all: a directory holding only
    config.json loads a 5-token tokenizer that turns every word into [UNK], and weights without
    tokenizer files surface as a NaN loss.
    """
    missing = []
    if "config" in needs and not (path / "config.json").is_file():
        missing.append("config.json")
    if "tokenizer" in needs and not any(all((path / f).is_file() for f in kind) for kind in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, or vocab.txt, vocab.json + merges.txt, or a "
                       "SentencePiece .model)")
    if "weights" in needs and not any(path.glob("*.safetensors")):
        pickled = [p.name for p in path.glob("*.bin")]
        missing.append("model.safetensors" + (f" (found {', '.join(pickled)}: pickled weights are refused; "
                                              f"convert them to safetensors)" if pickled else ""))
    if missing:
        raise ConfigError(f"model.name: `{path}` lacks {'; '.join(missing)}. A model directory needs config.json, "
                          f"tokenizer files and model.safetensors, as save_pretrained writes them for the model "
                          f"and its tokenizer.")


def _resolve(name: str, needs: tuple[str, ...]) -> str:
    path = local_or_hub("model.name", name)
    if path is None:
        return name
    if not path.is_dir():
        raise ConfigError(f"model.name: `{name}` is not a directory. {OFFLINE_HELP}")
    check_model_dir(path, needs)
    return str(path)


@contextlib.contextmanager
def _quiet_load_report():
    """transformers 5 prints a MISSING / UNEXPECTED table, and for a headless checkpoint "This
    checkpoint seem corrupted", whenever a model is loaded with another head than it was saved
    with, which is what this pipeline does on purpose (an MLM head on a sentence encoder, a
    classifier on an MLM). Those reports are silenced here; what matters is said once, in plain
    words, by the callers (`describe_load`), and a real mismatch still raises."""
    import logging

    # (tensor_parallel: "layers were not sharded", said at every load of a model with a TP plan, TP or not)
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.utils.loading_report",
                                              "transformers.distributed.tensor_parallel")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def describe_load(model, info: dict, what: str, name: str) -> None:
    """One line on the weights that did not come from the checkpoint: expected for a new head
    (`what`). Encoder weights missing mean config.json describes another model than the weights
    (a BERT config over RoBERTa weights loads, and trains, a random encoder): refused."""
    encoder = f"{model.base_model_prefix}."
    missing = list(info.get("missing_keys", ()))
    # the pooler belongs to the classification head: an MLM checkpoint is saved without one
    in_encoder = [k for k in missing if k.startswith(encoder) and ".pooler." not in k]
    head = [k for k in missing if k not in in_encoder]
    if in_encoder:
        found = sorted({k.split(".")[0] + ".*" for k in info.get("unexpected_keys", ())})
        raise ConfigError(
            f"model.name: `{name}`: {len(in_encoder)} encoder tensor(s) of the model config.json describes "
            f"({type(model).__name__}) are not in its weights ({', '.join(sorted(in_encoder)[:3])}, ...)"
            f"{'; the weights hold ' + ', '.join(found[:4]) + ' instead' if found else ''}. They would be "
            f"initialised at random and trained as if pretrained. Use the config.json saved with these weights "
            f"(its model_type and architectures), or point model.name at the model you meant.")
    if head and is_main_process():
        print(f"[model] {what}: {len(head)} head tensor(s) are new ({', '.join(sorted(head)[:3])}"
              f"{', ...' if len(head) > 3 else ''}), as expected; training fits them.", flush=True)


def shape_mismatches(source: str, loader, config) -> list[str]:
    """`checkpoint key: shape in the weights vs shape config.json gives` for each tensor whose shapes
    differ (keys compared without the encoder prefix), read from the safetensors headers and a model
    built on the meta device: transformers' own report of this is the table `_quiet_load_report` hides."""
    from safetensors import safe_open

    with torch.device("meta"):
        model = loader.from_config(config)
    prefix = f"{model.base_model_prefix}."
    expected = {k.removeprefix(prefix): tuple(v.shape) for k, v in model.state_dict().items()}
    found = []
    for file in sorted(Path(source).glob("*.safetensors")):
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():
                shape = tuple(weights.get_slice(key).get_shape())
                want = expected.get(key.removeprefix(prefix))
                if want is not None and want != shape:
                    found.append(f"{key}: {list(shape)} in the weights vs {list(want)} from config.json")
    return found


def load_checked(loader, name: str, trust_remote_code: bool, needs: tuple[str, ...] = ("config", "weights"), **kwargs):
    """`loader.from_pretrained(name, ...)` (an Auto class) after the checks of `check_model_dir` on a local
    `name`, safetensors only, Hub kernels off unless `kwargs` ask (`model_kwargs`)."""
    source = _resolve(name, needs)
    if loader not in (AutoConfig, AutoTokenizer):  # a model: Hub kernels only when asked (model_kwargs)
        kwargs.setdefault("use_kernels", False)
    try:
        with _quiet_load_report():
            return loader.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise ConfigError(f"model.name: `{name}` ships its own model code (config.json's `auto_map`), which runs only "
                          f"with model.trust_remote_code: true; nothing of it was run. Read that code and set the "
                          f"param if you trust it, or use a model transformers knows (its model_type).") from None
    except OSError as exc:
        raise ConfigError(f"model.name: cannot load `{name}` ({exc}). The model directory needs config.json, "
                          f"tokenizer files and model.safetensors (pickled .bin weights are refused). "
                          f"{OFFLINE_HELP}") from exc
    except RuntimeError as exc:
        if "mismatched" not in str(exc) or not Path(source).is_dir():
            raise
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        wrong = shape_mismatches(source, loader, config)
        raise ConfigError(f"model.name: `{name}`: config.json does not fit the weights in its safetensors "
                          f"({len(wrong)} tensor(s) of another shape: {'; '.join(wrong[:3])}). Use the "
                          f"config.json saved with these weights (hidden_size, intermediate_size, vocab_size, "
                          f"num_attention_heads).") from exc


def load_config(name: str, trust_remote_code: bool):
    # every stage loads the config first: a directory missing anything a later stage needs stops here
    return load_checked(AutoConfig, name, trust_remote_code, needs=("config", "tokenizer", "weights"))


def load_tokenizer(name: str, trust_remote_code: bool):
    """The tokenizer, checked against the model's embeddings: an id past `config.vocab_size` would
    index outside them (an IndexError deep in the first MLM step)."""
    tokenizer = load_checked(AutoTokenizer, name, trust_remote_code, needs=("tokenizer",))
    local = local_path("model.name", name)  # load_checked above made the local-or-hub decision (and asked the Hub)
    if local is not None and not (local / "config.json").is_file():
        return tokenizer  # a tokenizer-only directory (a base built from scratch): no embeddings to check against
    config = load_checked(AutoConfig, name, trust_remote_code, needs=("config",))
    rows = getattr(config, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise ConfigError(f"model.name: `{name}`: the tokenizer has {len(tokenizer):,} tokens but the model's "
                          f"embeddings hold {rows:,} (config.json vocab_size): ids from {rows:,} up would index "
                          f"past them. Use the tokenizer saved with this model, or grow the embeddings "
                          f"(model.resize_token_embeddings(len(tokenizer))) and save both together.")
    return tokenizer


# Weights are loaded in float32 whatever the checkpoint's dtype: transformers 5 would otherwise keep a
# bf16 checkpoint in bf16 and AdamW would update bf16 master weights (lr 2e-5 steps round away).
# Compute still runs in bf16 under autocast where the device has it (train.precision).
MASTER_DTYPE = torch.float32


def model_kwargs(hub_kernels: bool = False) -> dict:
    """What every model load here passes to `from_pretrained`: safetensors only, float32 master weights,
    and Hub kernels only when `train.hub_kernels` asks for them. transformers 5.25 turns them on when
    `use_kernels` is left unset: on CUDA `model.eval()` / `train()` then fetches `kernels-community/...`
    from the Hub, which fails on an offline node and online runs whatever code the Hub holds that day, so
    the result would no longer follow from params.yaml and dvc.lock. Off, the model runs torch's own ops."""
    return {"use_safetensors": True, "dtype": MASTER_DTYPE, "use_kernels": bool(hub_kernels)}


def load_mlm(name: str, trust_remote_code: bool, with_head_report: bool = False, hub_kernels: bool = False):
    """The model with its MLM head; with `with_head_report`, also what `head_report` says of the head.
    `hub_kernels`: `train.hub_kernels` (`model_kwargs`)."""
    model, info = load_checked(AutoModelForMaskedLM, name, trust_remote_code, output_loading_info=True,
                        **model_kwargs(hub_kernels))
    describe_load(model, info, "MLM head", name)
    return (model, head_report(model, info)) if with_head_report else model


def head_report(model, loading_info: dict) -> dict:
    """Whether the MLM head came from the checkpoint, from transformers' own loading report.

    The head is every weight outside the encoder (`model.base_model_prefix`); any of them in
    `missing_keys` was newly initialised (a sentence-transformers model, a distilled encoder
    saved without its head). Tied weights (the decoder shares the word embeddings) are not
    reported missing, so a head counts as loaded when its own weights were all found.
    """
    encoder = f"{model.base_model_prefix}."
    missing = sorted(k for k in loading_info.get("missing_keys", ()) if not k.startswith(encoder))
    return {"head_complete": not missing, "head_missing_keys": missing}
