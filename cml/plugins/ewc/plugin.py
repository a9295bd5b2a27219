"""Elastic Weight Consolidation (Kirkpatrick et al., 2017) with the multi-label loss.

    penalty = weight / 2 * sum over past terms k, parameters i of F_k,i * (theta_i - theta*_k,i)^2

- Fisher: the empirical Fisher of the strategy's own criterion (masked BCE or ASL on the seen
  classes, the -1 targets left out), computed after each step on that step's training images with
  their step targets, the model in eval mode: the squared gradient of each batch's loss
  (batches of the training batch size), averaged over the batches. Per batch rather than per
  sample: one backward pass per batch, a tenth of the cost; being the square of a mean, it is
  smaller than the per-sample Fisher (about 1/B of it for independent samples), which `weight`
  absorbs. Only the likelihood (the criterion on the logits) is used, not a model's auxiliary
  loss terms. Under torchrun the same batches (of the global batch size) are dealt to the ranks in
  turn (batch j to rank j mod N) and the squared-gradient sums all-reduced: the one-process
  Fisher, N times faster (a Fisher batch is as large as one process's training batch).
- separate: one term per past step (its Fisher, anchored at the parameters at the end of that
  step). online (Schwarz et al., 2018): one term, F = decay * F_previous + F_step, anchored at the
  end of the last step; with decay 1 its Fisher is the sum of the separate ones.
- Growing heads: Fishers and anchors are stored by parameter name with the shape the parameter
  had when they were taken. Rows appended later (new classes) fall outside that shape and are
  not penalised; heads only ever append, so the old entries keep their index.
- Both are in `checkpoint_state()`, so a resumed run has the same penalty.
- The penalty is one fused operation over flat vectors (`FlatTerms`, `_Penalty`): per step, each
  term's Fisher (times weight/2) and anchor are laid out once, zero-padded to the parameters'
  current shapes, in one vector each; per iteration the parameters are flattened in one call
  (torch's `_flatten_dense_tensors`: one differentiable cat), the forward is d = theta - theta*,
  Fd = (w/2) F d, value = Fd . d, and the backward is one product, Fd * 2g: no Python loop over
  parameter names, and four passes over the parameters instead of the nine of autograd's chain of
  slice, sub, pow, mul and sum per name. A grown row has Fisher 0, so it adds exactly 0. Numbers,
  against the per-name form this was before: with the incoming gradient g = 1 (one process, no
  fp16 scaler) every element's gradient is bit-identical with one term (online mode, or the second
  step of separate mode; tests/plugins/test_ewc.py checks it); with several terms the terms' gradients are
  added in term order before reaching the parameter, and under the fp16 scaler or torchrun's batch
  share g multiplies (w/2) F d rather than (w/2) F: float rounding only. The penalty's value (the
  logged loss) is one dot product over all entries rather than a sum of per-name sums: rounding
  only.

Avalanche's `EWCPlugin` cannot be used: its Fisher pass feeds the dataset's uint8 images to the
model without the normalisation our strategy applies (it fails with "expected scalar type Byte";
checked with avalanche-lib 0.6.0), it counts past steps with `strategy.clock`, which restarts at 0
in a resumed run (the penalty would silently vanish), and it has no checkpoint state.
"""

from __future__ import annotations

import torch
from torch._utils import _flatten_dense_tensors
from torch.utils.data import DataLoader

from cml.plugins._base import CmlPlugin
from cml.runtime import distributed

Tensors = dict[str, torch.Tensor]


