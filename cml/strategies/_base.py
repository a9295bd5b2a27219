"""The multi-label training loop: Avalanche's SupervisedTemplate with multi-hot targets.

What changes from the template, and why:
- loss: BCE-with-logits (or ASL, or MultiLabelSoftMarginLoss) over the classes the head has;
  target -1 (a label to leave out) is masked. Targets carry every class of the dataset, so datasets of
  different steps (replay, joint) collate together; the loss takes the first `n_out` columns.
- optimizer and lr schedule: built from the config afresh at the start of every step (after the
  head has grown), the common practice in class-incremental code; schedules step per iteration.
- inputs arrive as uint8 and are normalised here, on the device. A minibatch is
  [images, targets, rows]: `mb_rows` are the images' rows in `data.train`, what replay stores.
- the model's own loss terms (deep supervision, SRN's branches, the discriminative regulariser)
  are added to the criterion: training calls `model(x, full=True)` (see `cml/models/_base.py`).
- the model as it was at the end of the previous step (`previous_model`), kept only when a plugin
  asks for it (`uses_previous_model = True`: LwF, pseudo-labels), shared by all of them, and its
  outputs on the current minibatch computed once per iteration (`previous_outputs()`).
- plugin state: plugins with `checkpoint_state()` / `load_checkpoint_state(state)` are saved in
  the checkpoint with the previous model (`checkpoint_state()` here), so a resumed run equals an
  uninterrupted one whatever the plugins.
- CUDA: autocast in bf16/fp16 (fp16 with a gradient scaler) and channels_last, when asked.
- gradients clipped by value before the optimizer step when asked (PRS's code clips at 5).
- online mode (PRS): the last incomplete batch of a step is dropped, as PRS's loader does.
- non-finite loss (`train.nonfinite`): "stop" raises TrainingDiverged naming the step, epoch and
  batch. The check stays on the device (no GPU sync per batch) and is read every
  NONFINITE_CHECK_EVERY batches and at the end of every epoch, where the weights are checked too
  (a finite loss followed by non-finite weights can only come from the epoch's last update).
  "skip" reads the flag at every batch (one sync) and skips that batch's backward and update.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from avalanche.benchmarks.utils.data_loader import collate_from_data_or_kwargs
from avalanche.training.templates import SupervisedTemplate
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cml import distributed
from cml.errors import TrainingDiverged, UserError
from cml.scenarios.augment import Augment, augment_batch
from cml.scenarios.images import input_stats, normalize
from cml.strategies._batches import StepBatches

NONFINITE_CHECK_EVERY = 32  # stop mode: batches between two reads of the device-side flag


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets[:, : logits.shape[1]]
    valid = (targets >= 0).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.clamp(min=0), reduction="none")
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def multilabel_soft_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torch's MultiLabelSoftMarginLoss (PRS's loss): per image the mean BCE over its classes, then
    the mean over the batch; -1 targets are left out of their image's mean."""
    targets = targets[:, : logits.shape[1]]
    valid = (targets >= 0).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.clamp(min=0), reduction="none")
    return ((loss * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0,
                    gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8,
                    focal_grad: bool = False) -> torch.Tensor:
    """ASL (Ridnik et al., ICCV 2021), the loss of KRT's recipe: negatives' probabilities are
    shifted down by `clip` and both sides focal-weighted; summed over the batch as the authors do.
    The focal weight is a constant of the gradient, as the ASL project computes it by default
    (`disable_torch_grad_focal_loss`) and KRT uses it; `focal_grad` differentiates it too."""
    targets = targets[:, : logits.shape[1]]
    valid = (targets >= 0).float()
    y = targets.clamp(min=0)
    p = torch.sigmoid(logits.float())
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    with torch.set_grad_enabled(focal_grad and torch.is_grad_enabled()):
        weight = torch.pow(1 - (p * y + p_neg * (1 - y)), gamma_pos * y + gamma_neg * (1 - y))
    loss = loss * weight
    return -(loss * valid).sum()


def build_criterion(train_cfg):
    if train_cfg.loss == "asl":
        a = train_cfg.asl
        return lambda logits, targets: asymmetric_loss(logits, targets, a.gamma_neg, a.gamma_pos, a.clip,
                                                       focal_grad=a.focal_grad)
    if train_cfg.loss == "multilabel_soft_margin":
        return multilabel_soft_margin
    return masked_bce


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def build_optimizer(model: torch.nn.Module, train_cfg, step: int = 0) -> torch.optim.Optimizer:
    lr = train_cfg.first_step_lr if step == 0 and train_cfg.first_step_lr else train_cfg.lr
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if not train_cfg.decay_1d:  # as ASL's add_weight_decay, which KRT uses: no decay on biases, norms
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay)
    cls = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, weight_decay=train_cfg.weight_decay)


