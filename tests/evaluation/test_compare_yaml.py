"""`cml compare` reads each run's config.yaml through cml's YAML limits (issue 28, item 6): a
self-referencing alias was a RecursionError traceback, a 2.4 kB alias bomb hung past 60 s. Now
the directory is left out with a one-line note naming its file, and the rest are compared."""

import json

import pytest
from test_reliability_compare import groups_of, run_dir

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize("text", ["seed: &s [*s]\n", BOMB], ids=["self-alias", "alias-bomb"])
def test_a_hostile_config_yaml_is_left_out_naming_the_file(tmp_path, capsys, text):
    run_dir(tmp_path / "runs" / "good", 0, 40.0)
    run_dir(tmp_path / "runs" / "bad", 1, 50.0)
    bad = tmp_path / "runs" / "bad" / "config.yaml"
    bad.write_text(text)
    groups, err = groups_of(capsys, tmp_path, tmp_path / "runs")
    assert [g["seeds"] for g in groups] == [[0]]
    assert err.startswith(f"note: left out: {bad}: refused: ")
    assert "Traceback" not in err and err.count("\n") == 2
    json.dumps(groups)  # the good run is compared as before
