"""The GPU check's DRY run: `DRY=1 bash bench/gpu_check.sh` on the CPU, with test_resnet at 32 px
and a few dozen images, so that the script a GPU slot runs once is known to work end to end
before the slot: every section writes its result line, the correctness sections pass, and the
report and the logs come back in OUT. Speed figures of a DRY run mean nothing."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]


@pytest.mark.slow  # about 2 minutes: before a GPU slot, `pytest -m slow tests/bench`
@pytest.mark.gpu_check_dry
def test_gpu_check_dry_run(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "DRY": "1", "OUT": str(out), "WORK": str(work), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]
    by_section = {line["section"]: line for line in lines}
    assert [line["section"] for line in lines] == SECTIONS, done.stdout[-3000:]
    report = {s: (by_section[s]["status"], by_section[s].get("summary")) for s in SECTIONS}
    # every section ran to its end within its time limit and wrote its own result
    assert all(by_section[s]["rc"] == 0 for s in SECTIONS), report
    assert by_section["s1"]["status"] == "info", report  # cml and Avalanche import
    assert by_section["s2"]["status"] == "pass", report  # finite mAP: KRT-R, prs+lwf+ewc+pseudo online
    assert by_section["s3"]["status"] == "pass", report  # kill -9, --resume: identical results.json
    assert by_section["s3"]["details"]["exact"], report
    assert by_section["s4"]["status"] == "measured", report
    assert set(by_section["s4"]["details"]["cases"]) == {"krt", "linear", "prs"}, report
    for s in ("s5", "s6", "s7"):  # the runs ended (exit 0) and gave a rate against the ceiling
        assert by_section[s]["status"] in ("pass", "below", "measured"), report
        assert by_section[s]["details"]["ceiling"], report
        runs = {k: v for k, v in by_section[s]["details"].items() if isinstance(v, dict)}
        assert len(runs) >= 2 and all(r["rc"] == 0 and r["rate"] > 0 for r in runs.values()), report
    assert by_section["s5"]["status"] in ("pass", "below"), report  # the 0.9-of-the-ceiling verdict
    assert not by_section["s7"]["details"]["compiled"]["fell_back"], report
    md = (out / "gpu_check.md").read_text()
    assert md.count("\n## ") == len(SECTIONS) and "DRY mode" in md
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "logs/s3/killed.log" in names and "logs/s5/cache.json" in names
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.jsonl", "gpu_check.md", "logs.tar.gz"]
