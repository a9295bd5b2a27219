"""`train.randaugment_variant`: the authors' UDA-style RandAugment by default, torchvision's on
request, and a run saved before the key existed (RandAugment on, so torchvision's) not resumed
as the new default without a word."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from torchvision.transforms import v2

from cml.config import load_config, to_dict
from cml.core.errors import UserError
from cml.runtime.run_directory import check_run_directory
from cml.scenarios.augment import Augment
from cml.scenarios.randaugment_uda import RandAugmentUDA

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
RESUME = SimpleNamespace(resume=True)


def test_the_variant_picks_the_transform():
    on = ["train.randaugment=true"]
    assert load_config(None, on).train.randaugment_variant == "uda"
    assert isinstance(Augment(load_config(None, on).train, 16).randaugment, RandAugmentUDA)
    torchvision = Augment(load_config(None, on + ["train.randaugment_variant=torchvision"]).train, 16)
    assert type(torchvision.randaugment) is v2.RandAugment
    assert Augment(load_config(None, []).train, 16).randaugment is None


def test_an_unknown_variant_is_refused_naming_the_key():
    with pytest.raises(UserError) as err:
        load_config(None, ["train.randaugment_variant=pil"])
    assert "train.randaugment_variant" in str(err.value) and "'uda'" in str(err.value)


def _save(run_dir: Path, cfg, drop_variant: bool) -> None:
    saved = to_dict(cfg)
    if drop_variant:
        del saved["train"]["randaugment_variant"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def test_an_old_run_with_randaugment_resumes_only_as_torchvision(tmp_path):
    """Saved without the key and with randaugment on, the run ran torchvision's: resuming it with
    the new default is refused with the key and both values; with torchvision it resumes."""
    run = tmp_path / "run"
    _save(run, load_config(DEMO, ["train.randaugment=true"]), drop_variant=True)
    with pytest.raises(UserError) as err:
        check_run_directory(RESUME, load_config(DEMO, ["train.randaugment=true"]), run)
    assert "train.randaugment_variant ('torchvision' in the run, 'uda' now)" in str(err.value)
    as_it_was = ["train.randaugment=true", "train.randaugment_variant=torchvision"]
    check_run_directory(RESUME, load_config(DEMO, as_it_was), run)  # no error


def test_an_old_run_without_randaugment_resumes_at_the_default(tmp_path):
    run = tmp_path / "run"
    _save(run, load_config(DEMO), drop_variant=True)
    check_run_directory(RESUME, load_config(DEMO), run)  # the variant is unused: no difference


def test_a_run_that_saved_the_variant_is_compared_as_usual(tmp_path):
    run = tmp_path / "run"
    _save(run, load_config(DEMO, ["train.randaugment=true"]), drop_variant=False)
    check_run_directory(RESUME, load_config(DEMO, ["train.randaugment=true"]), run)  # uda both
    torchvision = load_config(DEMO, ["train.randaugment=true", "train.randaugment_variant=torchvision"])
    with pytest.raises(UserError) as err:
        check_run_directory(RESUME, torchvision, run)
    assert "train.randaugment_variant ('uda' in the run, 'torchvision' now)" in str(err.value)
