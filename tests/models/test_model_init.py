"""Initialisation as the authors' code (issue 26): KRT's class attention (N(0, 0.01) Linears with zero
bias, Kaiming normal fan-out projection, first head N(0, 0.01)), KRT's POD baseline head
(`head_init: normal`) and CSC's layers (first classifier without bias, torch's default biases);
the old initialisations (`init: torch`, `init: prior`) draw exactly what torch's defaults draw.

Statistics: n draws of N(0, s^2) have a sample std within s (1 +- 5 / sqrt(2n)) and a mean within
5 s / sqrt(n) except with probability below 1e-6 (the chi distribution's normal approximation)."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import model_overrides, run_cli, tiny, tiny_model, tiny_model_settings
from torch import nn

from cml.config import load_config
from cml.models.krt.model import ClassAttentionBlock

LOGIT_PRIOR = math.log(0.05 / 0.95)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def assert_normal(values: torch.Tensor, std: float) -> None:
    v = values.detach().flatten().double()
    n = v.numel()
    assert abs(v.std().item() / std - 1) < 5 / math.sqrt(2 * n), (v.std().item(), std, n)
    assert abs(v.mean().item()) < 5 * std / math.sqrt(n)


def assert_torch_uniform(values: torch.Tensor, fan_in: int) -> None:
    """nn.Linear's default for weights and biases alike: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    assert values.abs().max() <= bound and values.abs().max() > 0.5 * bound


def grow(model, n_outputs):
    model.train()
    avalanche_model_adaptation(model, SimpleNamespace(n_outputs=n_outputs, classes_in_this_experience=[]))


def krt(init, num_classes=0):
    torch.manual_seed(0)
    return tiny_model("krt", num_classes=num_classes, init=init)


def test_krt_authors_init():
    model = krt("authors")
    dim = tiny_model_settings("krt")[1]["embed_dim"]
    linears = [m for m in model.block.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5  # q, kv, proj, the MLP's two
    assert_normal(torch.cat([m.weight.flatten() for m in linears]), 0.01)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears if m.bias is not None)
    assert model.proj.weight.shape[0] == dim  # fan out = D x 1 x 1
    assert_normal(model.proj.weight, math.sqrt(2 / dim))
    grow(model, 64)  # the first head, large enough for its statistics
    first = model.tasks.heads[0][1]
    assert_normal(first.weight, 0.01)
    assert torch.equal(first.bias, torch.zeros(64))
    grow(model, 128)  # a later head: nn.Linear's default, as the authors' add_model
    later = model.tasks.heads[1][1]
    assert_torch_uniform(later.weight, dim)
    assert_torch_uniform(later.bias, dim)
    assert abs(later.weight.std().item() * math.sqrt(3 * dim) - 1) < 5 / math.sqrt(2 * later.weight.numel())


def test_krt_authors_init_leaves_the_rest_as_torch_draws_it():
    """Its redraws come after torch's: what it does not touch equals `init: torch` on the same seed."""
    authors, old = dict(krt("authors").named_parameters()), dict(krt("torch").named_parameters())
    redrawn = {"proj.weight"} | {f"block.{n}" for n in ("q.weight", "kv.weight", "proj.weight", "proj.bias")}
    redrawn |= {f"block.mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    assert redrawn <= authors.keys() and authors.keys() == old.keys()
    for name in authors.keys() - redrawn:
        assert torch.equal(authors[name], old[name]), name
    for name in redrawn:
        assert not torch.equal(authors[name], old[name]), name


def test_krt_torch_init_is_torchs_defaults():
    """`init: torch` (cml before issue 26) equals the parts built with torch's defaults in the same order."""
    backbone_name, options = tiny_model_settings("krt")
    dim, heads = options["embed_dim"], options["heads"]
    model = krt("torch")
    torch.manual_seed(0)
    backbone = timm.create_model(backbone_name, pretrained=False, num_classes=0)
    proj = nn.Conv2d(backbone.num_features, dim, 1)
    pos = nn.init.trunc_normal_(torch.zeros(model.pos_embed.shape), std=0.02)
    cls = nn.init.trunc_normal_(torch.zeros(1, 1, dim), std=0.02)
    block = ClassAttentionBlock(dim, heads)
    assert torch.equal(model.proj.weight, proj.weight) and torch.equal(model.proj.bias, proj.bias)
    assert torch.equal(model.pos_embed, pos) and torch.equal(model.cls, cls)
    for (name, mine), theirs in zip(model.block.named_parameters(), block.parameters()):
        assert torch.equal(mine, theirs), name
    torch.manual_seed(1)
    model.tasks.add_step(5)
    torch.manual_seed(1)
    token = nn.init.trunc_normal_(torch.zeros(1, 1, dim), std=0.02)
    head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 5))
    assert torch.equal(model.tasks.tokens[0], token)
    assert torch.equal(model.tasks.heads[0][1].weight, head[1].weight)
    assert torch.equal(model.tasks.heads[0][1].bias, head[1].bias)


