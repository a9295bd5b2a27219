"""The replay configs: the same protocol as their finetune configs, on the same fixtures, and the
replay settings of their papers (PRS: buffer 2,000, 10 + 10, rho; KRT: herding 20 / 2 per class,
relabelled, concatenated)."""

import pytest

from cml.config import load_config
from test_protocols import COCO_NAMES, REPO, VOC_CLASSES, coco_root, expected, scenario_steps, voc_root  # noqa: F401


@pytest.mark.parametrize("config, sizes, per_class", [("coco_b0_c10_replay.yaml", [10] * 8, 20)])
def test_coco_replay_config(coco_root, config, sizes, per_class):  # noqa: F811
    assert scenario_steps(config, coco_root) == expected(COCO_NAMES, 170, 90, (0, 5), sizes)
    check_krt_replay(config, per_class)


@pytest.mark.parametrize("config, sizes, per_class", [("voc_b0_c4_replay.yaml", [4] * 5, 2)])
def test_voc_replay_config(voc_root, config, sizes, per_class):  # noqa: F811
    assert scenario_steps(config, voc_root) == expected(VOC_CLASSES, 60, 40, (0, 3), sizes)
    check_krt_replay(config, per_class)


def check_krt_replay(config, per_class):
    cfg = load_config(REPO / "configs" / config, ["data.root=/nonexistent"])
    base = load_config(REPO / "configs" / config.replace("_replay", ""), ["data.root=/nonexistent"])
    r = cfg.strategy.replay
    assert cfg.strategy.plugins == ["herding"] and (r.per_class, r.relabel, r.mix) == (per_class, True, "concat")
    cfg.strategy = base.strategy  # otherwise identical to the finetune config
    assert cfg == base


@pytest.mark.parametrize("config, rho", [("cocoseq_prs.yaml", -0.03), ("nuswideseq_prs.yaml", 0.02)])
def test_prs_configs_replay_as_the_paper(tmp_path, config, rho):
    groups = [f"eval.groups.{g}=null" for g in ("majority", "moderate", "minority")]
    cfg = load_config(REPO / "configs" / config, [f"scenario.split_dir={tmp_path}", *groups])
    r = cfg.strategy.replay
    assert cfg.strategy.plugins == ["prs"] and cfg.train.online and cfg.train.batch_size == 10
    assert (r.size, r.batch_ratio, r.rho, r.mix) == (2000, 1.0, rho, "batch")
