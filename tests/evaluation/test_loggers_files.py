"""`log.loggers: [tensorboard, csv, wandb]` on a tiny two-step run through `cml.Experiment`, with
`strategy.eval(benchmark.test_stream)` after each step: the files are read back (TensorBoard's
EventAccumulator, the CSV module, W&B's offline `.wandb` file decoded record by record) and each
holds cml's mAP of every step at x = the step, equal to results.json's; no value's x goes back.
W&B runs offline from the config alone: no WANDB_MODE, no account, no network."""

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from tests_helpers import tiny

from cml.evaluation.results import STEP_KEYS

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [*tiny(), "scenario.base=3", "scenario.increment=3"]  # 6 classes in 2 steps
LOGGING = ["log.loggers=[tensorboard,csv,wandb]", "log.metrics=[timing,ram]", "log.wandb.project=test"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run directory, results.json)."""
    import cml

    tmp = tmp_path_factory.mktemp("loggers")
    with pytest.MonkeyPatch.context() as env:
        for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR"):
            env.delenv(name, raising=False)
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            env.setenv(name, str(tmp / name.lower()))
        overrides = [*SETTINGS, *LOGGING, f"data.root={tmp / 'data'}"]
        with cml.Experiment.from_config(ROOT / "configs/demo.yaml", overrides, out=tmp / "run", verbose=False) as exp:
            for _ in range(2):
                exp.train_step()
                exp.strategy.eval(exp.benchmark.test_stream)
    return tmp / "run", json.loads((tmp / "run" / "results.json").read_text())


def expected_maps(results) -> dict[int, float]:
    return {t: s["map"] for t, s in enumerate(results["steps"])}


def test_csv_holds_each_step_under_results_names(run):
    out, results = run
    with (out / "csv" / "eval.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(int(r["step"]), int(r["experience"])) for r in rows]
    assert keys == [(0, 0), (1, 0), (1, 1)]  # experience 1 skipped after step 0; each key once
    for row in rows:
        if row["step"] == row["experience"]:
            record = results["steps"][int(row["step"])]
            for key in STEP_KEYS:
                assert (float(row[key]) if row[key] else None) == record[key], key
            assert [float(row[f"map_step{j}"]) for j in range(len(record["step_map"]))] == record["step_map"]
    old = rows[1]  # experience 0 after step 1: step 0's classes only
    assert float(old["map_step0"]) == pytest.approx(float(old["map"])) and old["map_step1"] == ""
    assert float(old["map"]) != results["steps"][0]["map"]  # the model changed
    with (out / "csv" / "avalanche.csv").open(newline="") as f:
        others = list(csv.DictReader(f))
    names = {r["metric"] for r in others}
    assert {"Loss_Epoch/train_phase/train_stream", "Time_Epoch/train_phase/train_stream"} <= names
    assert any(n.startswith("MaxRAMUsage_Epoch") for n in names)
    assert len({(r["metric"], r["x"]) for r in others}) == len(others)


def test_tensorboard_holds_each_step_at_its_x(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, results = run
    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    maps = {(e.step, e.value) for e in events.Scalars("eval/mAP")}
    assert maps == {(t, float(np.float32(m))) for t, m in expected_maps(results).items()}  # stored as float32
    assert {e.step for e in events.Scalars("eval_exp_mAP/exp0")} == {0, 1}
    assert {e.step for e in events.Scalars("eval_exp_mAP/exp1")} == {1}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(steps), tag  # in the order written: never back


def wandb_records(out: Path) -> list:
    """The records of the run's offline `.wandb` file: W&B's transaction log in LevelDB's log
    format (a 7-byte file header, then 32 KiB blocks of chunks, each with a 7-byte header:
    CRC32C, length, type full / first / middle / last), each record a protobuf `Record`."""
    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = out.glob("wandb/offline-run-*/run-*.wandb")
    data, block, pos, chunk, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, last
            record = Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_wandb_offline_holds_each_step_at_its_x(run):
    out, results = run
    records = wandb_records(out)
    axis = {r.metric.name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert axis["eval/mAP"] == "trained_step" and axis["eval_exp_mAP/exp0"] == "trained_step"
    assert axis["Loss_Epoch/train_phase/train_stream"] == "train_iteration"
    rows = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [row["_step"] for row in rows] == list(range(len(rows)))
    maps = {(row["trained_step"], row["eval/mAP"]) for row in rows if "eval/mAP" in row}
    assert maps == set(expected_maps(results).items())
    last_x: dict[str, float] = {}
    for row in rows:
        for name, value in row.items():
            if name in axis and axis[name]:
                x = row[axis[name]]
                assert x >= last_x.get(name, -math.inf), name
                last_x[name] = x
    assert {row["trained_step"] for row in rows if "eval_exp_mAP/exp1" in row} == {1}
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert started.run_id == (out / "wandb" / "cml-run-id").read_text() and started.project == "test"


def expected_summary(results) -> dict[tuple[int, str], float]:
    """After step t: the mean and the last of the steps' mAPs so far; forgetting from step 1 (the
    run's two steps: results.json's)."""
    maps = [s["map"] for s in results["steps"]]
    found = {}
    for t in range(len(maps)):
        found[t, "summary/avg_mAP"] = sum(maps[: t + 1]) / (t + 1)
        found[t, "summary/last_mAP"] = maps[t]
    found[1, "summary/avg_forgetting"] = results["avg_forgetting"]
    return found


def test_every_logger_holds_the_summary_after_each_step(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, results = run
    expected = expected_summary(results)
    with (out / "csv" / "summary.csv").open(newline="") as f:
        rows = {(int(r["step"]), r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
    assert rows.keys() == expected.keys() and all(rows[k] == pytest.approx(v, abs=1e-12) for k, v in expected.items())
    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tb = {(e.step, tag): e.value for tag in {k[1] for k in expected} for e in events.Scalars(tag)}
    assert tb.keys() == expected.keys() and all(tb[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in wandb_records(out)
        if r.WhichOneof("record_type") == "history"
    ]
    wandb = {(row["trained_step"], k): v for row in history for k, v in row.items() if k.startswith("summary/")}
    assert wandb.keys() == expected.keys() and all(wandb[k] == pytest.approx(v) for k, v in expected.items())
