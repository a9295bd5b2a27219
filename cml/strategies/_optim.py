"""The optimizer and the lr schedule of a step, built afresh at the start of every
step (after the heads have grown), the common practice in class-incremental code."""

from __future__ import annotations

import math

import torch


def build_optimizer(model: torch.nn.Module, train_cfg, step: int = 0) -> torch.optim.Optimizer:
    lr = train_cfg.first_step_lr if step == 0 and train_cfg.first_step_lr else train_cfg.lr
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if not train_cfg.decay_1d:  # as ASL's add_weight_decay, which KRT uses: no decay on biases, norms
        groups = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay)
    cls = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, weight_decay=train_cfg.weight_decay)


def build_scheduler(optimizer, train_cfg, total_iterations: int):
    """Every schedule is stepped after each update (`MultiLabelStrategy.optimizer_step`); a
    per-epoch one holds its lr through the epoch's iterations."""
    if train_cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_iterations))
    if train_cfg.scheduler == "cosine_epoch":
        # MULTI-LANE's engine.py: CosineAnnealingLR(T_max=epochs) stepped after each epoch, i.e.
        # lr_e = lr (1 + cos(pi e / E)) / 2 through epoch e (eta_min 0), here by iteration
        epochs = 1 if train_cfg.online else train_cfg.epochs  # the strategy's train_epochs
        per_epoch = max(1, total_iterations // epochs)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: (1 + math.cos(math.pi * (it // per_epoch) / epochs)) / 2
        )
    if train_cfg.scheduler == "onecycle":
        # at least 10 steps: torch's OneCycleLR divides by zero when pct_start * total_steps == 1
        # (5 steps at 0.2); a step of under 10 iterations then ends before the cycle does
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=max(10, total_iterations), pct_start=0.2
        )
    return None
