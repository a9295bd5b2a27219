"""Issue 17: `--seeds --resume` checks every seed's config, a step that makes no training batch is
refused before training, caches are written only where allowed, and the cases that used to end in
a traceback end in one line and exit 2."""

import json
from pathlib import Path

import pytest
from PIL import Image
from tests_helpers import data_config, tiny

from cml.commands.cli import main
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.datasets.imagefiles import check_images
from cml.protocols.groups import read_class_list
from cml.protocols.split_file_reader import read_ids

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")


def words(command: str, data: Path, overrides=(), *extra) -> list[str]:
    out = [command, DEMO]
    for item in [*tiny(), *overrides, f"data.root={data}"]:
        out += ["--set", item]
    return out + list(extra)


def one_error_line(capsys, start: str = "error: ") -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith(start), err
    return err.strip()


# ---------------------------------------------------------------- findings 3 and 4


def test_seeds_resume_refuses_a_changed_config_for_a_finished_seed(tmp_path, capsys):
    parent = tmp_path / "seeds"
    assert (
        main(
            words(
                "run",
                tmp_path / "data",
                ["scenario.base=3", "scenario.increment=3"],
                "--out",
                str(parent),
                "--seeds",
                "0",
            )
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            words(
                "run",
                tmp_path / "data",
                ["scenario.base=3", "scenario.increment=3", "train.lr=0.02"],
                "--out",
                str(parent),
                "--seeds",
                "0",
                "1",
                "--resume",
            )
        )
        == 2
    )
    assert one_error_line(capsys) == (
        f"error: --resume: the config differs from the one {parent / 'seed0'} was "
        "started with: train.lr (0.01 in the run, 0.02 now); resume with the run's value, edit "
        f"{parent / 'seed0' / 'config.yaml'} if the change is meant for the rest of the run, or start a new "
        "run (another --out)"
    )
    assert not (parent / "seed1").exists()


def test_online_step_smaller_than_the_batch_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(words("run", tmp_path / "data", ["train.online=true", "train.batch_size=64"], "--out", str(out))) == 2
    err = one_error_line(capsys)
    assert (
        err.startswith("error: scenario: step 0 (")
        and " training images: fewer than train.batch_size 64; "
        "online mode (train.online) drops the last incomplete batch, so it would train on nothing; "
        "set train.batch_size to at most "
        in err
    )
    assert not (out / "results.json").exists()


def test_online_results_report_the_images_trained_on(tmp_path):
    out = tmp_path / "run"
    assert main(words("run", tmp_path / "data", ["train.online=true", "train.batch_size=8"], "--out", str(out))) == 0
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert [s["n_trained"] for s in steps] == [s["n_train"] // 8 * 8 for s in steps]  # the last batch dropped
    assert any(s["n_trained"] < s["n_train"] for s in steps)


# ---------------------------------------------------------------- finding 5 and list paths


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def two_disk_list(tmp_path: Path) -> dict:
    """A list dataset whose images lie on two 'disks', one of them damaged, named by absolute path."""
    for disk, name in (("disk1", "a.jpg"), ("disk2", "b.jpg"), ("disk2", "c.jpg")):
        (tmp_path / disk / "img").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / disk / "img" / name)
    (tmp_path / "disk2" / "img" / "c.jpg").write_bytes(b"")  # unreadable: bad-images.txt gets written
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classes.txt").write_text("cat\ndog\n")
    rows = "".join(
        f"{tmp_path / d / 'img' / n},cat\n" for d, n in (("disk1", "a.jpg"), ("disk2", "b.jpg"), ("disk2", "c.jpg"))
    )
    (lists / "train.csv").write_text("path,labels\n" + rows)
    (lists / "test.csv").write_text(f"path,labels\n{tmp_path / 'disk1' / 'img' / 'a.jpg'},dog\n")
    return {k: str(lists / f"{k}.{'txt' if k == 'classes' else 'csv'}") for k in ("classes", "train", "test")}


@pytest.mark.parametrize("root", [None, "lists"])
def test_caches_of_a_list_on_two_disks_stay_in_the_allowed_places(tmp_path, monkeypatch, root):
    from cml.scenarios.cache import cached_pixels

    files = two_disk_list(tmp_path)
    monkeypatch.setenv("CML_CACHE", str(tmp_path / "cml-cache"))
    before = files_under(tmp_path)
    cfg = data_config(dataset="list", root=str(tmp_path / root) if root else None, image_size=8, list=files)
    data = check_images(DATASETS.get("list").build(cfg), cfg)
    cached_pixels(data, cfg)
    allowed = f"{root}/.cml-cache" if root else "cml-cache"
    new = files_under(tmp_path) - before
    assert new and all(p == allowed or p.startswith(allowed + "/") for p in new), new
    assert any(p.endswith("bad-images.txt") for p in new) and any(p.endswith(".npy") for p in new)


