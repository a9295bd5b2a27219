"""Shared settings for tests that run the whole pipeline: tiny images, tiny backbone, one epoch."""

TINY = [
    "data.image_size=32",
    "data.synthetic.num_classes=6",
    "data.synthetic.train_images=60",
    "data.synthetic.test_images=30",
    "data.synthetic.image_size=32",
    "scenario.base=2",
    "scenario.increment=2",
    "model.backbone=test_resnet",
    "train.epochs=1",
    "train.batch_size=16",
    "train.lr=0.01",
    "eval.batch_size=32",
]


def tiny() -> list[str]:
    return list(TINY)


def tiny_model_settings(name: str) -> tuple[str, dict]:
    """The backbone and `model.options` of NAME's tiny variant for 32-px images, as its declaration
    gives them (`Model.test_settings`: the settings live beside the model, no test keeps a table
    of them); the tests' `test_resnet` and the default options where it gives none."""
    import copy

    from cml.core.registry import MODELS

    settings = MODELS.get(name).test_settings
    return settings.get("backbone", "test_resnet"), copy.deepcopy(settings.get("options", {}))


def tiny_model_options(name: str) -> dict:
    return tiny_model_settings(name)[1]


def model_overrides(name: str) -> list[str]:
    """`--set` items that make a run's model NAME's tiny variant (its backbone and options)."""
    import json

    backbone, options = tiny_model_settings(name)
    return [f"model.name={name}", f"model.backbone={backbone}", f"model.options={json.dumps(options)}"]


def tiny_model(name: str, num_classes: int = 0, image_size: int = 32, backbone: str | None = None, **options):
    """NAME's tiny variant built as a run builds it; BACKBONE and OPTIONS replace its settings'."""
    tiny_backbone, tiny_options = tiny_model_settings(name)
    return make_model(name, backbone or tiny_backbone, num_classes, image_size, **{**tiny_options, **options})


def interrupt_after_step(monkeypatch, step: int):
    """Makes the run stop with Ctrl-C right after its checkpoint of `step` is written; returns the
    real `checkpoint.save`, to put back."""
    from cml.runtime import checkpoint

    real_save = checkpoint.save

    def save_then_interrupt(run_dir, saved_step, *args):
        real_save(run_dir, saved_step, *args)
        if saved_step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_interrupt)
    return real_save


def make_model(
    name: str,
    backbone: str,
    num_classes: int = 0,
    image_size: int | None = None,
    pretrained: bool | str = False,
    **options,
):
    """A model built as a run builds it: its declared options checked by its schema, then `build`."""
    from cml.core import schema
    from cml.core.registry import MODELS

    declaration = MODELS.get(name)
    typed = schema.build(declaration.options, options, "model.options.", "test") if declaration.options else None
    return declaration.build(backbone, pretrained, typed, num_classes=num_classes, image_size=image_size)


def data_config(**data):
    """The `data` section of a config, e.g. data_config(dataset="list", list={"train": ...})."""
    from cml.config import config_class
    from cml.core import schema

    return schema.build(config_class(), {"data": data}, "", "test").data


def run_cli(config, out, overrides, *extra) -> int:
    """`cml run CONFIG --out OUT --set ...` in-process; the exit code."""
    from cml.commands.cli import main

    args = ["run", str(config), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    return main(args + list(extra))


def run_full_and_resumed(config, tmp_path, monkeypatch, overrides, step: int = 1) -> tuple[dict, dict]:
    """The run uninterrupted (tmp_path/full), and stopped after `step` then resumed (tmp_path/killed):
    both results.json, without what the machine measured (times, memory)."""
    import json

    from cml.evaluation.results import reproducible

    assert run_cli(config, tmp_path / "full", overrides) == 0
    real_save = interrupt_after_step(monkeypatch, step)
    assert run_cli(config, tmp_path / "killed", overrides) == 130
    monkeypatch.setattr("cml.runtime.checkpoint.save", real_save)
    assert run_cli(config, tmp_path / "killed", overrides, "--resume") == 0
    return tuple(reproducible(json.loads((tmp_path / d / "results.json").read_text())) for d in ("full", "killed"))


def with_loss_door(strategy, scale: float = 1.0):
    """Gives a fake strategy (a SimpleNamespace with `loss`) the loss door of `MultiLabelStrategy`:
    `plugin_term` adds at once (per-image terms times SCALE, the global batch of a summed
    criterion); `weigh_criterion` records the weight in `criterion_weights`."""

    def plugin_term(name, term, per_image=True):
        strategy.loss = strategy.loss + (term * scale if per_image else term)

    strategy.plugin_term = plugin_term
    strategy.criterion_weights = {}
    strategy.weigh_criterion = strategy.criterion_weights.__setitem__
    return strategy