def build_scheduler(optimizer, train_cfg, total_iterations: int):
    if train_cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_iterations))
    if train_cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                                   total_steps=max(2, total_iterations), pct_start=0.2)
    return None


class MultiLabelStrategy(SupervisedTemplate):
    def __init__(self, *, model, train_cfg, eval_batch_size: int, device, plugins=(), evaluator=None, seed: int = 0):
        if train_cfg.batch_size % distributed.world():
            raise UserError(f"train.batch_size: {train_cfg.batch_size} is not divisible by the {distributed.world()} "
                            "processes (WORLD_SIZE); the global batch is split evenly between them")
        self.train_cfg = train_cfg
        self.seed = seed
        self.batch_share = 1.0  # this rank's share of the global batch x world (`cml.distributed`)
        self.compiled = None  # torch.compile of the training model (`train.compile`), None after a failure
        self._compile_failed = False
        self.scheduler = None
        self.previous_model = None
        self._previous_cache: tuple[object, dict] | None = None
        self.mb_outputs: dict = {}
        self.loss_parts: dict[str, torch.Tensor] = {}
        self.skipped_batches = 0  # this step's batches skipped for a non-finite loss
        self.term_scale = 1.0  # `plugin_term`: the global batch size when the criterion is a sum
        self._skip_update = False
        self._nonfinite: tuple[torch.Tensor, torch.Tensor] | None = None  # (first bad batch, its loss)
        on_cuda = torch.device(device).type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train_cfg.amp) if on_cuda else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.channels_last = train_cfg.channels_last and on_cuda
        self.input_stats = None  # from the backbone, on first use
        self.device_augment = None  # train.augment_on_device, on first use
        super().__init__(model=model, optimizer=build_optimizer(model, train_cfg), criterion=build_criterion(train_cfg),
                         train_mb_size=train_cfg.batch_size,
                         train_epochs=1 if train_cfg.online else train_cfg.epochs,
                         eval_mb_size=eval_batch_size, device=device, plugins=list(plugins),
                         evaluator=evaluator)

    def _check_distributed_training_compatibility(self):
        """Avalanche's check knows only its own plugins; cml's work under torchrun (docs/scaling.md)."""
        return True

    @property
    def core_model(self) -> torch.nn.Module:
        """The cml model itself, also when `model` is wrapped (DistributedDataParallel)."""
        return getattr(self.model, "module", self.model)

    @property
    def mb_rows(self) -> torch.Tensor:
        return self.mbatch[2]

    def check_model_and_optimizer(self, **kwargs):
        """Grow the heads, then wrap for torchrun (a new DDP wrapper each step: the parameters
        changed), then build the optimizer over the wrapped model's parameters."""
        model = self.model_adaptation(self.core_model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = distributed.wrap_model(model, self.train_cfg.sync_batchnorm)
        if self.train_cfg.compile and not self._compile_failed:
            self.compiled = torch.compile(self.model)  # compiles at the first call, again when heads grow
        self.make_optimizer()

    def _loader_args(self, num_workers: int = 0, persistent_workers: bool = False, prefetch_factor=None, **kwargs):
        args = {"num_workers": num_workers, "pin_memory": self.device.type == "cuda"}
        if num_workers > 0:
            args.update(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
        collate_from_data_or_kwargs(self.adapted_dataset, args)
        return args

    def make_train_dataloader(self, **kwargs):
        """This process's slices of the step's global batches (`StepBatches`)."""
        self.train_size = len(self.adapted_dataset)  # after plugins (joint, replay) changed it
        batches = StepBatches(self.train_size, self.train_mb_size, (self.seed, self.experience.step),
                              drop_incomplete=self.train_cfg.online)
        self.dataloader = DataLoader(self.adapted_dataset, batch_sampler=batches, **self._loader_args(**kwargs))

    def make_eval_dataloader(self, **kwargs):
        """This process's contiguous part of the test set, in order (the metric gathers them)."""
        rows = range(len(self.adapted_dataset))[distributed.shard(len(self.adapted_dataset))]
        self.dataloader = DataLoader(self.adapted_dataset, batch_size=self.eval_mb_size, sampler=rows,
                                     **self._loader_args(**kwargs))

    @torch.inference_mode()
    def eval(self, exp_list, **kwargs):
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
                        self.optimizer.state[p] = previous.state[p]
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
        x = normalize(x.to(self.device, non_blocking=True), self.input_stats)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()

    def forward(self):
        with self.autocast():
            if not self.is_training:  # not through DDP: the ranks' test parts may differ in batches
                return self.core_model(self.mb_x)
            self.mb_outputs = self._compiled_forward() if self.compiled else self.model(self.mb_x, full=True)
            return self.mb_outputs["logits"]

    def _compiled_forward(self) -> dict:
        """torch.compile fails at the first call where it cannot compile (no C compiler, an
        unsupported operation): train on in eager mode, with one warning."""
        try:
            return self.compiled(self.mb_x, full=True)
        except Exception as err:  # dynamo and inductor raise many types
            first = (str(err).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"train.compile: torch.compile failed ({type(err).__name__}: {first}); "
                          "training continues without compiling", stacklevel=2)
            self.compiled, self._compile_failed = None, True
            return self.model(self.mb_x, full=True)

    def criterion(self):
        loss = self._criterion(self.mb_output, self.mb_y)
        if not self.is_training:
            return loss
        self.batch_share = distributed.batch_share(len(self.mb_y))  # 1 in one process
        self.term_scale = 1.0
        if self.train_cfg.loss == "asl":  # a sum over the images, not a mean: weighted by world in the end
            loss = loss * (distributed.world() / self.batch_share)
            self.term_scale = len(self.mb_y) * distributed.world() / self.batch_share  # the global batch
        self.loss_parts = self.core_model.loss_terms(self.mb_outputs, self.mb_y, self._criterion)
        return loss + sum(self.loss_parts.values()) if self.loss_parts else loss

    def plugin_term(self, mean_term: torch.Tensor) -> torch.Tensor:
        """A plugin's loss term (a mean over the images) on the criterion's scale: times the global
        batch when the criterion sums over the images (ASL), so that a plugin's weight is its
        per-image ratio to the classification loss whichever the criterion and the batch size."""
        return mean_term * self.term_scale

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
        if any(getattr(p, "uses_previous_model", False) for p in self.plugins):
            self.previous_model = frozen_copy(self.core_model)
        self._previous_cache = None
        super()._after_training_exp(**kwargs)

    def step_record(self) -> dict:
        """What the plugins add to this step's record in results.json (their `step_record()`)."""
        record = {}
        for plugin in self.plugins:
            record.update(plugin.step_record() if hasattr(plugin, "step_record") else {})
        return record

    def checkpoint_state(self) -> dict:
        plugins = {type(p).__name__: p.checkpoint_state() for p in self.plugins if hasattr(p, "checkpoint_state")}
        previous = self.previous_model.state_dict() if self.previous_model is not None else None
        state = {"previous_model": previous, "plugins": plugins}
        if self.train_cfg.optimizer_scope == "stream":  # the next step continues this optimizer
            state["stream_optimizer"] = self.optimizer.state_dict()
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        """After the model has been regrown and loaded to the checkpoint's step."""
        if state["previous_model"] is not None:
            self.previous_model = frozen_copy(self.core_model)
            self.previous_model.load_state_dict(state["previous_model"])
        for plugin in self.plugins:
            if hasattr(plugin, "load_checkpoint_state"):
                plugin.load_checkpoint_state(state["plugins"][type(plugin).__name__])
        if self.train_cfg.optimizer_scope == "stream":
            self.optimizer = build_optimizer(self.core_model, self.train_cfg)  # its state, for the next step
            self.optimizer.load_state_dict(state["stream_optimizer"])

    def _before_training_exp(self, **kwargs):
        self.skipped_batches, self._nonfinite = 0, None
        super()._before_training_exp(**kwargs)

    def _batch_name(self, index: int) -> str:
        n = len(self.dataloader)
        return (f"step {self.experience.step}, epoch {index // n + 1}/{self.train_epochs}, "
                f"batch {index % n + 1}/{n}")

    def _weights_finite(self) -> bool:
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _loss_usable(self) -> bool:
        """False when this batch is to be skipped; raises when the run is to stop."""
        finite = torch.isfinite(self.loss.detach())
        index = self.clock.train_exp_iterations
        if self.train_cfg.nonfinite == "stop":
            first, value = self._nonfinite or (torch.full_like(finite, -1, dtype=torch.long), self.loss.detach())
            new = ~finite & (first < 0)
            self._nonfinite = (torch.where(new, index, first), torch.where(new, self.loss.detach(), value))
            return True
        if bool(distributed.all_reduce_(finite.float(), "min")):  # every rank skips the same batches
            return True
        if not self._weights_finite():
            raise TrainingDiverged(f"{self._batch_name(max(index - 1, 0))}: the weights became non-finite after this "
                                   "batch's update; skipping batches cannot repair them: lower train.lr")
        self.skipped_batches += 1
        self._skip_update = True
        self.loss = torch.zeros_like(self.loss)  # counts as 0 in the epoch's mean loss
        return False

    def _check_nonfinite(self, end_of_epoch: bool = False) -> None:
        first = self._nonfinite[0] if self._nonfinite is not None else torch.tensor(-1, device=self.device)
        # the first bad batch on any rank, so that every rank stops at the same check
        first = distributed.all_reduce_(torch.where(first < 0, 2**62, first), "min")
        if int(first) < 2**62:
            index, local = int(first), self._nonfinite
            value = float(local[1]) if local is not None and int(local[0]) == index else float("nan")
            raise TrainingDiverged(f"{self._batch_name(index)}: the loss is {value}; training stopped "
                                   "(train.nonfinite: stop); lower train.lr, or set train.nonfinite=skip "
                                   "to skip such batches")
        if end_of_epoch and not self._weights_finite():
            raise TrainingDiverged(f"{self._batch_name(self.clock.train_exp_iterations - 1)}: the weights "
                                   "became non-finite after this batch's update; training stopped; lower train.lr")

    def _after_training_iteration(self, **kwargs):
        super()._after_training_iteration(**kwargs)
        if self.clock.train_exp_iterations % NONFINITE_CHECK_EVERY == 0:
            self._check_nonfinite()

    def _after_training_epoch(self, **kwargs):
        self._check_nonfinite(end_of_epoch=True)
        super()._after_training_epoch(**kwargs)

    def backward(self):
        if not self._loss_usable():
            return
        loss = self.loss * self.batch_share  # torchrun: the ranks' mean gradient is the global batch's
        loss = self.scaler.scale(loss) if self.scaler else loss
        loss.backward(retain_graph=self.retain_graph)

    def optimizer_step(self):
        if self._skip_update:
            self._skip_update = False
            return
        if self.train_cfg.clip_grad_value is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_value_(params, self.train_cfg.clip_grad_value)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
