"""Every metric against a plain numpy reference written from the definitions."""

import math

import numpy as np
import pytest
import torch

from cml.evaluation.metrics import multilabel_metrics
from cml.evaluation.results import summarize


def ref_ap(scores, positives):
    """Non-interpolated AP with tied scores as one threshold: sum over distinct thresholds of
    (recall gain) x (precision at that threshold)."""
    ap, tp_before = 0.0, 0
    n_pos = positives.sum()
    for thr in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= thr
        tp = positives[chosen].sum()
        ap += (tp - tp_before) / n_pos * (tp / chosen.sum())
        tp_before = tp
    return ap


def reference(scores, targets, threshold):
    n_classes = scores.shape[1]
    aps, precisions, recalls = [], [], []
    tp_all = pred_all = pos_all = 0
    for c in range(n_classes):
        valid = targets[:, c] >= 0
        s, t = scores[valid, c], targets[valid, c] == 1
        pred = s >= threshold
        tp, npred, npos = (pred & t).sum(), pred.sum(), t.sum()
        tp_all, pred_all, pos_all = tp_all + tp, pred_all + npred, pos_all + npos
        if npos == 0:
            continue
        aps.append(ref_ap(s, t))
        precisions.append(tp / npred if npred else 0.0)
        recalls.append(tp / npos)
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0
    cp, cr = np.mean(precisions), np.mean(recalls)
    op, orr = tp_all / pred_all, tp_all / pos_all
    return {
        "map": 100 * np.mean(aps),
        "cp": 100 * cp,
        "cr": 100 * cr,
        "cf1": 100 * f1(cp, cr),
        "macro_f1": 100 * np.mean([f1(p, r) for p, r in zip(precisions, recalls)]),
        "op": 100 * op,
        "or": 100 * orr,
        "of1": 100 * f1(op, orr),
        "classes_without_positive": n_classes - len(aps),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 11, (120, 7)) / 10.0  # coarse scores: many ties, some at the threshold
    targets = (rng.random((120, 7)) < 0.25).astype(np.float32)
    targets[:, 5] = 0  # a class with no positive
    targets[rng.random((120, 7)) < 0.05] = -1  # labels left out
    got = multilabel_metrics(torch.tensor(scores), torch.tensor(targets), threshold=0.5)
    want = reference(scores, targets, 0.5)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
    assert got["classes_without_positive"] == 1
    assert math.isnan(got["per_class_ap"][5])
    valid = targets[:, 0] >= 0
    assert got["per_class_ap"][0] == pytest.approx(100 * ref_ap(scores[valid, 0], targets[valid, 0] == 1), abs=1e-4)


def test_ap_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.1 (pos): thresholds 0.9 -> P=1, R=1/3;
    # 0.8 -> P=2/3, R=2/3; 0.1 -> P=3/4, R=1. AP = 1/3*1 + 1/3*2/3 + 1/3*3/4 = 0.8056
    scores = torch.tensor([[0.9], [0.8], [0.8], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [1.0]])
    got = multilabel_metrics(scores, targets, threshold=0.5)
    assert got["map"] == pytest.approx(100 * (1 / 3 + 2 / 9 + 1 / 4), abs=1e-4)
    # predicted at >= 0.5: three, two of them right; recall 2/3
    assert got["op"] == pytest.approx(200 / 3, abs=1e-4) and got["or"] == pytest.approx(200 / 3, abs=1e-4)


def test_summary_matrix_and_forgetting_by_hand():
    steps = [
        {"map": 80.0, "step_map": [80.0]},
        {"map": 60.0, "step_map": [50.0, 70.0]},
        {"map": 40.0, "step_map": [30.0, 40.0, 50.0]},
    ]
    s = summarize(steps)
    assert s["map_matrix"] == [[80.0, None, None], [50.0, 70.0, None], [30.0, 40.0, 50.0]]
    assert s["avg_map"] == pytest.approx(60.0) and s["last_map"] == 40.0
    # step 0: best 80 -> 30 (50); step 1: best 70 -> 40 (30); mean 40
    assert s["avg_forgetting"] == pytest.approx(40.0)
    assert summarize([{"map": 55.0, "step_map": [55.0]}])["avg_forgetting"] is None


def test_losses_against_plain_formulas():
    from cml.losses.asl.loss import asymmetric_loss
    from cml.losses.bce.loss import masked_bce

    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.5, 3.0]])
    targets = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))
    # BCE: mean over the five labelled entries
    terms = [
        -math.log(sig(2.0)),
        -math.log(1 - sig(-1.0)),
        -math.log(1 - sig(-0.5)),
        -math.log(sig(1.5)),
        -math.log(sig(3.0)),
    ]
    assert float(masked_bce(logits, targets)) == pytest.approx(sum(terms) / 5, rel=1e-6)

    # ASL with gamma_pos 0: positives plain log p; negatives (1 - p_m)^4 * log(1 - p_m), p_m = max(p - clip, 0)
    def neg(v, clip=0.05, gamma=4):
        pm = max(sig(v) - clip, 0.0)
        return -((pm**gamma) * math.log(1 - pm))

    want = -math.log(sig(2.0)) + neg(-1.0) + neg(-0.5) - math.log(sig(1.5)) - math.log(sig(3.0))
    assert float(asymmetric_loss(logits, targets)) == pytest.approx(want, rel=1e-6)


def test_strict_threshold():
    """KRT's and PRS's code predict `score > threshold`; the default is `score >= threshold`."""
    scores = torch.tensor([[0.8, 0.9], [0.8, 0.1], [0.2, 0.8]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    loose = multilabel_metrics(scores, targets, 0.8)
    strict = multilabel_metrics(scores, targets, 0.8, strict=True)
    # loose: class 0 predicted for images 0, 1 (tp 1), class 1 for 0, 2 (tp 1); strict: only image 0's 0.9
    assert (loose["op"], loose["or"]) == (50.0, pytest.approx(200 / 3))
    assert (strict["op"], strict["or"]) == (100.0, pytest.approx(100 / 3))
    assert strict["cp"] == 50.0 and strict["cr"] == 50.0 and strict["macro_f1"] == 50.0
