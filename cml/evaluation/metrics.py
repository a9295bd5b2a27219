"""Multi-label metrics on sigmoid scores and targets (1 positive, 0 negative, -1 left out).

- AP: non-interpolated average precision of one class, with tied scores forming one threshold
  (torchmetrics' definition, the same as scikit-learn's). mAP: the mean over the classes that
  have at least one positive; the others have no AP and are counted in `classes_without_positive`.
- CP, CR, CF1 (ML-GCN convention, CF1 = 2 CP CR / (CP + CR)) and `macro_f1` (the mean of the
  per-class F1, which SRN and KRT report under the name CF1), over the classes with a positive;
  a class with no prediction has precision 0.
- OP, OR, OF1 over all scored classes. Predictions are `score >= threshold`, or
  `score > threshold` with `strict` (KRT's `preds.gt(0.8)`, PRS's `probs > 0.5`).
All values in percent.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_average_precision


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def _f1(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return _ratio(2 * p * r, p + r)


def per_class_ap(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """AP of each class (a fraction); NaN for classes with no positive."""
    scores, targets = scores.double(), targets.long()
    ap = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in (targets == 1).any(0).nonzero().flatten().tolist():
        ap[c] = float(binary_average_precision(scores[:, c], targets[:, c], ignore_index=-1))
    return ap


def multilabel_metrics(
    scores: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5, strict: bool = False
) -> dict:
    ap = per_class_ap(scores, targets)
    valid = targets >= 0
    positive = targets == 1
    predicted = ((scores > threshold) if strict else (scores >= threshold)) & valid
    tp = (predicted & positive).sum(0).double()
    n_pred, n_pos = predicted.sum(0).double(), positive.sum(0).double()
    scored = n_pos > 0
    precision, recall = _ratio(tp, n_pred)[scored], _ratio(tp, n_pos)[scored]
    cp, cr = precision.mean(), recall.mean()
    op, orec = _ratio(tp.sum(), n_pred.sum()), _ratio(tp.sum(), n_pos.sum())
    values = {
        "map": ap[scored].mean(),
        "cp": cp,
        "cr": cr,
        "cf1": _f1(cp, cr),
        "macro_f1": _f1(precision, recall).mean(),
        "op": op,
        "or": orec,
        "of1": _f1(op, orec),
    }
    result = {k: 100 * float(v) if int(scored.sum()) else float("nan") for k, v in values.items()}
    result["classes_without_positive"] = int((~scored).sum())
    result["per_class_ap"] = (100 * ap).tolist()
    return result
