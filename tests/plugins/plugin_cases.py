"""The settings of the plugins' two-step runs (conftest.py runs them)."""

from pathlib import Path

from tests_helpers import tiny

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
TWO_STEPS = tiny() + ["data.synthetic.num_classes=4", "data.synthetic.train_images=40", "data.synthetic.test_images=24"]
# threshold 0: every old class at 0 becomes a positive, so the plugin visibly acts at this tiny scale
OPTIONS = ["strategy.pseudo.threshold=0.0"]
