"""The krt model: shapes, growth that freezes the old task tokens and heads bit-identically while
the new ones train, and token distillation against a hand computation."""

import math
from types import SimpleNamespace

import pytest
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import make_model, with_loss_door

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import PLUGINS
from cml.losses.bce.loss import masked_bce
from cml.plugins.tdl.plugin import TokenDistillation, token_distillation
from cml.strategies._optim import build_optimizer


def build(backbone="test_resnet", size=64):
    torch.manual_seed(0)
    return make_model("krt", backbone, num_classes=0, image_size=size, embed_dim=16, heads=2)


def grow(model, n_outputs):
    model.train()
    avalanche_model_adaptation(model, SimpleNamespace(n_outputs=n_outputs, classes_in_this_experience=[]))


@pytest.mark.parametrize("backbone,positions", [("test_resnet", 4), ("test_convnext", 4)])
def test_shapes(backbone, positions):
    model = build(backbone)
    assert model.pos_embed.shape == (1, positions, 16)  # 64 px / stride 32 = 2 x 2
    grow(model, 3)
    grow(model, 5)
    model.eval()
    out = model(torch.randn(2, 3, 64, 64), full=True)
    assert out["logits"].shape == (2, 5) and out["tokens"].shape == (2, 2, 16) and model.num_classes == 5
    assert [h[1].out_features for h in model.tasks.heads] == [3, 2]


def test_tokens_come_from_one_shared_block():
    """Step i's token is the block on [cls, task_i, patches]; its head scores only step i's classes."""
    model = build().eval()
    grow(model, 3)
    grow(model, 5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, full=True)
        patches = model.proj(model.forward_features(x)).flatten(2).transpose(1, 2) + model.pos_embed
        for i, token in enumerate(model.tasks.tokens):
            sequence = torch.cat([model.cls.expand(2, -1, -1), token.expand(2, -1, -1), patches], 1)
            assert torch.allclose(out["tokens"][:, i], model.block(sequence), atol=1e-6)
        assert torch.allclose(out["logits"][:, 3:], model.tasks.heads[1](out["tokens"][:, 1]), atol=1e-6)


def test_old_tokens_and_heads_stay_bit_identical_while_the_new_ones_train():
    model = build()
    grow(model, 3)
    grow(model, 5)
    old = [t.detach().clone() for t in [model.tasks.tokens[0], *model.tasks.heads[0].parameters()]]
    new = [t.detach().clone() for t in [model.tasks.tokens[1], *model.tasks.heads[1].parameters()]]
    shared = [p.detach().clone() for p in (model.cls, model.pos_embed, model.block.q.weight, model.proj.weight)]
    model.train()
    assert not model.tasks.heads[0].training and model.tasks.heads[1].training
    train_cfg = load_config(None, ["train.lr=0.01", "train.weight_decay=0.1"]).train
    optimizer = build_optimizer(model, train_cfg)
    for _ in range(3):
        optimizer.zero_grad()
        y = (torch.rand(4, 5) > 0.5).float()
        masked_bce(model(torch.randn(4, 3, 64, 64)), y).backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(old, [model.tasks.tokens[0], *model.tasks.heads[0].parameters()]))
    assert all(not torch.equal(a, b) for a, b in zip(new, [model.tasks.tokens[1], *model.tasks.heads[1].parameters()]))
    assert all(
        not torch.equal(a, b)
        for a, b in zip(shared, (model.cls, model.pos_embed, model.block.q.weight, model.proj.weight))
    )


def test_embed_dim_must_split_into_heads():
    with pytest.raises(UserError, match="model.options.heads: 4 does not divide embed_dim 10"):
        load_config(None, ["model.name=krt", "model.options={embed_dim: 10, heads: 4}"])


def test_token_distillation_by_hand():
    old = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # 2 images, 1 old step, D = 2
    new = torch.tensor([[[1.0, 1.0], [5.0, 5.0]], [[0.0, 3.0], [1.0, 0.0]]])  # + the current step's token
    # image 0: cos((1,0), (1,1)) = 1/sqrt(2); image 1: cos = 1
    assert token_distillation(new, old).item() == pytest.approx((1 - 1 / math.sqrt(2) + 0) / 2)
    assert token_distillation(old, old).item() == pytest.approx(0, abs=1e-7)
    old2 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two old steps are one concatenated vector
    new2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [9.0, 9.0]]])
    assert token_distillation(new2, old2).item() == pytest.approx(1 - 1 / 2)


def test_plugin_weight_and_step_factor():
    old = torch.tensor([[[1.0, 0.0]]])
    new = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # orthogonal: 1 - cos = 1
    scenario = SimpleNamespace(steps=[None, SimpleNamespace(n_seen=12, classes=[8, 9, 10])])
    strategy = SimpleNamespace(
        previous_outputs=lambda: {"tokens": old},
        mb_outputs={"tokens": new},
        experience=SimpleNamespace(step=1),
        loss=torch.tensor(0.5),
    )
    with_loss_door(strategy, scale=3)
    TokenDistillation(2.0, scenario).before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(0.5 + 3 * 2.0 * math.sqrt(12 / 3) * 1.0)


def test_tdl_refuses_a_model_without_tokens():
    """With the config (tdl's `needs`), before torch would be needed."""
    for model in ("linear", "dlfl", "srn", "dr"):
        with pytest.raises(UserError, match=f"tdl needs a model with task_tokens .*; model {model} lacks it"):
            load_config(None, [f"model.name={model}", "strategy.plugins=[tdl]"])
    cfg = load_config(None, ["model.name=krt", "strategy.plugins=[tdl]"])
    assert isinstance(PLUGINS.get("tdl").build(cfg, None), TokenDistillation)
