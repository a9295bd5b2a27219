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


VIT_OPTIONS = {"patch_size": 8, "selectors": 2, "prompts": 2, "prompt_layers": 1}  # small, for 32 px images


def model_overrides(name: str) -> list[str]:
    """A model that declares it needs a ViT gets timm's test ViT, built small for 32 px images."""
    from cml.core.registry import MODELS

    if not MODELS.get(name).vit_backbone:
        return []
    return ["model.backbone=test_vit", "model.options={" + ", ".join(f"{k}: {v}" for k, v in VIT_OPTIONS.items()) + "}"]


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
    both results.json."""
    import json

    assert run_cli(config, tmp_path / "full", overrides) == 0
    real_save = interrupt_after_step(monkeypatch, step)
    assert run_cli(config, tmp_path / "killed", overrides) == 130
    monkeypatch.setattr("cml.runtime.checkpoint.save", real_save)
    assert run_cli(config, tmp_path / "killed", overrides, "--resume") == 0
    return tuple(json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "killed"))
