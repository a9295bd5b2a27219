"""`cml compare --format latex|csv` and the JSON on hand-written run directories: the numbers are
the means and sample stds of the given values (worked out by hand below), both CF1 conventions
are named, and a run of the COCO B0-C10 protocol has the published rows beside it (issue 26)."""

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from cml.commands.cli import main
from cml.config import load_config, to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# the three seeds of the COCO B0-C10 configuration, at the last step (the first step's F1s are 0)
KRT = {
    "avg_map": [50.0, 53.0, 56.0],  # mean 53, sample std 3
    "last_map": [40.0, 42.0, 44.0],  # 42, 2
    "avg_forgetting": [10.0, 12.0, 14.0],  # 12, 2
    "cf1": [30.0, 31.0, 32.0],  # 31, 1
    "macro_f1": [20.0, 26.0, 23.0],  # 23, sqrt((9 + 9 + 0) / 2) = 3
    "of1": [40.0, 40.0, 40.0],  # 40, 0
}
HEADER = ["Avg mAP", "Last mAP", "Avg forgetting", "CF1 (ML-GCN)", "CF1 (per-class mean, KRT)", "OF1"]


def write_run(folder: Path, config_file: str, seed: int, values: dict, macro_f1=True):
    """A finished two-step run of CONFIG_FILE as `cml run` saves it (the whole resolved config)."""
    folder.mkdir(parents=True)
    config = to_dict(load_config(CONFIGS / config_file))
    config["seed"] = seed
    last = {k: values[k] for k in ("cf1", "macro_f1", "of1")}
    steps = [{"map": 60.0, "cf1": 0.0, "macro_f1": 0.0, "of1": 0.0}, {"map": values["last_map"], **last}]
    if not macro_f1:
        for step in steps:
            del step["macro_f1"]
    results = {k: values[k] for k in ("avg_map", "last_map", "avg_forgetting")}
    results.update(steps=steps, n_steps=2, data_digest=config_file)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs(tmp_path):
    for seed in range(3):
        values = {k: v[seed] for k, v in KRT.items()}
        write_run(tmp_path / "runs" / "b_coco" / f"seed{seed}", "coco_b0_c10.yaml", seed, values)
    demo = {"avg_map": 55.0, "last_map": 50.0, "avg_forgetting": 5.0, "cf1": 35.0, "macro_f1": None, "of1": 45.0}
    write_run(tmp_path / "runs" / "a_demo" / "seed0", "demo.yaml", 0, demo, macro_f1=False)
    return tmp_path / "runs"


def compare(capsys, tmp_path, *args) -> str:
    assert main(["compare", *map(str, args), "--out", str(tmp_path / "c.png")]) == 0
    return capsys.readouterr().out


def test_latex_is_a_booktabs_tabular_of_mean_pm_std(runs, tmp_path, capsys):
    lines = compare(capsys, tmp_path, runs, "--format", "latex").strip().splitlines()
    assert lines[:2] == [r"\begin{tabular}{lrrrrrrr}", r"\toprule"]
    assert lines[2] == " & ".join(["configuration", "seeds", *HEADER]) + r" \\"
    assert lines[3] == r"\midrule" and lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    rows = [line.removesuffix(r" \\").split(" & ") for line in lines[4:-2]]
    demo, coco, *published = rows
    assert demo[1:] == ["1", "55.00", "50.00", "5.00", "35.00", "-", "45.00"]  # no macro_f1 recorded
    assert demo[0].startswith("finetune, linear/resnet10t") and r"data\_digest=demo.yaml" in demo[0]
    assert coco[1:] == [
        "3",
        r"53.00 $\pm$ 3.00",
        r"42.00 $\pm$ 2.00",
        r"12.00 $\pm$ 2.00",
        r"31.00 $\pm$ 1.00",
        r"23.00 $\pm$ 3.00",  # the mean of the given macro_f1, not CF1 (31)
        r"40.00 $\pm$ 0.00",
    ]
    krt_r = next(r for r in published if "KRT-R (20 per class)" in r[0])
    assert krt_r[0].startswith(r"\textit{published, COCO B0-C10: KRT-R (20 per class); authors' logs")
    assert "all 80 COCO labels" in krt_r[0]
    assert krt_r[1:] == [r"\textit{" + c + "}" for c in ("-", "77.0", "70.9", "-", "-", "-", "-")]
    assert all(r[0].startswith(r"\textit{published, COCO B0-C10: ") for r in published)


