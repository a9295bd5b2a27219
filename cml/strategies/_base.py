"""The multi-label training loop: Avalanche's SupervisedTemplate with multi-hot targets.

The template keeps the loop; each concern lives in its own module:
- loss (`cml/losses`): the declared loss of `train.loss` over the classes the head has (targets
  carry every class of the dataset, so that steps' datasets collate together; -1 is masked),
  plus the model's own loss terms (deep supervision, SRN's branches, the discriminative
  regulariser): training calls `model(x, full=True)` (`cml/models/_base.py`). A loss declared
  with reduction "sum" is weighted by the number of processes under torchrun.
- plugins' loss terms through one door, `plugin_term`, added in name order (`_loss_terms.py`).
- precision (`_precision.py`), compile (`_compile.py`), non-finite losses (`_nonfinite.py`),
  optimizer and lr schedule afresh every step (`_optim.py`), global batches and loaders
  (`_batches.py`, `_loaders.py`).
- `model` is the cml model itself, never the DistributedDataParallel wrapper (private to
  `forward`), so that plugins see the same parameter names in one process and under torchrun.
What stays here, and why:
- inputs arrive as uint8 and are normalised here, on the device, with the backbone's statistics
  (`input_stats`). A minibatch is [images, targets, rows]: `mb_rows` are the images' rows in
  `data.train`, what replay stores.
- the previous step's model (`previous_model`), kept only when a plugin declares
  `uses_previous_model`, shared by all, its outputs computed once per batch (`previous_outputs()`).
- plugin state: each `CmlPlugin`'s `checkpoint_state()` is saved under its registered name with
  the previous model (`checkpoint_state()` here), so a resumed run equals an uninterrupted one.
- gradients clipped by value before the optimizer step when asked (PRS's code clips at 5).
- online mode (PRS): the last incomplete batch of a step is dropped, as PRS's loader does.
"""

from __future__ import annotations

import torch
from avalanche.training.templates import SupervisedTemplate

from cml.core.errors import UserError
from cml.core.registry import LOSSES
from cml.models._base import MultiLabelModelProtocol, input_stats, normalized
from cml.plugins._base import CmlPlugin
from cml.runtime import distributed
from cml.scenarios.augment import Augment, augment_batch
from cml.strategies._compile import CompiledForward
from cml.strategies._loaders import StepLoaders
from cml.strategies._loss_terms import LossTerms
from cml.strategies._nonfinite import CHECK_EVERY, NonFiniteGuard
from cml.strategies._optim import build_optimizer, build_scheduler
from cml.strategies._parts import (
    build_criterion,
    canonical_order,
    frozen_copy,
    state_on_device_of,
    undeclared_previous_model,
)
from cml.strategies._precision import Precision


