"""Loading a classifier: a new one on a pretrained encoder (flat, hierarchical or prompt, per the `finetune`
section) or a saved one of any of these kinds.

Apart from pipeline/model.py so that the stages that load no classifier (collect, pretrain) import neither
classifier module: an edit to the hierarchical or the prompt classifier re-runs fine-tuning and evaluation
only. Importing this module registers both with transformers' Auto classes, which is what lets a saved one
load through `AutoModelForSequenceClassification`.
"""

from __future__ import annotations

from transformers import AutoModel, AutoModelForSequenceClassification

from pipeline.config import Finetune
from pipeline.hierarchical import HierarchicalClassifier  # also registers it with the Auto classes
from pipeline.model import describe_load, load_checked, load_mlm, model_kwargs
from pipeline.prompt import PromptClassifier  # registered likewise


def load_classifier(name: str, trust_remote_code: bool, recipe: Finetune | None = None,
                    names: list[str] | None = None, hub_kernels: bool = False,
                    prompt: tuple[list[list[int]], int] | None = None):
    """With `names`: a new classifier (flat or hierarchical, per the `finetune` section `recipe`) on
    the encoder at `name`. Without: a saved classifier, whichever kind it is (`recipe` is not read).
    `hub_kernels`: `train.hub_kernels` (`model_kwargs`); `prompt` (finetune.model prompt): each class's label
    word ids and the mask token id (pipeline.prompt)."""
    kwargs = {}
    if names is not None:
        if recipe is None:
            raise TypeError("load_classifier: a new classifier (`names` given) needs `recipe`, the finetune section")
        kwargs = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                  "label2id": {n: i for i, n in enumerate(names)}}
        if recipe.model == "prompt":
            if prompt is None:
                raise TypeError("load_classifier: a new prompt classifier needs `prompt` (label word ids, mask id)")
            mlm = load_mlm(name, trust_remote_code, hub_kernels=hub_kernels)
            return PromptClassifier.from_mlm(mlm, prompt[0], prompt[1], **kwargs)
        if recipe.model == "hierarchical":
            encoder, info = load_checked(AutoModel, name, trust_remote_code, output_loading_info=True,
                                  **model_kwargs(hub_kernels))
            describe_load(encoder, {"missing_keys": [f"{encoder.base_model_prefix}.{k}" for k in
                                                     info.get("missing_keys", ())]}, "encoder", name)
            return HierarchicalClassifier.from_encoder(encoder, recipe.pooling, recipe.max_chunks,
                                                       recipe.chunk_overlap, **kwargs)
    model, info = load_checked(AutoModelForSequenceClassification, name, trust_remote_code, output_loading_info=True,
                        **model_kwargs(hub_kernels), **kwargs)
    if names is not None:
        describe_load(model, info, "classifier head", name)
    return model
