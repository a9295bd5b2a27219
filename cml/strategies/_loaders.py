"""The template's loaders: per-rank slices of the global batches for training, contiguous test
parts for evaluation, and one-shot passes that load as training does (`pass_loader_args`)."""

from __future__ import annotations

from avalanche.benchmarks.utils.data_loader import collate_from_data_or_kwargs
from torch.utils.data import DataLoader

from cml.core.errors import UserError
from cml.runtime import distributed
from cml.strategies._batches import StepBatches


class StepLoaders:
    """Mixed into `MultiLabelStrategy` before Avalanche's template (whose loader methods it replaces)."""

    _pass_settings: dict = {}  # the training loader's workers, for `pass_loader_args`

    def _loader_args(
        self, num_workers: int = 0, persistent_workers: bool = False, prefetch_factor=None, dataset=None, **kwargs
    ):
        """Pinned memory whenever the device is not the CPU (non-blocking copies to it). The training
        loader's settings are kept: every other pass over a step loads as it does."""
        if dataset is None and self.is_training:
            self._pass_settings = {"num_workers": num_workers, "prefetch_factor": prefetch_factor}
        args = {"num_workers": num_workers, "pin_memory": self.device.type != "cpu"}
        if num_workers > 0:
            args.update(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
        collate_from_data_or_kwargs(self.adapted_dataset if dataset is None else dataset, args)
        return args

    def pass_loader_args(self, dataset) -> dict:
        """DataLoader arguments of a one-shot pass over `dataset` during training (L3A's statistics,
        pseudo-label calibration, herding, EWC's Fisher): training's workers and pinned memory,
        workers not kept (persistent workers would outlive their one pass)."""
        return self._loader_args(**self._pass_settings, dataset=dataset)

    def make_train_dataloader(self, **kwargs):
        """This process's slices of the step's global batches (`StepBatches`)."""
        self.train_size = len(self.adapted_dataset)  # after plugins (joint, replay) changed it
        batches = StepBatches(
            self.train_size,
            self.train_mb_size,
            (self.seed, self.experience.step),
            drop_incomplete=self.train_cfg.online,
        )
        self.trained_size = batches.trained  # results' n_trained: what the batches hold
        if batches.n_batches == 0:  # plan_steps refuses this up front for the step's own images
            raise UserError(
                f"step {self.experience.step}: its {self.train_size} training images make no training "
                f"batch of train.batch_size {self.train_mb_size}"
                f"{' (train.online drops an incomplete one)' if self.train_cfg.online else ''}; "
                "lower train.batch_size"
            )
        self.dataloader = DataLoader(self.adapted_dataset, batch_sampler=batches, **self._loader_args(**kwargs))

    def make_eval_dataloader(self, **kwargs):
        """This process's contiguous part of the test set, in order (the metric gathers them)."""
        rows = range(len(self.adapted_dataset))[distributed.shard(len(self.adapted_dataset))]
        self.dataloader = DataLoader(
            self.adapted_dataset, batch_size=self.eval_mb_size, sampler=rows, **self._loader_args(**kwargs)
        )