def test_linear_normal_head_is_krts_pod_baseline():
    """First step N(0, 0.01) weights with nn.Linear's biases (their TResNet init), later rows a
    default nn.Linear (their add_classes), old rows unchanged."""
    model = tiny_model("linear", head_init="normal")
    dim = model.head.in_features
    torch.manual_seed(2)
    grow(model, 64)
    torch.manual_seed(2)
    reference = nn.Linear(dim, 64)
    assert_normal(model.head.weight, 0.01)
    assert torch.equal(model.head.bias, reference.bias)  # nn.Linear's, near 0
    first = model.head.weight.detach().clone()
    torch.manual_seed(3)
    grow(model, 72)
    torch.manual_seed(3)
    reference = nn.Linear(dim, 8)
    assert torch.equal(model.head.weight[:64], first)
    assert torch.equal(model.head.weight[64:], reference.weight) and torch.equal(model.head.bias[64:], reference.bias)
    model.reset_classifier(4)
    assert model.head.first_std == 0.01 and model.head.prior is None


@pytest.mark.parametrize(
    "name", ["coco_b0_c10_pod", "coco_b40_c10_pod", "voc_b0_c4_pod", "voc_b10_c2_pod", "demo", "coco_b0_c10_finetune"]
)
def test_pod_configs_start_their_head_as_the_authors(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.name == "linear"
    assert cfg.model.options.head_init == ("normal" if name.endswith("_pod") else "prior")


def test_csc_authors_init():
    model = tiny_model("csc", num_classes=6)
    dim, embed = model.classifier.in_features, tiny_model_settings("csc")[1]["embed_dim"]
    assert model.classifier.bias is None and "classifier.bias" not in model.state_dict()
    assert_torch_uniform(model.classifier.weight, dim)
    assert_torch_uniform(model.gcn.specific.bias, 2 * embed)
    assert_torch_uniform(model.last_linear.bias, embed)
    grow(model, 10)  # new rows too; old ones unchanged
    assert model.classifier.bias is None and model.classifier.weight.shape == (10, dim)
    assert_torch_uniform(model.gcn.specific.bias[6:], 2 * embed)
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_csc_prior_init_is_cml_before_issue_26():
    model = tiny_model("csc", num_classes=6, init="prior")
    for bias in (model.classifier.bias, model.gcn.specific.bias, model.last_linear.bias):
        assert torch.allclose(bias, torch.full((6,), LOGIT_PRIOR))
    torch.manual_seed(0)
    old = tiny_model("csc", num_classes=6, init="prior")
    torch.manual_seed(0)
    authors = tiny_model("csc", num_classes=6)
    assert torch.equal(old.classifier.weight, authors.classifier.weight)  # the same draws come first


def test_csc_trains_every_step_in_train_mode(tmp_path, monkeypatch):
    """Unlike their code (eval mode from the second step, BatchNorm statistics frozen), cml trains
    each step with BatchNorm in train mode (docs/methods.md, CSC)."""
    from cml.models import _label_graph

    modes, forward = [], _label_graph.ClassIncrementalGCN.forward

    def spy(self, v):
        if torch.is_grad_enabled():
            modes.append((v.shape[1], self.global_norm.training))
        return forward(self, v)

    monkeypatch.setattr(_label_graph.ClassIncrementalGCN, "forward", spy)
    overrides = tiny() + model_overrides("csc") + ["data.synthetic.num_classes=4", f"data.root={tmp_path / 'data'}"]
    assert run_cli(CONFIGS / "demo_csc.yaml", tmp_path / "run", overrides) == 0
    assert sorted(set(modes)) == [(2, True), (4, True)]
