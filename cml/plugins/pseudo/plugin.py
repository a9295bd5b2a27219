"""Old-class pseudo-labels: the previous step's model labels the old classes of the new images.

Under partial labels a step's images carry only that step's classes; an old class they show is
left at 0 and trained as a negative, which is much of what old classes forget. Restoring these
labels from the previous model is what KRT's dynamic pseudo-label module does (Dong et al.,
ICCV 2023); here with one fixed threshold: where the previous model's sigmoid is >= `threshold`,
the target of that old class becomes 1. Only old classes (the previous model's outputs) and only
targets at 0: a real positive stays, and a -1 (left out) stays left out. Every sample of the
batch that reaches the forward is relabelled, replayed ones included (their old classes of
other steps are unlabelled too).

Dynamic threshold (`dynamic: true`, KRT's dynamic pseudo-label module as their code computes it,
reference sheet section 4b): at the start of every step after the first, the previous model scores
the step's whole training set (as the loader gives it: augmented, exemplars joined by `mix: concat`
included); starting from the previous step's threshold (`threshold` at first) the threshold moves
by 0.005 (within [0.0001, 0.999999]) until the mean number of old-class scores strictly above it
per image is within 0.1 of target x n_old / n_classes; 99 moves at most. As in their code the
test |mean - target| < 0.1 is evaluated in float32 (the mean, the target and 0.1 each rounded to
float32, so a mean of 1.0 is not within 0.1 of 0.9 while in float64 it is) and the threshold
after the 99th move is the last one tested. Then an old class is a pseudo-label when its score is
strictly above the threshold. Deviation: where 99 moves do not reach the target, the authors' code
stops with an error; here the run goes on with the threshold reached and says so. The threshold
of each step is printed and written in results.json (`pseudo_threshold`), and carried in the
checkpoint.

The targets are replaced in `after_forward`, when the batch is final (replay plugins add their
samples earlier) and before the criterion reads them, so the order of plugins does not matter.
With `scenario.labels: full` the old classes' 0s are real negatives, so the plugin declares that it
needs `scenario.labels: partial` (checked with the config).
"""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader

from cml.plugins._base import CmlPlugin
from cml.runtime import distributed

MOVE, TOLERANCE, MAX_MOVES, LOWEST, HIGHEST = 0.005, 0.1, 99, 0.0001, 0.999999  # KRT's code


def pseudo_labelled(
    targets: torch.Tensor, old_logits: torch.Tensor, threshold: float, strict: bool = False
) -> torch.Tensor:
    """A copy of `targets` with the confident old classes set to 1 where they were 0."""
    n_old = old_logits.shape[1]
    old = targets[:, :n_old]
    scores = torch.sigmoid(old_logits.float())
    confident = (scores > threshold if strict else scores >= threshold) & (old == 0)
    return torch.cat([torch.where(confident, torch.ones_like(old), old), targets[:, n_old:]], dim=1)


def calibrate_threshold(scores: torch.Tensor, start: float, target: float) -> tuple[float, float, bool]:
    """KRT's search: (threshold, mean old labels per image at it, whether the target was reached).
    `scores`: the previous model's sigmoids (images, old classes)."""
    threshold = start
    target32, tolerance32 = torch.tensor(target, dtype=torch.float32), torch.tensor(TOLERANCE, dtype=torch.float32)
    for move in range(MAX_MOVES + 1):
        mean = (scores > threshold).sum(1).float().mean()  # float32, as the authors' count
        per_image = float(mean)
        if bool((mean - target32).abs() < tolerance32):  # their test, in float32
            return threshold, per_image, True
        if move == MAX_MOVES:
            return threshold, per_image, False
        threshold += MOVE if per_image > target else -MOVE
        threshold = min(max(threshold, LOWEST), HIGHEST)


class PseudoLabels(CmlPlugin):
    def __init__(
        self, threshold: float, dynamic: bool = False, target: float = 2.9, n_classes: int = 1, n_old_by_step=None
    ):
        super().__init__()
        # the old classes of each step: with `model.outputs: all` the previous model scores every
        # class, and only the old ones may be pseudo-labelled or counted towards the target
        self.n_old_by_step = n_old_by_step
        self.threshold = threshold
        self.dynamic = dynamic
        self.target = target
        self.n_classes = n_classes
        self.calibrated = None  # this step's threshold, for results.json

    @torch.no_grad()
    def old_scores(self, strategy) -> torch.Tensor:
        """The previous model's sigmoids over this rank's part of the step's training set, gathered."""
        rows = range(len(strategy.adapted_dataset))[distributed.shard(len(strategy.adapted_dataset))]
        loader = DataLoader(
            strategy.adapted_dataset,
            batch_size=strategy.eval_mb_size,
            sampler=rows,
            **strategy.pass_loader_args(strategy.adapted_dataset),
        )
        scores = []
        for x, _, _ in loader:
            with strategy.autocast():
                scores.append(torch.sigmoid(strategy.previous_model(strategy.prepare_images(x)).float()))
        return distributed.all_gather_cat(torch.cat(scores))

    def before_training_epoch(self, strategy, **kwargs):
        self.calibrated = None
        if not self.dynamic or strategy.previous_model is None or strategy.clock.train_exp_epochs > 0:
            return
        scores = self.old_scores(strategy).cpu()  # one read: the search reads its count at every move
        scores = scores[:, : self.n_old(strategy, scores.shape[1])]
        target = self.target * scores.shape[1] / self.n_classes
        self.threshold, per_image, reached = calibrate_threshold(scores, self.threshold, target)
        self.calibrated = self.threshold
        message = (
            f"step {strategy.experience.step}: pseudo-label threshold {self.threshold:.4f} "
            f"({per_image:.2f} old labels per image, target {target:.2f})"
        )
        if not reached:
            warnings.warn(f"{message}: the target was not reached in {MAX_MOVES} moves", stacklevel=2)
        elif distributed.is_main():
            print(message, flush=True)

    def after_forward(self, strategy, **kwargs):
        old = strategy.previous_outputs()
        if old is not None:
            logits = old["logits"][:, : self.n_old(strategy, old["logits"].shape[1])]
            strategy.mbatch[1] = pseudo_labelled(strategy.mb_y, logits, self.threshold, self.dynamic)

    def n_old(self, strategy, outputs: int) -> int:
        return self.n_old_by_step[strategy.experience.step] if self.n_old_by_step else outputs

    def step_record(self) -> dict:
        return {"pseudo_threshold": self.calibrated} if self.dynamic else {}

    def checkpoint_state(self) -> dict:
        return {"threshold": self.threshold}

    def load_checkpoint_state(self, state: dict) -> None:
        self.threshold = float(state["threshold"])
