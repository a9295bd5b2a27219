"""Bad input found late in the checks (sizes, backbones, lost processes, name clashes): one line
and exit 2, as in test_reliability_errors.py."""

import json

from test_reliability_errors import DEMO, ROOT, one_error_line, words  # noqa: F401

from cml.commands import cli
from cml.commands.cli import main
from cml.datasets.coco import load_coco_folder
from cml.datasets.synthetic import generate


def test_absurd_replay_size_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            words(
                "run",
                tmp_path / "data",
                ["strategy.plugins=[reservoir]", "strategy.replay.size=1000000000000000"],
                "--out",
                str(out),
            )
        )
        == 2
    )
    assert one_error_line(capsys).startswith(
        "error: strategy.replay.size: 1,000,000,000,000,000 slots for 6 classes need "
    )
    assert not (out / "checkpoint.pt").exists()


def test_backbone_that_rejects_the_input_size(tmp_path, capsys):
    assert (
        main(words("run", tmp_path / "data", ["model.backbone=vit_tiny_patch16_224"], "--out", str(tmp_path / "run")))
        == 2
    )
    assert one_error_line(capsys) == (
        "error: data.image_size: 32 is not an input size backbone "
        "'vit_tiny_patch16_224' accepts (Input height (32) doesn't match model (224).); "
        "set data.image_size to one it does (e.g. its default, often 224)"
    )


def test_rank_zero_reports_a_lost_process_with_the_resume_line(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")

    def lost(args, session):
        session.run_dir = run_dir
        raise RuntimeError(
            "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500"
        )

    monkeypatch.setattr(cli, "_start", lost)
    monkeypatch.setattr("cml.runtime.launch.launched", lambda: True)
    monkeypatch.setattr(cli, "launched", lambda: True)
    monkeypatch.setattr("cml.runtime.distributed.shutdown", lambda: None)
    assert main(["run", DEMO, "--out", str(run_dir)]) == 2
    err = one_error_line(capsys, "error (rank 0): another process of this torchrun job stopped ([../third_party")
    assert err.endswith(
        f"; the completed steps are saved in {run_dir}; continue with: python -m cml run {DEMO} "
        f"--out {run_dir} --resume"
    )


# ---------------------------------------------------------------- minor items


def test_pseudo_with_all_labels_is_refused_like_full(tmp_path, capsys):
    assert main(words("plan", tmp_path / "data", ["strategy.plugins=[pseudo]", "scenario.labels=all"])) == 2
    assert "strategy.plugins: pseudo needs scenario.labels: partial, got 'all'" in one_error_line(capsys)


def test_plan_leaves_out_the_images_a_run_skips(tmp_path, capsys):
    assert main(words("plan", tmp_path / "data", (), "--json", str(tmp_path / "before.json"))) == 0
    folder = next((tmp_path / "data").glob("synthetic-*"))
    sorted((folder / "train").glob("*.jpg"))[0].write_bytes(b"")
    assert main(words("plan", tmp_path / "data", (), "--json", str(tmp_path / "after.json"))) == 0
    before, after = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("before", "after"))
    assert after["skipped"] == {**before["skipped"], "train_bad_images": 1}
    assert sum(s["n_train"] for s in after["steps"]) < sum(s["n_train"] for s in before["steps"])


def test_coco_categories_sharing_a_name_stay_apart(tmp_path):
    from cml.datasets.coco import unique_names

    assert unique_names(["cup", "dog", "cup"], [47, 18, 90]) == ["cup (id 47)", "dog", "cup (id 90)"]
    root = tmp_path / "coco"
    generate(root, 4, 12, 8, 16, 0)
    for name in ("instances_train.json", "instances_val.json"):
        path = root / "annotations" / name
        doc = json.loads(path.read_text())
        doc["categories"][1]["name"] = doc["categories"][0]["name"]
        path.write_text(json.dumps(doc))
    data = load_coco_folder(
        root,
        ("train", "val"),
        ("instances_train.json", "instances_val.json"),
        "ignore",
        str(tmp_path / "cache"),
        "synthetic",
        "",
    )
    assert len(set(data.class_names)) == 4
    ids = [c["id"] for c in doc["categories"]]
    assert data.class_names[:2] == [
        f"{doc['categories'][0]['name']} (id {ids[0]})",
        f"{doc['categories'][0]['name']} (id {ids[1]})",
    ]