def _pad_to(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Zeros where a parameter grew since `tensor` was taken."""
    if tensor.shape == shape:
        return tensor
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, n) for n in tensor.shape)] = tensor
    return out


class _Penalty(torch.autograd.Function):
    """sum_k Fd_k . d_k with Fd_k = scaled F_k * (theta - theta*_k); its gradient sum_k Fd_k * 2g."""

    @staticmethod
    def forward(ctx, theta, *vectors):
        scaled_products, value = [], theta.new_zeros(())
        for fisher, anchor in zip(vectors[::2], vectors[1::2]):
            diff = theta - anchor
            product = fisher * diff
            value = value + torch.dot(product, diff)
            scaled_products.append(product)
        ctx.save_for_backward(*scaled_products)
        return value

    @staticmethod
    def backward(ctx, grad):
        products = ctx.saved_tensors
        total = products[0] * (2 * grad)
        for product in products[1:]:
            total = total + product * (2 * grad)
        return (total, *[None] * (2 * len(products)))


class FlatTerms:
    """The terms over the model's parameters as they are now: per term a flat vector of
    scale * Fisher and one of the anchor, zeros where a parameter grew or is new."""

    def __init__(self, model: torch.nn.Module, terms: list[dict[str, Tensors]], scale: float = 1.0):
        names = {name for term in terms for name in term["fisher"]}
        named = [(n, p) for n, p in model.named_parameters() if n in names]
        self.params = [p for _, p in named]

        def flat(part: Tensors, p_name: str, p: torch.Tensor) -> torch.Tensor:
            return _pad_to(part[p_name], p.shape) if p_name in part else torch.zeros_like(p.detach())

        self.vectors = []
        for term in terms:
            fisher = _flatten_dense_tensors([flat(term["fisher"], n, p) for n, p in named])
            self.vectors += [
                fisher * scale if scale != 1.0 else fisher,
                _flatten_dense_tensors([flat(term["anchor"], n, p) for n, p in named]),
            ]

    def penalty(self) -> torch.Tensor:
        """scale * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2."""
        if not self.params:
            return torch.zeros(())
        return _Penalty.apply(_flatten_dense_tensors(self.params), *self.vectors)


def ewc_penalty(model: torch.nn.Module, terms: list[dict[str, Tensors]]) -> torch.Tensor:
    """sum_k sum_i F_k,i (theta_i - theta*_k,i)^2 over the entries that existed when F_k was taken."""
    return FlatTerms(model, terms).penalty()


def empirical_fisher(strategy, dataset, loader_args: dict | None = None) -> Tensors:
    """Squared gradients of the criterion, one batch at a time, averaged over the batches;
    `loader_args`: the strategy's for a pass over a step (workers, pinned memory)."""
    model = strategy.core_model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    size = strategy.train_mb_size
    batches = [range(s, min(s + size, len(dataset))) for s in range(0, len(dataset), size)]
    loader = DataLoader(
        dataset,
        batch_sampler=batches[distributed.rank() :: distributed.world()],
        **(loader_args or {"collate_fn": getattr(dataset, "collate_fn", None)}),
    )
    was_training = model.training
    model.eval()
    for x, y, *_ in loader:
        x, y = strategy.prepare_images(x), y.to(strategy.device)
        logits = model(x)  # fp32, not autocast: unscaled fp16 gradients underflow, and their squares more so
        grads = torch.autograd.grad(strategy._criterion(logits, y), list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads):
            if grad is not None:
                fisher[name] += grad.float().pow(2)
    model.train(was_training)
    for f in fisher.values():
        distributed.all_reduce_(f)
    return {n: f / max(1, len(batches)) for n, f in fisher.items()}


class ElasticWeightConsolidation(CmlPlugin):
    def __init__(self, weight: float, mode: str = "separate", decay: float = 1.0):
        super().__init__()
        self.weight = weight
        self.mode = mode
        self.decay = decay
        self.terms: list[dict[str, Tensors]] = []  # [{"fisher": {name: F}, "anchor": {name: theta*}}]
        self.flat: FlatTerms | None = None  # `terms` over this step's parameters, built at its first batch

    def before_training_exp(self, strategy, **kwargs):
        # state loaded from a checkpoint lives on the CPU
        self.terms = [
            {key: {n: t.to(strategy.device) for n, t in part.items()} for key, part in term.items()}
            for term in self.terms
        ]
        self.flat = None  # the heads may have grown

    def before_backward(self, strategy, **kwargs):
        if self.terms and self.weight:
            if self.flat is None:
                self.flat = FlatTerms(strategy.core_model, self.terms, self.weight / 2)
            strategy.plugin_term(self.name, self.flat.penalty(), per_image=False)  # a sum over the parameters

    def after_training_exp(self, strategy, **kwargs):
        dataset = strategy.experience.dataset
        fisher = empirical_fisher(strategy, dataset, strategy.pass_loader_args(dataset))
        anchor = {n: p.detach().clone() for n, p in strategy.core_model.named_parameters() if n in fisher}
        self.add_term(fisher, anchor)

    def add_term(self, fisher: Tensors, anchor: Tensors) -> None:
        if self.mode == "online" and self.terms:
            previous = self.terms[0]["fisher"]
            fisher = {
                n: f + self.decay * _pad_to(previous[n], f.shape) if n in previous else f for n, f in fisher.items()
            }
            self.terms = []
        self.terms.append({"fisher": fisher, "anchor": anchor})
        self.flat = None

    def checkpoint_state(self) -> dict:
        return {"terms": self.terms}

    def load_checkpoint_state(self, state: dict) -> None:
        self.terms = state["terms"]
        self.flat = None
