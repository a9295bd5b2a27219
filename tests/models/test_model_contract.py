"""The model contract (`MultiLabelModelProtocol`), checked on every registered model at its
declaration's tiny size (`Model.test_settings`): what `build` returns, the two forms of `forward`,
growth that keeps the old classes exactly as they were, and head and backbone parameters that
partition the model's, told apart by the protocol, not by name prefixes. A model registered later
is checked the day it is added."""

from types import SimpleNamespace

import pytest
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import tiny_model
from torch import nn

from cml.core.registry import MODELS
from cml.losses.bce.loss import masked_bce
from cml.models import MultiLabelModelProtocol

BATCH, SIZE = 3, 32


def grow(model, classes: list[int], training: bool = True):
    """One step's growth as the training template does it (Avalanche's model adaptation)."""
    model.train(training)
    avalanche_model_adaptation(model, SimpleNamespace(n_outputs=max(classes) + 1, classes_in_this_experience=classes))
    model.eval()


@pytest.fixture(params=MODELS.names())  # every registered model
def grown(request):
    """The tiny model after a first step of classes 0-2 (eval mode), a batch of images, its name."""
    torch.manual_seed(0)
    model = tiny_model(request.param, image_size=SIZE)
    grow(model, [0, 1, 2])
    return model, torch.randn(BATCH, 3, SIZE, SIZE), request.param


def test_build_returns_a_model_of_the_protocol(grown):
    model, *_ = grown
    assert isinstance(model, nn.Module) and isinstance(model, MultiLabelModelProtocol)
    assert isinstance(model.backbone, nn.Module) and model.num_classes == 3


def test_forward_gives_logits_and_the_full_form_a_dict(grown):
    model, x, _ = grown
    with torch.no_grad():
        logits, full = model(x), model(x, full=True)
    assert logits.shape == (BATCH, 3) and logits.dtype == torch.float32
    assert isinstance(full, dict) and torch.equal(full["logits"], logits)
    features = full.get("label_features")
    assert features is None or features.shape[:2] == (BATCH, 3)


def test_loss_terms_are_named_scalars_with_gradients(grown):
    model, x, _ = grown
    out = model.train()(x, full=True)
    y = (torch.arange(BATCH * 3).reshape(BATCH, 3) % 2 == 0).float()
    terms = model.loss_terms(out, y, masked_bce)
    assert isinstance(terms, dict) and all(isinstance(k, str) for k in terms)
    assert all(t.dim() == 0 and torch.isfinite(t) and t.requires_grad for t in terms.values())


def test_head_and_backbone_parameters_partition_the_model(grown):
    model, *_ = grown
    every = {id(p): n for n, p in model.named_parameters()}
    heads = list(model.named_head_parameters())
    backbone = {id(p) for p in model.backbone.parameters()}
    head_ids = {id(p) for _, p in heads}
    assert heads, "a model adds something to its backbone"
    assert not head_ids & backbone and head_ids | backbone == set(every)
    assert all(every[id(p)] == name for name, p in heads)  # named as named_parameters names them


def test_growth_keeps_old_classes_and_adds_new_outputs(grown):
    """A second step's classes 3-4: every old parameter and buffer keeps its values on its old
    part, the old classes' logits (and per-label features) are unchanged unless the declaration
    says they move (`old_logits_kept`: csc), the new outputs come from head parameters only; a
    test experience (eval mode) grows nothing."""
    model, x, name = grown
    kept = MODELS.get(name).test_settings.get("old_logits_kept", True)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_heads = {n for n, _ in model.named_head_parameters()}
    with torch.no_grad():
        before = model(x, full=True)
    grow(model, [3, 4])
    with torch.no_grad():
        after = model(x, full=True)
    assert model.num_classes == 5 and after["logits"].shape == (BATCH, 5)
    if before.get("label_features") is not None:
        assert after["label_features"].shape[1] == 5
    for key in ("logits", "label_features") if kept else ():
        if before.get(key) is not None:  # the same up to float summation order
            torch.testing.assert_close(after[key][:, :3], before[key], rtol=0, atol=1e-5, msg=key)
    state = model.state_dict()
    for key, old in before_state.items():
        assert torch.equal(state[key][tuple(slice(0, s) for s in old.shape)], old), key
    params = dict(model.named_parameters())
    grown_params = {n for n, p in params.items() if n not in before_state or p.shape != before_state[n].shape}
    assert grown_params, "the per-class parts grow"
    assert grown_params <= {n for n, _ in model.named_head_parameters()}, "only head parameters grow"
    assert before_heads <= set(params)
    grow(model, [5, 6], training=False)
    assert model.num_classes == 5
