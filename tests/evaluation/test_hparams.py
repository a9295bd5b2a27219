"""The HParams entry of a run holds the chosen strategy's options and the model's, so runs that
differ only there (L3A's `base_epochs` 1 and 4) can be told apart."""

from torch.utils.tensorboard.summary import hparams

from cml.config import load_config
from cml.evaluation.hparams import METRICS, run_hparams

L3A = ["strategy.name=l3a", "model.name=l3a", "model.options.hidden=64", "train.hflip=false"]


def test_strategy_and_model_options_are_hyperparameters(tmp_path):
    one, four = (
        run_hparams(load_config(None, [*L3A, f"strategy.l3a.base_epochs={n}", f"data.root={tmp_path}"])) for n in (1, 4)
    )
    assert one != four
    assert (one["l3a.base_epochs"], four["l3a.base_epochs"]) == (1, 4)
    assert one["model.options.hidden"] == 64
    hparams(one, {tag: 0.0 for tag in METRICS.values()})  # every value is one HParams can hold


def test_a_plugin_list_option_and_the_default_model_stay_loggable(tmp_path):
    values = run_hparams(load_config(None, ["strategy.plugins=[pod]", f"data.root={tmp_path}"]))
    assert any(key.startswith("pod.") for key in values)
    hparams(values, {tag: 0.0 for tag in METRICS.values()})
