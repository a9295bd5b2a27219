"""Hostile config input: limits of the YAML loader, non-finite and out-of-range values, binary and
non-UTF-8 files, and a property-based fuzz test: any document or `--set` value gives a valid
config or one UserError line, never another exception or a hang."""

import dataclasses
import math
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cml.commands.cli import main
from cml.config import Config, describe, load_config, to_dict
from cml.core import safeyaml
from cml.core.errors import UserError
from cml.core.registry import MODELS

BOMB = "model:\n  options:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)
)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def one_line_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_alias_bomb_in_model_options_is_refused_at_once(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["run", str(write(tmp_path, BOMB))]) == 2
    err = capsys.readouterr().err
    assert "c.yaml: refused: more than 100000 values once its aliases are expanded" in err
    assert err.count("\n") == 1
    assert time.perf_counter() - start < 5  # 10^9 values if expanded


def test_alias_bomb_in_a_set_value():
    value = (
        "{a: &a [1,1,1,1,1,1,1,1,1,1], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]}"
    )
    message = one_line_error(lambda: load_config(None, [f"model.options={value}"]))
    assert message.startswith("--set 'model.options={a: &a") and "more than 100000 values" in message


def test_moderate_aliases_are_fine(tmp_path):
    cfg = load_config(write(tmp_path, "scenario:\n  task_order: &a [0, 1]\neval:\n  groups:\n    thresholds: *a\n"))
    assert cfg.scenario.task_order == [0, 1] and cfg.eval.groups.thresholds == [0, 1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: &a [*a]\n", "an alias refers to the node that contains it"),
        ("[" * 60 + "]" * 60 + "\n", "nested deeper than 50 levels"),
        (
            "a: &a [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
            "b: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
            "nested deeper than 50 levels once its aliases are expanded",
        ),
        ("seed: !!int abc\n", "not valid YAML (ValueError: invalid literal for int()"),
        ("seed: !!timestamp 2020-13-45\n", "not valid YAML (ValueError: month must be in 1..12)"),
        ("seed: !!python/object/apply:os.system [ls]\n", "not valid YAML (could not determine a constructor"),
        (
            "a: 1\n---\nb: 2\n",
            "line 2: not valid YAML (expected a single document in the stream; but found another document)",
        ),
        ("seed: 1\x07\n", "not valid YAML (ReaderError: unacceptable character #x0007"),
    ],
)
def test_yaml_limits_and_errors(tmp_path, text, expected):
    assert expected in one_line_error(lambda: load_config(write(tmp_path, text)))


def test_size_limit(tmp_path):
    text = "model:\n  options:\n    x: '" + "a" * safeyaml.MAX_BYTES + "'\n"
    assert "larger than 1024 kB" in one_line_error(lambda: load_config(write(tmp_path, text)))


def test_binary_and_non_utf8_files(tmp_path):
    binary = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png.yaml")
    assert one_line_error(lambda: load_config(binary)).endswith(
        "png.yaml: a binary file, not text; expected a YAML config in UTF-8 text"
    )
    latin1 = write(tmp_path, "seed: 1  # café\n".encode("latin-1"), "latin.yaml")
    assert "latin.yaml: not UTF-8 text (byte 0xe9 at offset 14); save it as UTF-8" in one_line_error(
        lambda: load_config(latin1)
    )
    bom = write(tmp_path, "\ufeffseed: 3\n".encode("utf-8"), "bom.yaml")
    assert load_config(bom).seed == 3


FLOAT_KEYS = [key for key, type_name, _, _ in describe() if type_name.startswith("a number")]


def with_model(key: str) -> list[str]:
    """A model.options key is checked by the schema of a model that declares it."""
    if not key.startswith("model.options."):
        return []
    owner = next(
        d.name
        for d in MODELS.declarations()
        if d.options and key.split(".")[2] in {f.name for f in dataclasses.fields(d.options)}
    )
    return [f"model.name={owner}"]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "1e400"])
