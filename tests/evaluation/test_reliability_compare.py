"""`cml compare` never averages runs that are not seeds of one experiment (issue 17, finding 2),
and a bad run directory or `--out` is one line, not a traceback."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cml.commands.cli import main
from cml.datasets._types import MultiLabelData, Split

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_dir(folder: Path, seed: int, last_map: float, root="/data/coco", digest="d1", weights=None):
    """A finished two-step run whose Avg mAP is (60 + last_map) / 2."""
    folder.mkdir(parents=True)
    config = {
        "seed": seed,
        "data": {"dataset": "coco", "root": root},
        "model": {"name": "linear", "backbone": "resnet10t"},
        "strategy": {"name": "finetune", "plugins": []},
    }
    steps = [{"map": 60.0, "cf1": 1.0, "of1": 1.0}, {"map": last_map, "cf1": 2.0, "of1": 3.0}]
    results = {
        "avg_map": (60.0 + last_map) / 2,
        "last_map": last_map,
        "avg_forgetting": 5.0,
        "steps": steps,
        "n_steps": 2,
    }
    if digest is not None:
        results["data_digest"] = digest
    if weights is not None:  # (path, identity): the config names the path, results its content
        config["model"]["pretrained"], results["pretrained"] = weights
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "results.json").write_text(json.dumps(results))


def groups_of(capsys, tmp_path, *paths) -> tuple[list[dict], str]:
    assert main(["compare", *map(str, paths), "--json", "--out", str(tmp_path / "c.png")]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_runs_on_different_data_are_not_averaged(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "a", 0, 40.0, root="/data/coco", digest="aaaa")
    run_dir(tmp_path / "runs" / "b", 1, 50.0, root="/data/coco", digest="bbbb")  # same path, other content
    groups, _ = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert [(g["label"], g["seeds"]) for g in groups] == [
        ("finetune, linear/resnet10t, data_digest=aaaa", [0]),
        ("finetune, linear/resnet10t, data_digest=bbbb", [1]),
    ]


def test_same_data_under_two_roots_are_seeds_of_one_experiment(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "a", 0, 40.0, root="/disk1/coco")
    run_dir(tmp_path / "runs" / "b", 1, 50.0, root="/disk2/coco")
    groups, _ = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert len(groups) == 1 and groups[0]["seeds"] == [0, 1]
    assert groups[0]["last_map"] == {"mean": 45.0, "std": pytest.approx(50**0.5), "n": 2}


def test_runs_from_other_weights_at_one_path_are_not_averaged(tmp_path, capsys):
    """Issue 28: two files at one `model.pretrained` path were one configuration (or a "copy")."""
    run_dir(tmp_path / "runs" / "a", 0, 40.0, weights=("/w/asl.pth", "sha256:aaaa"))
    run_dir(tmp_path / "runs" / "b", 0, 50.0, weights=("/w/asl.pth", "sha256:bbbb"))
    run_dir(tmp_path / "runs" / "c", 1, 60.0, weights=("/elsewhere/copy.pth", "sha256:aaaa"))
    groups, err = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert [(g["label"], g["seeds"]) for g in groups] == [
        ("finetune, linear/resnet10t, model.pretrained=sha256:aaaa", [0, 1]),
        ("finetune, linear/resnet10t, model.pretrained=sha256:bbbb", [0]),
    ]
    assert "left out" not in err


def test_weights_identity_is_the_files_content(tmp_path):
    from cml.runtime.files import weights_identity

    (tmp_path / "a").write_bytes(b"weights")
    (tmp_path / "b").write_bytes(b"weights")
    (tmp_path / "c").write_bytes(b"other")
    ids = [weights_identity(str(tmp_path / n)) for n in "abc"]
    assert ids[0] == ids[1] != ids[2] and ids[0] == "sha256:" + hashlib.sha256(b"weights").hexdigest()[:16]
    assert weights_identity(False) is False and weights_identity(True) is True


def test_old_runs_without_digest_are_grouped_by_their_data_root(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "a", 0, 40.0, root="/data/voc", digest=None)
    run_dir(tmp_path / "runs" / "b", 1, 50.0, root="/data/coco", digest=None)
    groups, _ = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert [g["seeds"] for g in groups] == [[0], [1]]


def test_a_copied_run_directory_is_not_a_second_seed(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "seed0", 0, 40.0)
    shutil.copytree(tmp_path / "runs" / "seed0", tmp_path / "runs" / "seed0-copy")
    run_dir(tmp_path / "runs" / "seed1", 1, 50.0)
    groups, err = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert len(groups) == 1 and groups[0]["seeds"] == [0, 1] and groups[0]["last_map"]["mean"] == 45.0
    assert (
        f"note: {tmp_path / 'runs' / 'seed0-copy'} left out: the same configuration, data and seed as "
        f"{tmp_path / 'runs' / 'seed0'} (a copy? it is not another seed)"
    ) in err


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '{"steps": [{"map": 1',
        '{"steps": [{"map": "x"}]}',
        "\udcff",
        '{"steps": [{"map": 1, "cf1": 1, "of1": 1}], "avg_map": 1}',
    ],
)
def test_a_foreign_or_truncated_results_file_is_reported_and_the_rest_compared(tmp_path, capsys, text):
    run_dir(tmp_path / "runs" / "good", 0, 40.0)
    run_dir(tmp_path / "runs" / "bad", 1, 50.0)
    (tmp_path / "runs" / "bad" / "results.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    groups, err = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert [g["seeds"] for g in groups] == [[0]]
    assert err.startswith(f"note: left out: {tmp_path / 'runs' / 'bad'}: ")
    assert "Traceback" not in err and err.count("\n") == 2  # the note and "wrote c.png"


def test_nothing_comparable_is_one_line(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "bad", 1, 50.0)
    (tmp_path / "runs" / "bad" / "results.json").write_text("{")
    assert main(["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "c.png")]) == 2
    assert capsys.readouterr().err.endswith("error: no finished run to compare\n")


def test_out_must_be_a_writable_png_file(tmp_path, capsys):
    run_dir(tmp_path / "runs" / "a", 0, 40.0)
    (tmp_path / "folder").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = {
        tmp_path / "folder": "is a folder; expected the name of a .png file",
        tmp_path / "cmp": "expected a .png file name (the plot is a PNG)",
        tmp_path / "c.pdf": "expected a .png file name (the plot is a PNG)",
        blocker / "c.png": "cannot write",
    }
    for out, expected in cases.items():
        assert main(["compare", str(tmp_path / "runs"), "--out", str(out)]) == 2, out
        err = capsys.readouterr().err
        assert err.startswith("error: --out: ") and expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "runs"]  # nothing written
    assert os.listdir(tmp_path / "folder") == []
    assert main(["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "C.PNG")]) == 0
    assert (tmp_path / "C.PNG").read_bytes()[:8] == PNG_SIGNATURE


def _data(root: str, labels, classes=("a", "b")) -> MultiLabelData:
    split = Split([f"{root}/{i}.jpg" for i in range(len(labels))], np.array(labels, np.uint8), [1, 2])
    return MultiLabelData("coco", list(classes), split, split)


def test_content_digest_follows_ids_labels_and_classes_not_paths():
    from cml.runtime.checkpoint import content_digest

    same = content_digest(_data("/a", [[1, 0], [0, 1]]))
    assert content_digest(_data("/b", [[1, 0], [0, 1]])) == same
    assert content_digest(_data("/a", [[1, 0], [1, 1]])) != same
    assert content_digest(_data("/a", [[1, 0], [0, 1]], ("a", "c"))) != same