def test_csv_has_mean_std_and_n_per_metric(runs, tmp_path, capsys):
    rows = list(csv.DictReader(io.StringIO(compare(capsys, tmp_path, runs, "--format", "csv"))))
    demo, coco = rows[0], rows[1]
    assert (demo["kind"], demo["protocol"], demo["seeds"]) == ("measured", "", "0")
    assert (coco["kind"], coco["protocol"], coco["seeds"]) == ("measured", "COCO B0-C10", "0 1 2")
    expected = {"Avg mAP": (53, 3), "Last mAP": (42, 2), "Avg forgetting": (12, 2), "CF1 (ML-GCN)": (31, 1)}
    expected |= {"CF1 (per-class mean, KRT)": (23, 3), "OF1": (40, 0)}
    for name, (mean, std) in expected.items():
        assert float(coco[f"{name} mean"]) == pytest.approx(mean)
        assert float(coco[f"{name} std"]) == pytest.approx(std)
        assert coco[f"{name} n"] == "3"
    assert [demo[f"CF1 (per-class mean, KRT) {p}"] for p in ("mean", "std", "n")] == ["", "", ""]
    assert (demo["Avg mAP mean"], demo["Avg mAP std"], demo["Avg mAP n"]) == ("55.0", "", "1")
    published = {r["configuration"]: r for r in rows[2:]}
    assert {r["kind"] for r in published.values()} == {"published"}
    krt_r = published["KRT-R (20 per class)"]
    assert (krt_r["Avg mAP mean"], krt_r["Last mAP mean"], krt_r["Avg mAP n"]) == ("77.0", "70.9", "")
    assert krt_r["source"] == "authors' logs (official KRT release)" and "80 COCO labels" in krt_r["weights"]
    assert published["CSC"]["Avg mAP mean"] == "" and published["CSC"]["Last mAP mean"] == "72.8"


def test_markdown_and_json_show_the_published_rows(runs, tmp_path, capsys):
    lines = compare(capsys, tmp_path, runs).strip().splitlines()
    assert lines[0].endswith("| CF1 (ML-GCN) | CF1 (per-class mean, KRT) | OF1 |")
    assert lines[3].endswith(
        "| 3 | 53.00 ± 3.00 | 42.00 ± 2.00 | 12.00 ± 2.00 | 31.00 ± 1.00 | 23.00 ± 3.00 | 40.00 ± 0.00 |"
    )
    assert lines[4].startswith("| published, COCO B0-C10: KRT-R (20 per class); authors' logs")
    assert lines[4].endswith("| - | 77.0 | 70.9 | - | - | - | - |")
    demo, coco = json.loads(compare(capsys, tmp_path, runs, "--json"))
    assert coco["macro_f1"]["mean"] == pytest.approx(23.0) and coco["macro_f1"]["n"] == 3
    assert coco["protocol"] == "COCO B0-C10"
    krt_r = next(e for e in coco["published"] if e["method"] == "KRT-R (20 per class)")
    assert (krt_r["avg_map"], krt_r["last_map"]) == (77.0, 70.9)
    assert (demo["protocol"], demo["published"], demo["macro_f1"]) == (None, [], None)


@pytest.mark.parametrize("fmt", ["markdown", "latex", "csv"])
def test_a_demo_run_has_no_published_rows(runs, tmp_path, capsys, fmt):
    out = compare(capsys, tmp_path, runs / "a_demo", "--format", fmt)
    assert "published" not in out and len(out.strip().splitlines()) == {"markdown": 3, "latex": 7, "csv": 2}[fmt]


def test_a_non_number_macro_f1_leaves_the_run_out(runs, tmp_path, capsys):
    path = runs / "b_coco" / "seed2" / "results.json"
    results = json.loads(path.read_text())
    results["steps"][-1]["macro_f1"] = "high"
    path.write_text(json.dumps(results))
    assert main(["compare", str(runs / "b_coco"), "--json", "--out", str(tmp_path / "c.png")]) == 0
    out, err = capsys.readouterr()
    assert [g["seeds"] for g in json.loads(out)] == [[0, 1]]
    assert "seed2: not a cml run (results.json: a step's macro_f1 is not a number)" in err