def test_non_finite_values_refused_for_every_float_key(value):
    assert len(FLOAT_KEYS) >= 10 and "train.lr" in FLOAT_KEYS and "eval.threshold" in FLOAT_KEYS
    for key in FLOAT_KEYS:
        message = one_line_error(lambda: load_config(None, [f"{key}={value}"] + with_model(key)))
        assert f"{key}: expected a finite number, got " in message, message
    if value.startswith((".", "-.")):  # YAML's own NaN and infinities (`nan` is a string there)
        message = one_line_error(lambda: load_config(None, [f"model.options={{drop_rate: {value}}}"]))
        assert "model.options.drop_rate: expected a finite number" in message


def test_values_torch_or_numpy_would_refuse_later():
    for key in ("seed", "data.synthetic.seed"):
        assert f"{key}: expected a value in [0, 4294967295], got 4294967296" in one_line_error(
            lambda: load_config(None, [f"{key}=4294967296"])
        )
        assert f"{key}: expected a value in [0, 4294967295], got -1" in one_line_error(
            lambda: load_config(None, [f"{key}=-1"])
        )
    assert load_config(None, ["seed=4294967295"]).seed == 2**32 - 1
    assert "train.lr: expected a value > 0, got 0" in one_line_error(lambda: load_config(None, ["train.lr=0"]))
    assert "train.epochs: expected an integer of at most 64 bits" in one_line_error(
        lambda: load_config(None, [f"train.epochs={2**70}"])
    )
    assert "data.root: a string must not contain NUL characters" in one_line_error(
        lambda: load_config(None, ['data.root="a\\0b"'])
    )
    assert "model.options: keys must be strings, got 1" in one_line_error(
        lambda: load_config(None, ["model.options={1: 2}"])
    )


def test_keys_with_newlines_stay_on_one_line():
    message = one_line_error(lambda: load_config(None, ['train={"a\\nb": 1}']))
    assert "unknown key 'train.'a\\nb''" in message


# --------------------------------------------------------------------------- fuzz


def _check(call) -> None:
    """A valid config that survives what the CLI does next (dump, reload), or one UserError line."""
    try:
        cfg = call()
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(cfg, Config)
    dumped = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    assert safeyaml.load(dumped, "config.yaml") == to_dict(cfg)
    for key, _, _, _ in describe():
        if key.startswith("model.options.") and not hasattr(cfg.model.options, key.split(".")[2]):
            continue  # another model's option (model.name chooses the schema of model.options)
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert not (isinstance(node, float) and not math.isfinite(node))


KEYS = [key for key, _, _, _ in describe()]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
yaml_words = st.sampled_from(
    [
        "&a",
        "*a",
        "[",
        "]",
        "{",
        "}",
        ":",
        "-",
        "? ",
        "!!int",
        "!!float",
        "!!binary",
        "!!timestamp",
        "!!set",
        "!!python/name:os.system",
        ".nan",
        ".inf",
        "~",
        "|",
        ">",
        "'",
        '"',
        "\n",
        "  ",
        "---",
        "<<: *a",
        "%YAML 1.1",
        "#",
        "0x1f",
        "1e5",
    ]
)
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.one_of(yaml_words, st.text(max_size=10), st.sampled_from(KEYS)), max_size=25))
def test_fuzz_any_yaml_document(tmp_path_factory, words):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text("".join(words), encoding="utf-8", errors="surrogatepass")
    _check(lambda: load_config(path))


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
def test_fuzz_valid_yaml_with_any_values(tmp_path_factory, doc):
    raw: dict = {}
    for dotted, value in doc.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # an earlier key gave the parent a value: this key cannot nest
                break
        else:
            node[last] = value
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8", errors="surrogatepass")
    _check(lambda: load_config(path))


@FUZZ
@given(
    st.sampled_from(KEYS + ["", "train", "a.b", "model.options.x"]),
    st.one_of(st.lists(yaml_words, max_size=10).map("".join), st.text(max_size=30)),
)
def test_fuzz_any_set_value(key, value):
    _check(lambda: load_config(None, [f"{key}={value}"]))