class MultiLabelStrategy(StepLoaders, SupervisedTemplate):
    def __init__(self, *, model, train_cfg, eval_batch_size: int, device, plugins=(), evaluator=None, seed: int = 0):
        if not isinstance(model, MultiLabelModelProtocol):  # else a TypeError a minute in, at `full=True`
            raise UserError(
                f"model: a {type(model).__name__} is not a cml model; expected a cml.models.MultiLabelModel "
                "(backbone, num_classes, forward(x, full=...), loss_terms, named_head_parameters)"
            )
        if train_cfg.batch_size % distributed.world():
            raise UserError(
                f"train.batch_size: {train_cfg.batch_size} is not divisible by the {distributed.world()} "
                "processes (WORLD_SIZE); the global batch is split evenly between them"
            )
        self.train_cfg = train_cfg
        self.seed = seed
        self.batch_share = 1.0  # this rank's share of the global batch x world (`cml.runtime.distributed`)
        self.compiled = CompiledForward(train_cfg.compile)
        self.precision = Precision(train_cfg.amp, device)
        self.nonfinite = NonFiniteGuard(train_cfg.nonfinite)
        self.loss_sums_images = LOSSES.get(train_cfg.loss).reduction == "sum"
        self.keeps_previous_model = any(isinstance(p, CmlPlugin) and p.uses_previous_model for p in plugins)
        self.scheduler = None
        self._wrapped = model  # what `forward` trains through: DistributedDataParallel under torchrun
        self._previous_model = None
        self._previous_cache: tuple[object, dict] | None = None
        self.mb_outputs: dict = {}
        self.loss_terms = LossTerms()
        self.batch_parts: dict[str, torch.Tensor] = {}  # this batch's criterion and model terms
        self.channels_last = train_cfg.channels_last and torch.device(device).type == "cuda"
        self.term_scale = 1.0  # `plugin_term`: the global batch size when the criterion is a sum
        self.input_stats = None  # from the backbone, on first use
        self.device_augment = None  # train.augment_on_device, on first use
        self.eval_draws_rng = False  # True for a step's own evaluation: it draws as the CLI always has
        super().__init__(
            model=model,
            optimizer=build_optimizer(model, train_cfg),
            criterion=build_criterion(train_cfg),
            train_mb_size=train_cfg.batch_size,
            train_epochs=1 if train_cfg.online else train_cfg.epochs,
            eval_mb_size=eval_batch_size,
            device=device,
            plugins=canonical_order(list(plugins)),
            evaluator=evaluator,
        )

    def _check_distributed_training_compatibility(self):
        """Avalanche's check knows only its own plugins; cml's work under torchrun (docs/scaling.md)."""
        return True

    @property
    def core_model(self) -> torch.nn.Module:
        """The cml model itself, the same object as `model`: the DistributedDataParallel wrapper is
        private to `forward` (`_wrapped`), so that no plugin can read `module.`-prefixed names."""
        return self.model

    @property
    def mb_rows(self) -> torch.Tensor:
        return self.mbatch[2]

    def check_model_and_optimizer(self, **kwargs):
        """Grow the heads, then wrap for torchrun (a new DDP wrapper each step: the parameters
        changed), then build the optimizer over the wrapped model's parameters."""
        model = self.model_adaptation(self.model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._wrapped = distributed.wrap_model(model, self.train_cfg.sync_batchnorm)
        self.model = getattr(self._wrapped, "module", self._wrapped)  # SyncBatchNorm may be new modules
        self.compiled.wrap(self._wrapped)
        self.make_optimizer()

    @torch.inference_mode()
    def eval(self, exp_list, **kwargs):
        """Beyond a step's own evaluation (`eval_draws_rng`, `Experiment.train_step`) torch's
        generators are left as they were: each DataLoader draws its base seed from them, so an
        `eval(test_stream)` between steps would otherwise change the next step's augmentation."""
        if self.eval_draws_rng:
            return super().eval(exp_list, **kwargs)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_initialized() else []):
            return super().eval(exp_list, **kwargs)

    def make_optimizer(self, **kwargs):
        """`train.optimizer_scope: stream` (PRS): the new optimizer takes over the state (Adam's moments
        and step count) of every parameter it shares with the previous one, which is then the same
        optimizer as long as the model does not grow (PRS's heads have every class from the start)."""
        previous = self.optimizer if self.train_cfg.optimizer_scope == "stream" else None
        self.optimizer = build_optimizer(self.model, self.train_cfg, self.experience.step)
        if previous is not None:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p in previous.state:
                        self.optimizer.state[p] = state_on_device_of(p, previous.state[p])
        self.scheduler = build_scheduler(self.optimizer, self.train_cfg, len(self.dataloader) * self.train_epochs)

    def _unpack_minibatch(self):
        super()._unpack_minibatch()
        if self.is_training and self.train_cfg.augment_on_device:  # the loader did not augment
            x = self.mbatch[0].to(self.device, non_blocking=True)
            if self.device_augment is None:
                self.device_augment = Augment(self.train_cfg, x.shape[-1])
            self.mbatch[0] = augment_batch(self.device_augment, x)
        self.mbatch[0] = self.prepare_images(self.mbatch[0])

    def prepare_images(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the model's input on the device: normalised as its backbone expects,
        channels_last when asked. Plugins that run the model on images of their own use it too."""
        if self.input_stats is None:
            self.input_stats = tuple(t.to(self.device) for t in input_stats(self.core_model))  # once, not per batch
        x = normalized(x.to(self.device, non_blocking=True), self.input_stats)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self):
        return self.precision.autocast()

    def forward(self):
        with self.autocast():
            if not self.is_training:  # not through DDP: the ranks' test parts may differ in batches
                return self.core_model(self.mb_x)
            self._wrapped.training = self.model.training  # the wrapper's own flag; its module is `model`
            self.mb_outputs = self.compiled(self._wrapped, self.mb_x)
            return self.mb_outputs["logits"]

    def criterion(self):
        loss = self._criterion(self.mb_output, self.mb_y)
        if not self.is_training:
            return loss
        self.batch_share = distributed.batch_share(len(self.mb_y))  # 1 in one process
        self.term_scale = 1.0
        if self.loss_sums_images:  # a sum over the images, not a mean: weighted by world in the end
            loss = loss * (distributed.world() / self.batch_share)
            self.term_scale = len(self.mb_y) * distributed.world() / self.batch_share  # the global batch
        weight = self.loss_terms.criterion_weight()
        loss = loss * weight if weight != 1.0 else loss
        model_terms = self.core_model.loss_terms(self.mb_outputs, self.mb_y, self._criterion)
        self.batch_parts = {"criterion": loss, **{f"model.{name}": t for name, t in model_terms.items()}}
        return loss + sum(model_terms.values()) if model_terms else loss

    def plugin_term(self, name: str, term: torch.Tensor, per_image: bool = True) -> None:
        """Adds plugin NAME's TERM to this batch's loss (`_loss_terms.py`: the one door). A term that
        is a mean over the images (PER_IMAGE) goes on the criterion's scale: times the global batch
        when the criterion sums over the images (ASL), so that a plugin's weight is its per-image
        ratio to the classification loss whichever the criterion and the batch size."""
        self.loss_terms.add(name, term * self.term_scale if per_image else term)

    def weigh_criterion(self, name: str, weight: float) -> None:
        """Plugin NAME's weight on the criterion for this step (CSC's alpha); weights multiply."""
        self.loss_terms.criterion_weights[name] = weight

    def _before_backward(self, **kwargs):
        super()._before_backward(**kwargs)
        self.loss = self.loss_terms.fold(self.loss, self.batch_parts, self.batch_share)

    @property
    def previous_model(self):
        """The previous step's model (None in step 0), kept only for plugins that declare
        `uses_previous_model`: read without the declaration a plugin would be inert, so refused."""
        if not self.keeps_previous_model:
            raise UserError(undeclared_previous_model(self.plugins))
        return self._previous_model

    def previous_outputs(self) -> dict | None:
        """The previous step's model on the current inputs (no gradient), computed once per batch."""
        if self.previous_model is None:
            return None
        if self._previous_cache is None or self._previous_cache[0] is not self.mb_x:
            with torch.no_grad(), self.autocast():
                self._previous_cache = (self.mb_x, self.previous_model(self.mb_x, full=True))
        return self._previous_cache[1]

    def _after_training_exp(self, **kwargs):
        distributed.broadcast_buffers(self.core_model)  # one model for the plugins, eval and checkpoint
        if self.keeps_previous_model:
            self._previous_model = frozen_copy(self.core_model)
        self._previous_cache = None
        super()._after_training_exp(**kwargs)

    def step_record(self) -> dict:
        """What the plugins add to this step's record in results.json (their `step_record()`)."""
        record = {"loss_breakdown": self.loss_terms.breakdown()} if self.loss_terms.batches else {}
        for plugin in self.plugins:
            record.update(plugin.step_record() if isinstance(plugin, CmlPlugin) else {})
        return record

    def checkpoint_state(self) -> dict:
        plugins = {p.name: p.checkpoint_state() for p in self.plugins if isinstance(p, CmlPlugin)}
        previous = self._previous_model.state_dict() if self._previous_model is not None else None
        state = {"previous_model": previous, "plugins": plugins, "scaler": self.precision.state_dict()}
        if self.train_cfg.optimizer_scope == "stream":  # the next step continues this optimizer
            state["stream_optimizer"] = self.optimizer.state_dict()
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        """After the model has been regrown and loaded to the checkpoint's step."""
        if state["previous_model"] is not None:  # on the training device: Avalanche moves only `model`
            self._previous_model = frozen_copy(self.core_model).to(self.device)
            self._previous_model.load_state_dict(state["previous_model"])
        self.precision.load_state_dict(state.get("scaler"))  # None in a checkpoint of an older cml
        for plugin in self.plugins:
            if isinstance(plugin, CmlPlugin) and state["plugins"][plugin.name] is not None:
                plugin.load_checkpoint_state(state["plugins"][plugin.name])
        if self.train_cfg.optimizer_scope == "stream":
            self.optimizer = build_optimizer(self.core_model, self.train_cfg)  # its state, for the next step
            self.optimizer.load_state_dict(state["stream_optimizer"])

    @property
    def skipped_batches(self) -> int:
        return self.nonfinite.skipped_batches

    @property
    def skipped_updates(self) -> int:
        return self.nonfinite.skipped_updates

    def _before_training_exp(self, **kwargs):
        self.nonfinite.start_step()
        self.loss_terms.start_step()
        super()._before_training_exp(**kwargs)

    def _after_training_iteration(self, **kwargs):
        super()._after_training_iteration(**kwargs)
        if self.clock.train_exp_iterations % CHECK_EVERY == 0:
            self.nonfinite.check(self)

    def _after_training_epoch(self, **kwargs):
        self.nonfinite.check(self, end_of_epoch=True)
        super()._after_training_epoch(**kwargs)

    def backward(self):
        if self.nonfinite.loss_usable(self):  # torchrun: the ranks' mean gradient is the global batch's
            self.precision.backward(self.loss * self.batch_share, self.retain_graph)

    def optimizer_step(self):
        if self.nonfinite.take_skip():
            return
        if self.train_cfg.clip_grad_value is not None:
            self.precision.unscale(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_value_(params, self.train_cfg.clip_grad_value)
        self.nonfinite.count_update(self.precision.step(self.optimizer), self.clock.train_exp_iterations)
        if self.scheduler is not None:
            self.scheduler.step()
