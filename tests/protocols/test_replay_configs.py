"""The PRS replay configs: the replay settings of the paper (buffer 2,000, 10 + 10, rho) and the
recipe of the authors' code (one optimizer for the stream, nn.Linear's head initialisation). The
KRT replay configs are checked with the other KRT method configs (test_krt_configs.py)."""

import pytest
from test_protocols import REPO

from cml.config import load_config


@pytest.mark.parametrize("config, rho", [("cocoseq_prs.yaml", -0.03), ("nuswideseq_prs.yaml", 0.02)])
def test_prs_configs_replay_as_the_paper(tmp_path, config, rho):
    groups = [f"eval.groups.{g}=null" for g in ("majority", "moderate", "minority")]
    cfg = load_config(REPO / "configs" / config, [f"scenario.split_dir={tmp_path}", *groups])
    r = cfg.strategy.replay
    assert cfg.strategy.plugins == ["prs"] and cfg.train.online and cfg.train.batch_size == 10
    assert (r.size, r.batch_ratio, r.rho, r.mix) == (2000, 1.0, rho, "batch")
    assert cfg.train.optimizer_scope == "stream" and cfg.model.options.head_init == "default"
