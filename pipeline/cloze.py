"""What a masked-LM head reads, apart from any classifier: which module of a model is its MLM head, whether
pretrain trained it (the record written beside the model), and a cloze template's token ids around its text.

Shared by MLM pretraining (the masked-only forward, `pretrain.prompt_corpus`) and the prompt classifier
(pipeline/prompt.py). A module of its own so that `pretrain` does not import, and re-run on an edit to, the
classifier.
"""

from __future__ import annotations

from pipeline.config import ConfigError

TEXT, MASK = "{text}", "{mask}"
MLM_HEAD_RECORD = "mlm_head.json"  # written by pretrain beside the model: whether its MLM head was ever trained
# The module that maps hidden states to vocabulary logits, by model family (BERT, DeBERTa: cls; RoBERTa:
# lm_head; ALBERT: predictions); the masked-only MLM forward (pipeline.mlm) uses it too.
HEAD_ATTRIBUTES = ("cls", "lm_head", "predictions")


def mlm_head(model):
    """`model`'s MLM head module, or None for a model family not listed in HEAD_ATTRIBUTES."""
    return next((getattr(model, a) for a in HEAD_ATTRIBUTES if hasattr(model, a)), None)


def split_template(template: str, tokenizer) -> tuple[list[int], list[int]]:
    """The template's token ids before and after the text (the mask slot holding the tokenizer's own mask
    token); a template without exactly one `{text}` and one `{mask}` is refused."""
    for slot in (TEXT, MASK):
        if template.count(slot) != 1:
            raise ConfigError(f"finetune.prompt.template: `{template}` must hold `{slot}` exactly once (it holds it "
                              f"{template.count(slot)} times), e.g. `{{text}} It was {{mask}}.`")
    if tokenizer.mask_token is None:
        raise ConfigError("finetune.model prompt: this model's tokenizer has no mask token; prompt-based "
                          "classification needs an MLM tokenizer.")
    before, after = template.replace(MASK, tokenizer.mask_token).split(TEXT)
    ids = [tokenizer(part, add_special_tokens=False)["input_ids"] if part.strip() else [] for part in (before, after)]
    if sum(x.count(tokenizer.mask_token_id) for x in ids) != 1:
        raise ConfigError(f"finetune.prompt.template: `{template}` does not tokenise to one mask token.")
    return ids[0], ids[1]
