"""The KRT protocol configs: per protocol, KRT-R (the protocol's own file, e.g. coco_b40_c10.yaml),
KRT without replay, POD-R and finetune share the protocol and the training recipe, and carry the
authors' method settings (reference sheet 4b: herding 20 / 2 per class, TDL lambda 100 / 300 / 80
over 64 images per GPU, dynamic pseudo-label targets 2.9 / 1.4, POD 5 and 180 over 64 on all four
stages, 10 epochs on COCO and 20 on VOC)."""

import pytest
from test_protocols import COCO_NAMES, REPO, VOC_CLASSES, coco_root, expected, scenario_steps, voc_root  # noqa: F401

from cml.config import load_config

PROTOCOLS = {  # name: (lambda of TDL, embed_dim, pseudo target, per class, herding repeats, POD epochs)
    "coco_b0_c10": (100, 384, 2.9, 20, "never", 10),
    "coco_b40_c10": (300, 384, 2.9, 20, "never", 10),
    "voc_b0_c4": (80, 768, 1.4, 2, "per_class", 20),
    "voc_b10_c2": (80, 768, 1.4, 2, "per_class", 20),
}


def load(name):
    return load_config(REPO / "configs" / f"{name}.yaml", ["data.root=/nonexistent"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_method_configs_share_the_protocol_and_recipe(protocol):
    lam, dim, target, per_class, repeats, pod_epochs = PROTOCOLS[protocol]
    finetune = load(f"{protocol}_finetune")
    assert finetune.strategy.plugins == [] and finetune.model.name == "linear" and finetune.train.epochs == 20
    for suffix, plugins, model, epochs in (
        ("", ["herding", "tdl", "pseudo"], "krt", 20),
        ("_krt", ["tdl", "pseudo"], "krt", 20),
        ("_pod", ["herding", "pod"], "linear", pod_epochs),  # their multi_tresnetm_pod_voc.yaml: 20
    ):
        cfg = load(protocol + suffix)
        assert cfg.strategy.plugins == plugins and cfg.model.name == model and cfg.train.epochs == epochs
        s = cfg.strategy
        if "herding" in plugins:
            assert (s.replay.per_class, s.replay.herding_repeats, s.replay.relabel, s.replay.mix) == (
                per_class,
                repeats,
                True,
                "concat",
            )
        if model == "krt":
            assert cfg.model.options.embed_dim == dim and s.tdl.weight == lam / 64
            assert (s.pseudo.dynamic, s.pseudo.threshold, s.pseudo.target) == (True, 0.8, target)
        if "pod" in plugins:
            assert (s.pod.spatial_weight, s.pod.flat_weight, s.pod.stages) == (5 / 64, 180 / 64, [1, 2, 3, 4])
        cfg.strategy, cfg.model, cfg.train.epochs = finetune.strategy, finetune.model, finetune.train.epochs
        assert cfg == finetune, protocol + suffix
        assert not cfg.train.asl.focal_grad and cfg.train.loss == "asl" and cfg.eval.threshold == 0.8


@pytest.mark.parametrize(
    "config, sizes", [("coco_b0_c10_krt.yaml", [10] * 8), ("coco_b40_c10_pod.yaml", [40] + [10] * 4)]
)
def test_coco_method_configs_run_the_protocol(coco_root, config, sizes):  # noqa: F811
    assert scenario_steps(config, coco_root) == expected(COCO_NAMES, 170, 90, (0, 5), sizes)


@pytest.mark.parametrize(
    "config, sizes", [("voc_b0_c4_pod.yaml", [4] * 5), ("voc_b10_c2_finetune.yaml", [10] + [2] * 5)]
)
def test_voc_method_configs_run_the_protocol(voc_root, config, sizes):  # noqa: F811
    assert scenario_steps(config, voc_root) == expected(VOC_CLASSES, 60, 40, (0, 3), sizes)
