"""The hand-written loop of bench/plugin_overhead.py: what each plugin setting adds to a plain
PyTorch loop, written out as a researcher would, without cml's strategy, hooks or plugins. It
uses cml only for what both sides share by construction: the scenario's data and batch order,
the optimizer factory, the loss, the replay buffer classes and the frozen copy.

Per plugin: the previous model's forward once per batch (lwf, pseudo, pod, tdl); pseudo-labels
(fixed threshold, or KRT's dynamic calibration before the step: the previous model scores the
step's training set and the threshold moves by 0.005 toward the target); LwF's distillation;
EWC's penalty as the natural per-name loop and, after the step, its Fisher pass and the online
merge; PODNet's spatial and flat terms over forward hooks on the backbone stages, kept for the
whole loop; KRT's token distillation; the replay batch and the buffer's end-of-step update."""

from __future__ import annotations

import contextlib
import math
import time
from types import SimpleNamespace

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cml.losses.bce.loss import masked_bce
from cml.models._base import input_stats, normalized
from cml.plugins.pod.plugin import stage_modules
from cml.strategies._base import frozen_copy
from cml.strategies._batches import StepBatches
from cml.strategies._optim import build_optimizer

PREVIOUS = ("lwf", "pseudo", "pod", "tdl")  # the plugins that read the previous model


def bare_fisher(model, dataset, batch_size, device):
    stats = input_stats(model)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()
    batches = 0
    for x, y, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = normalized(x.to(device), stats), y.to(device)
        grads = torch.autograd.grad(masked_bce(model(x), y), list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads):
            if grad is not None:
                fisher[name] += grad.pow(2)
        batches += 1
    model.train()
    return {n: f / batches for n, f in fisher.items()}


@torch.no_grad()
def calibrated_threshold(
    previous, dataset, stats, start: float, target: float, n_classes: int, batch_size: int, device
) -> float:
    """KRT's search: move by 0.005 until the mean count of old scores > threshold is within 0.1."""
    scores = torch.cat(
        [
            torch.sigmoid(previous(normalized(x.to(device), stats)))
            for x, _, _ in DataLoader(dataset, batch_size=batch_size)
        ]
    )
    target = target * scores.shape[1] / n_classes
    threshold = start
    for _ in range(100):
        per_image = float((scores > threshold).sum(1).float().mean())
        if abs(per_image - target) <= 0.1:
            break
        threshold = min(max(threshold + (0.005 if per_image > target else -0.005), 0.0001), 0.999999)
    return threshold


def pod_vectors(maps):
    squares = [m.pow(2) for m in maps]
    return [F.normalize(torch.cat([a.sum(3).flatten(1), a.sum(2).flatten(1)], 1), dim=1) for a in squares]


