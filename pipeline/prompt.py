"""Prompt-based classification through the MLM head (PET, Schick & Schuetze 2021; LM-BFF, Gao et al. 2021):
each text is wrapped in a template with one mask slot (`{text} It was {mask}.`), and the class scores are the
MLM head's logits at the mask of each class's label words (the verbalizer), averaged over a class's words,
trained with cross-entropy over the classes. It reads what continued MLM teaches the output role, which a
[CLS] classifier does not (docs/results.md, the spike-in's cloze test).

Written here because transformers has no prompt classifier. Like the hierarchical one it is a
`PreTrainedModel` with a registered config, so `save_pretrained` / `AutoModelForSequenceClassification`
round-trip it (the MLM's own config is nested under `mlm`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification, PreTrainedConfig, \
    PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from pipeline.cloze import MLM_HEAD_RECORD, mlm_head, split_template
from pipeline.compat import SubConfigSpec
from pipeline.config import ConfigError
from pipeline.text import truncate_ids

class PromptConfig(PreTrainedConfig):
    model_type = "dapt_prompt"
    sub_configs_defaults = {"mlm": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    mlm: PreTrainedConfig | dict | None = None
    label_word_ids: list | None = None  # per class, the token ids of its label words
    mask_token_id: int = 0
    calibration: list | None = None  # per class, the content-free score subtracted from the class scores

    @property
    def num_hidden_layers(self) -> int:  # what layer-wise lr decay counts
        return self.mlm.num_hidden_layers


class PromptClassifier(PreTrainedModel):
    config_class = PromptConfig
    base_model_prefix = "mlm"
    _supports_sdpa = True

    def __init__(self, config: PromptConfig):
        super().__init__(config)
        self.mlm = AutoModelForMaskedLM.from_config(config.mlm)
        self.post_init()

    def _init_weights(self, module):  # every weight comes from the MLM checkpoint (`from_mlm`)
        pass

    @classmethod
    def from_mlm(cls, mlm, label_word_ids: list[list[int]], mask_token_id: int, **config_kwargs):
        """A prompt classifier on a loaded MLM (its head included); `config_kwargs`: the label fields."""
        config = PromptConfig(mlm=mlm.config, label_word_ids=label_word_ids, mask_token_id=mask_token_id,
                              **config_kwargs)
        model = cls(config)
        model.mlm = mlm  # the loaded model itself: its weights and ties as they are
        return model

    def get_input_embeddings(self):
        return self.mlm.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = getattr(self.mlm, self.mlm.base_model_prefix)(input_ids=input_ids, **kwargs).last_hidden_state
        # the template puts one mask in every text (encode_prompts): its position, per row
        at = (input_ids == self.config.mask_token_id).int().argmax(dim=-1)
        states = hidden[torch.arange(len(input_ids), device=hidden.device), at]  # (batch, hidden)
        vocab = mlm_head(self.mlm)(states).float()  # (batch, vocabulary): the head on the mask rows only
        logits = torch.stack([vocab[:, ids].mean(dim=-1) for ids in self.config.label_word_ids], dim=-1)
        if self.config.calibration is not None:  # finetune.prompt.calibrate content_free (`calibrate`)
            logits = logits - logits.new_tensor(self.config.calibration)
        loss = nn.functional.cross_entropy(logits, labels.view(-1)) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def label_word_ids(tokenizer, verbalizer: dict, names: list[str], values: list[str]) -> list[list[int]]:
    """Per class (in label order), the ids of its label words: each word must be one token of the tokenizer
    (tokenised as a word inside a sentence, with a space before it)."""
    verbalizer = {str(k): v for k, v in verbalizer.items()}  # YAML reads `0:` as an integer key
    out = []
    for name, value in zip(names, values):
        words = verbalizer.get(name, verbalizer.get(value))
        if words is None:
            raise ConfigError(f"finetune.prompt.verbalizer: no label words for the class `{name}` (value `{value}`); "
                              f"it names {sorted(verbalizer)}. Give every class one or more words, e.g. "
                              f"{{{value}: [great]}}.")
        ids = []
        for word in [words] if isinstance(words, str) else words:
            pieces = tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise ConfigError(f"finetune.prompt.verbalizer: the label word `{word}` (class `{name}`) is "
                                  f"{len(pieces)} tokens of this tokenizer "
                                  f"({tokenizer.convert_ids_to_tokens(pieces)}); a label word must be one token: "
                                  f"pick another word for the class.")
            ids.append(pieces[0])
        out.append(ids)
    unknown = set(map(str, verbalizer)) - set(names) - set(values)
    if unknown:
        raise ConfigError(f"finetune.prompt.verbalizer: {sorted(unknown)} are not classes of the task "
                          f"(classes: {names}).")
    return out


def prompt_for(tokenizer, recipe, labels: dict, model_dir: str | Path | None = None) -> tuple[list[list[int]], int] | None:
    """For `finetune.model: prompt` (`recipe`: the finetune section), each class's label word ids and the mask
    token id, checked before any work; `labels`: data/task/labels.json; `model_dir`: the MLM, whose head must
    have been trained (`MLM_HEAD_RECORD`). None for the other models."""
    if recipe.model != "prompt":
        return None
    record = Path(model_dir) / MLM_HEAD_RECORD if model_dir is not None else None
    if record is not None and record.is_file() and not json.loads(record.read_text())["trained"]:
        raise ConfigError(f"finetune.model prompt reads the MLM head of {model_dir}, which was never trained (the "
                          f"checkpoint had none and pretrain.head_warmup_tokens is 0); set pretrain.head_warmup_tokens "
                          f"above 0, or use a checkpoint with its MLM head.")
    split_template(recipe.prompt.template, tokenizer)  # the template's errors first
    return label_word_ids(tokenizer, recipe.prompt.verbalizer, labels["names"], labels["values"]), tokenizer.mask_token_id


def calibrate(model: PromptClassifier, tokenizer, recipe, max_length: int) -> list[float]:
    """Contextual calibration (Zhao et al. 2021, "Calibrate Before Use"), for a zero-shot prompt classifier: the
    class scores of the template around each of `recipe.prompt.content_free` (texts with no content, "N/A" and ""),
    averaged, become `config.calibration`, which the forward subtracts from every text's scores. With class
    probabilities softmax(scores), that is their diagonal correction p / p_cf: a content-free text then scores the
    classes alike. A constant shift per class: the ranking of texts by score margin does not change, the
    threshold does. Written here because transformers has no prompt classifier to calibrate. Returns the scores."""
    from datasets import Dataset

    from pipeline.encoding import dynamic_padding, encode_split  # encoding imports this module

    texts = list(recipe.prompt.content_free)
    encoded = encode_split(Dataset.from_dict({"text": texts}), tokenizer, max_length, recipe)
    batch = dynamic_padding(tokenizer, model)([{k: row[k] for k in ("input_ids", "attention_mask")} for row in encoded])
    model.config.calibration = None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        scores = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().mean(dim=0)
    model.train(was_training)
    model.config.calibration = [float(x) for x in scores]
    return model.config.calibration


def tokenize_for_prompt(batch: dict, tokenizer, max_length: int, mode: str, head_tokens: int,
                        layout: tuple[int, int], before: list[int], after: list[int]) -> dict:
    """Batched `datasets.map` function: the text cut (head / tail / head+tail) to the room the template
    leaves, never the template or its mask; `length` / `full_length` as for the flat model."""
    encoded = tokenizer(batch["text"], verbose=False)["input_ids"]
    lead, trail = layout
    room = max_length - len(before) - len(after)
    ids = []
    for x in encoded:
        cut = truncate_ids(x, room, mode, head_tokens, layout)
        ids.append(cut[:lead] + before + cut[lead:len(cut) - trail] + after + cut[len(cut) - trail:])
    full = [len(x) + len(before) + len(after) for x in encoded]
    return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "length": [len(x) for x in ids],
            "full_length": full}


AutoConfig.register(PromptConfig.model_type, PromptConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PromptConfig, PromptClassifier, exist_ok=True)