def test_list_rows_through_a_symlinked_folder_are_one_image(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "img")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "train.csv").write_text("path,labels\nimg/a.jpg,cat\nlink/a.jpg,dog\n")
    (tmp_path / "test.csv").write_text("path,labels\nimg/a.jpg,dog\n")
    files = {k: str(tmp_path / f"{k}.{'txt' if k == 'classes' else 'csv'}") for k in ("classes", "train", "test")}
    data = DATASETS.get("list").build(data_config(dataset="list", list=files))
    assert data.train.ids == ["img/a.jpg"] and data.train.labels.tolist() == [[1, 1]]
    assert data.skipped == {"train_duplicate_rows": 1}


def test_list_paths_outside_data_root_are_noted(tmp_path, capsys):
    files = two_disk_list(tmp_path)
    DATASETS.get("list").build(data_config(dataset="list", root=str(tmp_path / "lists"), list=files))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"data.list.train: 3 images outside data.root {tmp_path / 'lists'} "
        f"(e.g. {tmp_path / 'disk1' / 'img' / 'a.jpg'}), read from there"
    )


# ---------------------------------------------------------------- tracebacks turned into one line


def test_plan_json_into_a_missing_folder_or_onto_a_folder(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert main(words("plan", tmp_path / "data", (), "--json", str(tmp_path / "absent" / "p.json"))) == 2
    assert (
        one_error_line(capsys) == f"error: --json: {tmp_path / 'absent'} is not an existing folder; "
        "create it or write elsewhere"
    )
    assert main(words("plan", tmp_path / "data", (), "--json", str(tmp_path / "folder"))) == 2
    assert one_error_line(capsys).startswith(f"error: --json: {tmp_path / 'folder'} is a folder; expected a file")


def test_plan_with_an_unusable_cml_cache(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CML_CACHE", str(tmp_path / "file" / "cache"))
    argv = ["plan", DEMO]
    for item in tiny():
        argv += ["--set", item]
    assert main(argv) == 2
    assert one_error_line(capsys).startswith(f"error: {tmp_path / 'file'}")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'["caf\xe9"]', "not UTF-8 text (byte 0xe9 at offset 5); save it as UTF-8"),
        (None, "a folder; expected "),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply to read; expected "),
    ],
)
def test_split_and_group_files_that_are_not_utf8_a_folder_or_too_deep(tmp_path, content, expected):
    for name, read in (("train_task0_id_x.json", read_ids), ("major.json", lambda p: read_class_list(p, ["a"]))):
        path = tmp_path / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        with pytest.raises(UserError) as info:
            read(path)
        assert str(info.value).startswith(f"{path}: {expected}") and "\n" not in str(info.value)


def test_seeds_resume_with_a_results_file_lacking_keys_or_a_long_name(tmp_path, capsys):
    (tmp_path / "p" / "seed0").mkdir(parents=True)
    (tmp_path / "p" / "seed0" / "results.json").write_text('{"n_steps": 2}')
    assert main(words("run", tmp_path / "data", (), "--out", str(tmp_path / "p"), "--seeds", "0", "--resume")) == 2
    assert (
        one_error_line(capsys) == f"error: --out: {tmp_path / 'p' / 'seed0'} already holds a run; add --resume "
        "to continue it, or choose another directory"
    )
    long = tmp_path / ("n" * 300)
    assert main(words("run", tmp_path / "data", (), "--out", str(long), "--seeds", "0", "--resume")) == 2
    assert "(File name too long [ENAMETOOLONG])" in one_error_line(capsys)


def test_world_size_without_torchrun(tmp_path, monkeypatch, capsys):
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(words("run", tmp_path / "data", (), "--out", str(tmp_path / "run"))) == 2
    assert one_error_line(capsys) == (
        "error: WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are "
        "not: start several processes with torchrun --nproc_per_node N -m cml run ..., "
        "or unset WORLD_SIZE for one process"
    )
    assert not (tmp_path / "run").exists()