def bare_loop(
    model, previous, term, buffer, plugins, cfg, scenario, device, online_ewc: bool = False
) -> tuple[float, float]:
    """(wall, CPU) seconds to train step 1 with `plugins` written out by hand, then the end-of-step work."""
    stats, s, bs = input_stats(model), cfg.strategy, cfg.train.batch_size
    dataset, step = scenario.benchmark.train_stream[1].dataset, scenario.steps[1]
    batches = StepBatches(len(dataset), bs, (cfg.seed, 1), drop_incomplete=cfg.train.online)
    loader = DataLoader(dataset, batch_sampler=batches)  # the strategy's batches of step 1, in its order
    optimizer = build_optimizer(model, cfg.train)
    factor = math.sqrt(step.n_seen / len(step.classes))
    maps, hooks = {"new": [], "old": []}, []
    if "pod" in plugins:  # hooks for the whole loop: the stages' outputs of both models
        for key, net in (("new", model), ("old", previous)):
            hooks += [
                module.register_forward_hook(lambda _, __, out, key=key: maps[key].append(out))
                for module in stage_modules(net.backbone, s.pod.stages)
            ]
    model.train()
    start, start_cpu = time.perf_counter(), time.process_time()
    threshold = s.pseudo.threshold
    if "pseudo" in plugins and s.pseudo.dynamic:
        threshold = calibrated_threshold(
            previous, dataset, stats, threshold, s.pseudo.target, len(scenario.class_names), cfg.eval.batch_size, device
        )
        maps["old"].clear()
    for _ in range(cfg.train.epochs):
        for x, y, _ in loader:
            k = min(len(buffer), int(s.replay.batch_ratio * len(y) + 0.5)) if buffer is not None else 0
            if k:
                slots = buffer.draw(k)
                stored = scenario.train_images(buffer.rows[slots], buffer.targets[slots])
                x, y = torch.cat([x, torch.stack([stored[i][0] for i in range(k)])]), torch.cat([y, stored.targets])
            x, y = normalized(x.to(device), stats), y.to(device)
            out = model(x, full=True)
            if set(plugins) & set(PREVIOUS):
                with torch.no_grad():
                    old = previous(x, full=True)
            if "pseudo" in plugins:
                n = old["logits"].shape[1]
                scores = torch.sigmoid(old["logits"])
                sure = (scores > threshold if s.pseudo.dynamic else scores >= threshold) & (y[:, :n] == 0)
                y = torch.cat([torch.where(sure, torch.ones_like(y[:, :n]), y[:, :n]), y[:, n:]], 1)
            logits = out["logits"]
            loss = masked_bce(logits, y)
            if "lwf" in plugins:
                T = s.lwf.temperature
                student, teacher = logits[:, : old["logits"].shape[1]] / T, old["logits"] / T
                target = torch.sigmoid(teacher)
                kl = F.binary_cross_entropy_with_logits(
                    student, target, reduction="none"
                ) - F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
                loss = loss + s.lwf.weight * (T**2 * kl.mean())
            if "ewc" in plugins:
                params = dict(model.named_parameters())
                penalty = torch.zeros((), device=device)
                for p_name, fisher in term["fisher"].items():
                    part = params[p_name][tuple(slice(0, k) for k in fisher.shape)]
                    penalty = penalty + (fisher * (part - term["anchor"][p_name]).pow(2)).sum()
                loss = loss + s.ewc.weight / 2 * penalty
            if "pod" in plugins:
                new_maps, old_maps = maps["new"], maps["old"]
                spatial = torch.stack(
                    [(a - b).norm(dim=1).mean() for a, b in zip(pod_vectors(new_maps[:-1]), pod_vectors(old_maps[:-1]))]
                ).mean()
                flat = (1 - F.cosine_similarity(new_maps[-1].mean((2, 3)), old_maps[-1].mean((2, 3)), dim=1)).mean()
                loss = loss + factor * (s.pod.spatial_weight * spatial + s.pod.flat_weight * flat)
                maps["new"], maps["old"] = [], []
            if "tdl" in plugins:
                old_tokens = old["tokens"].flatten(1)
                new_tokens = out["tokens"][:, : old["tokens"].shape[1]].flatten(1)
                loss = loss + s.tdl.weight * factor * (1 - F.cosine_similarity(new_tokens, old_tokens, dim=1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for hook in hooks:
        hook.remove()
    if set(plugins) & set(PREVIOUS):
        frozen_copy(model)
    if "ewc" in plugins:
        fisher = bare_fisher(model, dataset, bs, device)
        if online_ewc:  # F = decay * F_previous + F_step, the old rows in place
            for p_name, f in fisher.items():
                old_f = term["fisher"][p_name]
                f[tuple(slice(0, k) for k in old_f.shape)] += s.ewc.decay * old_f
        term = {"fisher": fisher, "anchor": {n: p.detach().clone() for n, p in model.named_parameters()}}
    if buffer is not None:
        first = step.classes[0] if cfg.scenario.labels == "partial" else 0
        helper = SimpleNamespace(
            core_model=model,
            eval_mb_size=cfg.eval.batch_size,
            autocast=contextlib.nullcontext,
            prepare_images=lambda images: normalized(images.to(device), stats),
        )
        buffer.end_of_step(helper, scenario, step, first, bs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu
