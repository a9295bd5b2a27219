"""KRT's recipe as their code computes it: ASL's detached focal weight (gradient by hand), plugin
weights as per-image ratios whether the criterion sums (ASL) or averages (BCE), the dynamic
pseudo-label threshold (a hand trace and a constructed score matrix), and herding's storage rules
(COCO: never an image twice across steps; VOC: once per chosen class)."""

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cml.config import load_config
from cml.core.registry import LOSSES
from cml.losses.asl.loss import asymmetric_loss
from cml.plugins.herding.plugin import HerdingBuffer
from cml.plugins.pseudo.plugin import PseudoLabels, calibrate_threshold
from cml.strategies._base import MultiLabelStrategy, build_criterion
from cml.strategies._loss_terms import LossTerms


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_asl_gradient_has_the_focal_weight_detached():
    """d/dz of -y (1-p)^g+ log p - (1-y) p_m^g- log(1 - p_m), the weight held constant:
    positive: -(1-p)^g+ (1 - p); negative with p > clip: p_m^g- p (1 - p) / (1 - p_m); p <= clip: 0."""
    z = torch.tensor([[1.2, -0.3, 0.8, -4.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    asymmetric_loss(z, y, gamma_neg=4, gamma_pos=1, clip=0.05).backward()
    p = [sig(v) for v in (1.2, -0.3, 0.8, -4.0)]
    pm = [max(q - 0.05, 0.0) for q in p]
    want = [-(1 - p[0]) * (1 - p[0])]
    want += [pm[i] ** 4 * p[i] * (1 - p[i]) / (1 - pm[i]) for i in (1, 2)]
    want += [0.0]  # sigmoid(-4) = 0.018 < clip: the shifted probability is clamped at 0
    assert z.grad[0].tolist() == pytest.approx(want, rel=1e-5, abs=1e-9)
    # the differentiated variant adds the weight's own derivative: a larger pull on negatives
    z2 = z.detach().clone().requires_grad_(True)
    asymmetric_loss(z2, y, gamma_neg=4, gamma_pos=1, clip=0.05, focal_grad=True).backward()
    extra = 4 * pm[1] ** 3 * p[1] * (1 - p[1]) * -math.log(1 - pm[1])
    assert z2.grad[0, 1].item() == pytest.approx(want[1] + extra, rel=1e-5)
    assert load_config(None, []).train.asl.focal_grad is False


@pytest.mark.parametrize("loss", ["asl", "bce"])
def test_plugin_weight_is_a_per_image_ratio_whichever_the_criterion(loss):
    """The criterion's value and a plugin's mean term through `plugin_term` keep one ratio: with
    ASL (a sum) both are sums over the images, with BCE (a mean) both are means."""
    train_cfg = load_config(None, [f"train.loss={loss}"]).train
    logits = torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.0, 2.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    strategy = SimpleNamespace(
        _criterion=build_criterion(train_cfg),
        mb_output=logits,
        mb_y=y,
        is_training=True,
        train_cfg=train_cfg,
        mb_outputs={},
        core_model=SimpleNamespace(loss_terms=lambda *a: {}),
        loss_sums_images=LOSSES.get(loss).reduction == "sum",
        loss_terms=LossTerms(),
    )
    criterion = MultiLabelStrategy.criterion(strategy)
    per_image_terms = torch.tensor([0.2, 0.4, 0.9])
    MultiLabelStrategy.plugin_term(strategy, "lwf", per_image_terms.mean())
    term = strategy.loss_terms.batch["lwf"]
    per_image_losses = torch.stack([build_criterion(train_cfg)(logits[i : i + 1], y[i : i + 1]) for i in range(3)])
    reduce = torch.sum if loss == "asl" else torch.mean
    assert criterion.item() == pytest.approx(reduce(per_image_losses).item(), rel=1e-6)
    assert term.item() == pytest.approx(reduce(per_image_terms).item(), rel=1e-6)


def test_dynamic_threshold_hand_trace():
    """Start 0.8, target 1 label per image; strictly-above counts per image, move by 0.005:
    0.8 -> 0.5, 0.795 -> 0.5, 0.79 -> 0.75 (0.792 joins), 0.785 -> 0.75, 0.78 -> 0.75,
    0.775 -> 1.0 (0.777 joins): within 0.1, stop."""
    scores = torch.tensor([[0.81, 0.3], [0.792, 0.2], [0.777, 0.9], [0.5, 0.1]])
    threshold, per_image, reached = calibrate_threshold(scores, 0.8, 1.0)
    assert reached and per_image == 1.0 and threshold == pytest.approx(0.775, abs=1e-12)
    # upward, target 0.5: 1.0 per image from 0.7 to 0.775, 0.75 at 0.78 (0.777 out) to 0.79, 0.5 at
    # 0.795 (0.792 out): 19 moves; no score sits on the grid, so float arithmetic takes the same path
    threshold, per_image, reached = calibrate_threshold(scores, 0.7, 0.5)
    assert reached and per_image == 0.5 and threshold == pytest.approx(0.795, abs=1e-12)
    # the target is out of reach: 99 moves down, clamped at 0.0001, then it says so
    threshold, per_image, reached = calibrate_threshold(scores, 0.3, 5.0)
    assert not reached and threshold == pytest.approx(0.0001) and per_image == 2.0
    assert calibrate_threshold(scores, 0.8, 0.55) == (0.8, 0.5, True)  # already within 0.1


def test_dynamic_threshold_reaches_the_target_on_a_score_matrix():
    scores = torch.from_numpy(np.random.default_rng(0).random((2000, 40))).float()
    target = 2.9 * 40 / 80  # KRT's COCO target with 40 old classes of 80
    threshold, per_image, reached = calibrate_threshold(scores, 0.8, target)
    assert reached and abs(per_image - target) <= 0.1
    assert abs(float((scores > threshold).sum(1).float().mean()) - target) <= 0.1
    assert threshold == pytest.approx(1 - target / 40, abs=0.02)  # uniform scores: P(s > t) = 1 - t


def fake_strategy(scores_by_image, step):
    logits = torch.logit(torch.tensor(scores_by_image))
    dataset = [(torch.tensor([i]), torch.zeros(3), i) for i in range(len(logits))]
    return SimpleNamespace(
        previous_model=lambda x: logits[x[:, 0]],
        adapted_dataset=dataset,
        eval_mb_size=3,
        prepare_images=lambda x: x,
        autocast=contextlib.nullcontext,
        pass_loader_args=lambda dataset: {},  # a pass loads as training does: here, plainly
        clock=SimpleNamespace(train_exp_epochs=0),
        experience=SimpleNamespace(step=step),
    )


def test_plugin_calibrates_each_step_from_the_last_and_labels_strictly_above(capsys):
    plugin = PseudoLabels(0.8, dynamic=True, target=2.0, n_classes=4)  # 2 old classes: target 1 per image
    plugin.before_training_epoch(fake_strategy([[0.81, 0.3], [0.792, 0.2], [0.777, 0.9], [0.5, 0.1]], 1))
    assert plugin.threshold == pytest.approx(0.775) and plugin.step_record() == {"pseudo_threshold": plugin.threshold}
    assert "step 1: pseudo-label threshold 0.7750 (1.00 old labels per image, target 1.00)" in capsys.readouterr().out
    later = fake_strategy([[0.81, 0.3], [0.792, 0.2], [0.777, 0.9], [0.5, 0.1]], 2)
    later.clock.train_exp_epochs = 1  # only the first epoch of a step calibrates
    plugin.before_training_epoch(later)
    assert plugin.step_record() == {"pseudo_threshold": None} and plugin.threshold == pytest.approx(0.775)
    restored = PseudoLabels(0.8, dynamic=True, target=2 / 3, n_classes=4)  # target 1/3 label per image
    restored.load_checkpoint_state(plugin.checkpoint_state())
    restored.before_training_epoch(fake_strategy([[0.79, 0.3], [0.783, 0.2], [0.1, 0.1]], 2))
    # from the carried 0.775: 2/3 per image, up to 0.78: 2/3, up to 0.785: 1/3 (0.783 leaves), stop
    assert restored.threshold == pytest.approx(0.785, abs=1e-12)


def test_dynamic_pseudo_labels_are_strictly_above_the_threshold():
    for dynamic, want in ((True, [[0, 1, 0]]), (False, [[1, 1, 0]])):
        targets = torch.zeros(1, 3)
        strategy = SimpleNamespace(
            mbatch=[None, targets, None], mb_y=targets, previous_outputs=lambda: {"logits": torch.tensor([[0.0, 0.1]])}
        )  # 0.5, 0.525
        PseudoLabels(0.5, dynamic=dynamic).after_forward(strategy)
        assert strategy.mbatch[1].tolist() == want


class Step:
    def __init__(self, classes, rows, labels, n_classes=4):
        self.classes = classes
        self.train_rows = np.array(rows)
        self.train_targets = np.zeros((len(rows), n_classes), np.float32)
        for i, held in enumerate(labels):
            self.train_targets[i, list(held)] = 1


def herding_buffer(monkeypatch, repeats):
    buffer = HerdingBuffer(per_class=2, num_classes=4, seed=0, repeats=repeats)
    # features that make herding pick the rows in a known order: the first two holders of a class
    monkeypatch.setattr(
        HerdingBuffer,
        "step_features",
        lambda self, strategy, scenario, step: torch.eye(len(step.train_rows), 8)[:, :8] + 1,
    )
    return buffer


@pytest.mark.parametrize("repeats", ["never", "per_class"])
def test_herding_storage_rules(monkeypatch, repeats):
    buffer = herding_buffer(monkeypatch, repeats)
    # step 0: classes 0, 1; images 10 and 11 hold both (each class has exactly these 2 holders + none)
    buffer.end_of_step(None, None, Step([0, 1], [10, 11, 12], [{0, 1}, {0, 1}, set()]), first=0, batch_size=4)
    # step 1: image 10 comes back (it holds class 2 too) with image 13
    buffer.end_of_step(None, None, Step([2, 3], [10, 13], [{2, 3}, {2, 3}]), first=2, batch_size=4)
    rows = buffer.rows[: buffer.size].tolist()
    if repeats == "never":  # COCO: one set of stored images across steps
        assert rows == [10, 11, 13]
    else:  # VOC: once per class chosen, in class order
        assert rows == [10, 11, 10, 11, 10, 13, 10, 13]
    assert buffer.first_class[: buffer.size].tolist() == ([0, 0, 2] if repeats == "never" else [0] * 4 + [2] * 4)
