"""Does the MLM objective itself carry the polarity the spike-in needs MLM to teach?

    python -m experiments.spike_in.probe --model MODEL_DIR --k 100 --tokens 1000000 --lr 2e-4 --cloze 2000

The mechanism check (embeddings.py) found that MLM on the shifted reviews moves the nonce rows, but not
towards their words nor along the sentiment axis. Two readings remain, and a cloze test tells them apart:

- the context does not say *which* polarity stands at a masked sentiment word (antonyms share contexts),
  so the objective has nothing to teach: then the model's MLM head cannot pick the right polarity at a
  masked position, even for the real words it was pretrained on;
- the context does say it, and MLM learns it where the loss sees it (the output role of the tied rows,
  read by the head), but not in the input role the classifier reads: then the head picks the right
  nonce form at a masked position after MLM on the shifted text, while the rows stay off the axis.

Measured (docs/results.md, Spike-in control): the second. The head's pick between the forms goes from
AUC 0.49 to 0.70 over 3M tokens (the review's label: 0.77) while the rows stay where they were on the axis.

`cloze_polarity` masks every occurrence of the target tokens in each text (at once: a lower bound, since
other sentiment words in the same review are masked too) and asks the MLM head which polarity is more
likely there: the log-sum-exp of its logits over the positive targets against the negative ones. Its
accuracy against the polarity of the token that stood there is the share of positions where the context,
as this model reads it, names the right polarity; always answering the commoner polarity scores
max(`positive_share`, 1 - `positive_share`). `auc` is threshold-free (a head may lean to one polarity
everywhere): the chance that a position where a positive token stood gets a larger positive-minus-negative
margin than one where a negative token stood (the Mann-Whitney U over the two groups); 0.5 is chance.
Written by hand: no library scores a class of tokens at a masked position.
"""

from __future__ import annotations

import torch
from scipy.stats import mannwhitneyu


def target_signs(tokenizer, polarity_of: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per vocabulary id +1 (a positive target), -1 (negative) or 0, and the ids of each polarity."""
    vocab = tokenizer.get_vocab()
    missing = sorted(t for t in polarity_of if t not in vocab)
    if missing:
        raise ValueError(f"cloze targets are not tokens of the vocabulary: {missing[:5]}")
    pos_ids = torch.tensor(sorted({vocab[t] for t, p in polarity_of.items() if p == "positive"}))
    neg_ids = torch.tensor(sorted({vocab[t] for t, p in polarity_of.items() if p == "negative"}))
    if not len(pos_ids) or not len(neg_ids):
        raise ValueError("cloze targets need both a positive and a negative token")
    sign = torch.zeros(len(vocab), dtype=torch.long)
    sign[pos_ids], sign[neg_ids] = 1, -1
    return sign, pos_ids, neg_ids


def score(margins: list[torch.Tensor], truths: list[torch.Tensor]) -> dict:
    """Accuracy, AUC and mean signed margin of positive-minus-negative margins against the true signs."""
    if not truths or not sum(len(t) for t in truths):
        raise ValueError("no target token occurs in the cloze texts")
    margin, truth = torch.cat(margins).float(), torch.cat(truths)
    pos_m, neg_m = margin[truth > 0].numpy(), margin[truth < 0].numpy()
    auc = (float(mannwhitneyu(pos_m, neg_m).statistic) / (len(pos_m) * len(neg_m))
           if len(pos_m) and len(neg_m) else float("nan"))
    said = torch.where(margin > 0, 1, -1)
    return {"positions": len(truth), "accuracy": float((said == truth).float().mean()),
            "positive_share": float((truth > 0).float().mean()), "auc": auc,
            "mean_signed_margin": float((margin * truth).mean())}


def target_batches(tokenizer, texts: list[str], sign: torch.Tensor, max_length: int, batch_size: int):
    """(start, encoding, per-position target sign, mask of target positions) per batch of `texts` that holds
    a target: one tokenization for the model's cloze and the label reference, so both score the same positions."""
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        truth = sign[enc["input_ids"]]
        where = truth != 0
        if where.any():
            yield start, enc, truth, where


@torch.no_grad()
def cloze_polarity(model, tokenizer, texts: list[str], polarity_of: dict[str, str], max_length: int = 128,
                   batch_size: int = 32) -> dict:
    """How well the MLM head names the polarity of masked target tokens (`polarity_of`: token ->
    "positive" / "negative"; each a single token of `tokenizer`'s vocabulary)."""
    sign, pos_ids, neg_ids = target_signs(tokenizer, polarity_of)
    was_training = model.training
    model.eval()
    margins, truths = [], []
    for _, enc, truth, where in target_batches(tokenizer, texts, sign, max_length, batch_size):
        enc["input_ids"] = enc["input_ids"].masked_fill(where, tokenizer.mask_token_id)
        logits = model(**enc).logits[where].float()  # (masked positions, vocab)
        margins.append(torch.logsumexp(logits[:, pos_ids], -1) - torch.logsumexp(logits[:, neg_ids], -1))
        truths.append(truth[where])
    model.train(was_training)
    return score(margins, truths)


def review_label_reference(tokenizer, texts: list[str], labels: list[int], polarity_of: dict[str, str],
                           max_length: int = 128, positive_label: int = 1, batch_size: int = 32) -> dict:
    """The same scores for a reader that knows only the review's label and answers it at every target
    position: how much the review-level context says about the polarity of a word in it."""
    sign, _, _ = target_signs(tokenizer, polarity_of)
    answer = torch.tensor([1.0 if label == positive_label else -1.0 for label in labels])
    margins, truths = [], []
    for start, _, truth, where in target_batches(tokenizer, texts, sign, max_length, batch_size):
        margins.append(answer[start:start + len(truth)].unsqueeze(1).expand(truth.shape)[where])
        truths.append(truth[where])
    return score(margins, truths)
