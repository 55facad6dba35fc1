"""Hierarchical classifier for texts longer than the encoder (Sun et al. 2019, section 5.3.2).

A text is cut into up to `max_chunks` chunks of `model.max_length` tokens (optionally
overlapping), every chunk of the batch is encoded in one batched pass through the encoder, the
chunks' [CLS] states are pooled by mean, max or learned attention, and a linear layer
classifies the pooled vector.

Written here because neither transformers nor datasets has a chunk-pooling classifier. It is a
regular `PreTrainedModel` with its own registered config, so `save_pretrained` writes
config.json + model.safetensors and `AutoModelForSequenceClassification.from_pretrained` loads
it back (the encoder's own config is nested under `encoder`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedConfig,
                          PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput

from pipeline.compat import SubConfigSpec
from pipeline.config import POOLINGS


class HierarchicalConfig(PreTrainedConfig):
    model_type = "dapt_hierarchical"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    pooling: str = "mean"
    max_chunks: int = 4
    chunk_overlap: int = 0

    @property
    def num_hidden_layers(self) -> int:  # what layer-wise lr decay counts
        return self.encoder.num_hidden_layers


class HierarchicalClassifier(PreTrainedModel):
    config_class = HierarchicalConfig
    base_model_prefix = "encoder"
    _supports_sdpa = True

    def __init__(self, config: HierarchicalConfig):
        super().__init__(config)
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {config.pooling!r}")
        self.encoder = AutoModel.from_config(config.encoder)
        _drop_pooler(self.encoder)  # the chunks' [CLS] states are pooled here instead
        hidden = config.encoder.hidden_size
        if config.pooling == "attention":  # additive attention over chunks (a learned query)
            self.chunk_attention = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        dropout = getattr(config.encoder, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config.encoder, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=getattr(self.config.encoder, "initializer_range", 0.02))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_encoder(cls, encoder, pooling: str, max_chunks: int, chunk_overlap: int = 0,
                     **config_kwargs) -> "HierarchicalClassifier":
        """A new classifier on a loaded pretrained encoder (`AutoModel`: an MLM checkpoint loads as
        one); `config_kwargs` are the label fields (num_labels, id2label, label2id)."""
        _drop_pooler(encoder)
        config = HierarchicalConfig(encoder=encoder.config, pooling=pooling, max_chunks=max_chunks,
                                    chunk_overlap=chunk_overlap, **config_kwargs)
        model = cls(config)
        missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"encoder weights from {encoder.name_or_path} do not fit: missing {missing}, "
                               f"unexpected {unexpected}")
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        """`input_ids`, `attention_mask`: (batch, chunks, tokens); a chunk whose mask is all zero is padding."""
        batch, chunks, length = input_ids.shape
        mask = attention_mask.reshape(batch * chunks, length)
        real = mask.any(dim=-1)  # (batch * chunks,): which chunks exist
        # one batched pass over the real chunks only: padding chunks cost nothing
        states = self.encoder(input_ids=input_ids.reshape(batch * chunks, length)[real],
                              attention_mask=mask[real]).last_hidden_state[:, 0]
        reps = states.new_zeros(batch * chunks, states.shape[-1])
        reps[real] = states
        reps, real = reps.view(batch, chunks, -1), real.view(batch, chunks)
        pooled = self._pool(reps, real)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _pool(self, reps: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        weights = real.unsqueeze(-1).to(reps.dtype)
        if self.config.pooling == "mean":
            return (reps * weights).sum(1) / weights.sum(1).clamp(min=1)
        if self.config.pooling == "max":
            return reps.masked_fill(~real.unsqueeze(-1), torch.finfo(reps.dtype).min).amax(1)
        scores = self.chunk_attention(reps).squeeze(-1).float()
        scores = scores.masked_fill(~real, float("-inf"))
        attn = torch.softmax(scores, dim=-1).to(reps.dtype)
        return (attn.unsqueeze(-1) * reps).sum(1)


def _drop_pooler(encoder) -> None:
    """BERT-style encoders carry a pooler this model never uses; unused parameters would break
    DDP's gradient reduction and waste optimizer state, so it goes (their forward skips a None pooler)."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


class ChunkCollator:
    """Pads a batch of chunked texts to (batch, most chunks, longest chunk rounded up to a multiple
    of 8); padding chunks get an all-zero attention mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8):
        self.pad = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        chunks = max(len(f["input_ids"]) for f in features)
        length = max(len(c) for f in features for c in f["input_ids"])
        length = -(-length // self.multiple) * self.multiple
        ids = torch.full((len(features), chunks, length), self.pad, dtype=torch.long)
        mask = torch.zeros((len(features), chunks, length), dtype=torch.long)
        for i, f in enumerate(features):
            for j, chunk in enumerate(f["input_ids"]):
                ids[i, j, :len(chunk)] = torch.as_tensor(chunk)
                mask[i, j, :len(chunk)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        label_key = next((k for k in ("labels", "label") if k in features[0]), None)
        if label_key is not None:
            batch["labels"] = torch.as_tensor([f[label_key] for f in features], dtype=torch.long)
        return batch


AutoConfig.register(HierarchicalConfig.model_type, HierarchicalConfig, exist_ok=True)
AutoModelForSequenceClassification.register(HierarchicalConfig, HierarchicalClassifier, exist_ok=True)
