"""The strict config layer: dataclass schemas, YAML values, merging and command-line overrides."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qarl.config import ConfigError, dump_yaml, from_dict, load_yaml, merge, parse_overrides, to_dict

# Schemas live at module level: get_type_hints cannot resolve classes local to a test function.


@dataclass(frozen=True)
class Net:
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer widths."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden activation."""

    def validate(self) -> None:
        if self.actor_lr <= 0:
            raise ValueError(f"actor_lr must be positive, got {self.actor_lr}")


@dataclass(frozen=True)
class Loop:
    iterations: int = 10
    """Outer iterations."""
    adversary_bound: float | None = 0.1
    """Adversary action bound; None means unbounded."""
    deterministic_eval: bool = True
    """Evaluate with the mean action."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Seeds to run."""
    weights: tuple[float, ...] = (1.0,)
    """Per-term loss weights."""


@dataclass(frozen=True)
class Experiment:
    name: str
    """Run name (required)."""
    protagonist: Net = field(default_factory=Net)
    """Protagonist network."""
    adversary: Optional[Net] = None  # noqa: UP045 - Optional[...] must be read the same as `X | None`
    """Adversary network, if any."""
    loop: Loop = field(default_factory=Loop)
    """Training loop."""
    tags: dict[str, str] = field(default_factory=dict)
    """Free-form labels."""
    shape: tuple[int, float] = (1, 2.0)
    """A fixed-length pair."""


@dataclass(frozen=True)
class Scalars:
    count: int = 0
    """An int."""
    rate: float = 1.0
    """A float."""
    flag: bool = False
    """A bool."""
    label: str = ""
    """A str."""
    maybe: int | None = None
    """An optional int."""
    mode: Literal["a", "b"] = "a"
    """A choice."""
    sizes: tuple[float, ...] = ()
    """Floats."""
    level: Literal[1, 2] = 1
    """A numeric choice: True == 1 in Python, but must not match here."""


def _error(cls, data, *parts: str) -> str:
    """from_dict must fail with a ConfigError whose message holds every part; returns the message."""
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data)
    msg = str(info.value)
    for part in parts:
        assert part in msg, (part, msg)
    assert "\n" not in msg
    return msg


# --- from_dict / to_dict ---------------------------------------------------------------------------------------------


def test_defaults_and_required():
    exp = from_dict(Experiment, {"name": "x"})
    assert exp == Experiment(name="x")
    assert exp.protagonist.net_arch == (64, 64)
    assert from_dict(Scalars, None) == Scalars()
    assert _error(Experiment, {}, "name: required").startswith("name: ")


def test_nested_values_are_converted():
    exp = from_dict(
        Experiment,
        {
            "name": "run",
            "protagonist": {"net_arch": [32, 16], "actor_lr": "1e-4", "activation": "relu"},
            "adversary": {"actor_lr": 2},
            "loop": {"iterations": 5, "adversary_bound": None, "seeds": [3], "weights": [1, "2e-1"]},
            "tags": {"env": "hopper"},
            "shape": [4, 5],
        },
    )
    assert exp.protagonist == Net(net_arch=(32, 16), actor_lr=1e-4, activation="relu")
    assert isinstance(exp.protagonist.net_arch, tuple)
    assert exp.adversary == Net(actor_lr=2.0) and type(exp.adversary.actor_lr) is float
    assert exp.loop.adversary_bound is None
    assert exp.loop.weights == (1.0, 0.2) and all(type(w) is float for w in exp.loop.weights)
    assert exp.shape == (4, 5.0) and type(exp.shape[1]) is float
    assert exp.tags == {"env": "hopper"}


def test_round_trip_with_nested_and_tuples():
    exp = Experiment(
        name="rt",
        protagonist=Net(net_arch=(8, 4, 2), actor_lr=1e-5),
        adversary=Net(activation="relu"),
        loop=Loop(iterations=3, adversary_bound=None, seeds=[7, 8], weights=(0.5, 0.25)),
        tags={"a": "b"},
    )
    data = to_dict(exp)
    assert data["protagonist"]["net_arch"] == [8, 4, 2] and isinstance(data["protagonist"]["net_arch"], list)
    assert data["adversary"] == {"net_arch": [64, 64], "actor_lr": 3e-4, "activation": "relu"}
    # Plain data only: safe_dump refuses tuples and dataclasses, so this would fail otherwise.
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert from_dict(Experiment, data) == exp
    assert from_dict(Experiment, yaml.safe_load(yaml.safe_dump(data))) == exp


def test_to_dict_rejects_non_dataclass():
    with pytest.raises(TypeError):
        to_dict({"a": 1})
    with pytest.raises(TypeError):
        to_dict(Net)


def test_float_accepts_int_and_exponent_strings():
    assert yaml.safe_load("x: 1e-4")["x"] == "1e-4"  # the YAML 1.1 quirk the float handling exists for
    s = from_dict(Scalars, {"rate": 3})
    assert s.rate == 3.0 and type(s.rate) is float
    assert from_dict(Scalars, {"rate": "1e-4"}).rate == pytest.approx(1e-4)
    assert from_dict(Scalars, {"rate": "-2.5E3"}).rate == -2500.0
    assert math.isinf(from_dict(Scalars, {"rate": "inf"}).rate)
    _error(Scalars, {"rate": "abc"}, "rate: expected float, got str 'abc'")
    _error(Scalars, {"rate": "1_000"}, "rate: expected float")
    _error(Scalars, {"rate": " 1"}, "rate: expected float")
    _error(Scalars, {"rate": "1e400"}, "rate: expected float", "out of range")


@pytest.mark.parametrize(
    ("data", "parts"),
    [
        ({"count": True}, ["count: expected int, got bool True"]),
        ({"count": 3.0}, ["count: expected int, got float 3.0"]),
        ({"count": "3"}, ["count: expected int, got str '3'"]),
        ({"rate": False}, ["rate: expected float, got bool False"]),
        ({"flag": 1}, ["flag: expected bool, got int 1"]),
        ({"flag": "yes"}, ["flag: expected bool, got str 'yes'"]),
        ({"label": 5}, ["label: expected str, got int 5"]),
        ({"maybe": "x"}, ["maybe: expected int or null, got str 'x'"]),
        ({"mode": "c"}, ["mode: expected one of 'a', 'b', got str 'c'"]),
        ({"level": True}, ["level: expected one of 1, 2, got bool True"]),
        ({"level": 2.0}, ["level: expected one of 1, 2, got float 2.0"]),
        ({"sizes": "1,2"}, ["sizes: expected list of float, got str '1,2'"]),
        ({"sizes": [1, "x", 3]}, ["sizes[1]: expected float, got str 'x'"]),
    ],
)
def test_type_errors_name_path_and_expected_type(data, parts):
    _error(Scalars, data, *parts)


def test_nested_errors_carry_dotted_paths():
    base = {"name": "n"}
    _error(Experiment, {**base, "protagonist": {"actor_lr": "fast"}}, "protagonist.actor_lr: expected float")
    _error(Experiment, {**base, "protagonist": {"net_arch": [64, 6.5]}}, "protagonist.net_arch[1]: expected int")
    _error(Experiment, {**base, "protagonist": {"activation": "gelu"}}, "protagonist.activation:", "'tanh', 'relu'")
    _error(Experiment, {**base, "adversary": [1]}, "adversary: expected mapping (Net) or null, got list [1]")
    _error(Experiment, {**base, "loop": "fast"}, "loop: expected mapping (Loop), got str")
    _error(Experiment, {**base, "loop": {"seeds": [1, True]}}, "loop.seeds[1]: expected int, got bool")
    _error(Experiment, {**base, "tags": {"env": 3}}, "tags.env: expected str, got int 3")
    _error(Experiment, {**base, "tags": {1: "x"}}, "tags: keys must be strings")
    _error(Experiment, {**base, "shape": [1, 2, 3]}, "shape: expected list of 2 (int, float)", "length 3")
    _error(Experiment, ["name"], "expected mapping (Experiment), got list")


def test_unknown_key_lists_allowed_and_suggests():
    msg = _error(
        Experiment,
        {"name": "n", "protagonist": {"actr_lr": 1.0}},
        "protagonist.actr_lr: unknown key",
        "did you mean 'actor_lr'?",
        "net_arch, actor_lr, activation",
    )
    assert msg.startswith("protagonist.actr_lr:")
    msg = _error(Scalars, {"zzzzzz": 1}, "zzzzzz: unknown key", "allowed keys: count, rate")
    assert "did you mean" not in msg


def test_validate_hook_is_called_with_path():
    _error(Experiment, {"name": "n", "adversary": {"actor_lr": -1}}, "adversary: actor_lr must be positive, got -1.0")
    _error(Net, {"actor_lr": 0}, "actor_lr must be positive")
    with pytest.raises(ConfigError) as info:
        from_dict(Net, {"actor_lr": -1}, path="protagonist")
    assert str(info.value).startswith("protagonist: actor_lr must be positive")
    assert isinstance(info.value, ValueError)


def test_schema_errors_are_type_errors():
    with pytest.raises(TypeError):
        from_dict(dict, {})

    @dataclass
    class Local:
        inner: Net = field(default_factory=Net)

    # Hints naming local classes cannot resolve; the error should say so instead of a bare NameError.
    @dataclass
    class Outer:
        child: Local = field(default_factory=Local)

    with pytest.raises(TypeError, match="module level"):
        from_dict(Outer, {})


# --- merge -----------------------------------------------------------------------------------------------------------


def test_merge_is_deep_and_pure():
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "keep": [0]}
    override = {"a": {"b": 2, "c": [9], "d": {"f": 2}}, "new": {"x": 1}}
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)
    out = merge(base, override)
    assert out == {"a": {"b": 2, "c": [9], "d": {"e": 1, "f": 2}}, "keep": [0], "new": {"x": 1}}
    assert base == base_before and override == override_before
    out["keep"].append(1)
    out["new"]["x"] = 5
    out["a"]["d"]["e"] = 7
    assert base == base_before and override == override_before
    assert merge({"a": {"b": 1}}, {"a": None}) == {"a": None}
    assert merge({"a": 1}, {"a": {"b": 1}}) == {"a": {"b": 1}}


# --- parse_overrides -------------------------------------------------------------------------------------------------


def test_parse_overrides_values():
    got = parse_overrides(
        [
            "protagonist.actor_lr=3e-4",
            "loop.iterations=5",
            "protagonist.net_arch=[64,64]",
            "loop.adversary_bound=null",
            "loop.deterministic_eval=false",
            "name=a=b",
            "tags={env: hopper}",
        ]
    )
    assert got == {
        "protagonist": {"actor_lr": "3e-4", "net_arch": [64, 64]},
        "loop": {"iterations": 5, "adversary_bound": None, "deterministic_eval": False},
        "name": "a=b",
        "tags": {"env": "hopper"},
    }
    assert parse_overrides([]) == {}
    exp = from_dict(Experiment, merge({"name": "base", "loop": {"iterations": 1}}, got))
    assert exp.protagonist.actor_lr == pytest.approx(3e-4)
    assert exp.loop == Loop(iterations=5, adversary_bound=None, deterministic_eval=False)
    assert exp.name == "a=b"


@pytest.mark.parametrize(
    ("items", "pattern"),
    [
        (["loop.iterations"], r"^override 'loop.iterations': expected key=value"),
        (["=5"], r"^override '=5': empty key"),
        (["a..b=1"], r"^override 'a..b=1': empty segment"),
        ([".a=1"], r"empty segment"),
        (["a.=1"], r"empty segment"),
        (["a=[1,2"], r"^a: invalid YAML value '\[1,2'"),
        (["a="], r"^a: empty value"),
        (["a=1", "a=2"], r"^a: given twice \('a=1' and 'a=2'\)"),
        (["a.b=1", "a=2"], r"^a: override 'a=2' conflicts with 'a.b=1'"),
        (["a=2", "a.b=1"], r"^a.b: override 'a.b=1' conflicts with 'a=2'"),
    ],
)
def test_parse_overrides_rejects_malformed(items, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_overrides(items)


def test_parse_overrides_refuses_unsafe_yaml():
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_overrides(["a=!!python/object/apply:os.getcwd []"])


# --- load_yaml / dump_yaml -------------------------------------------------------------------------------------------


def test_load_yaml_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(missing))}: no such file"):
        load_yaml(missing)

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(bad)
    msg = str(info.value)
    assert msg.startswith(f"{bad}:") and "invalid YAML" in msg
    line = int(re.match(rf"{re.escape(str(bad))}:(\d+):", msg).group(1))
    assert line in (2, 3, 4)  # the parser reports where it noticed the unclosed list, after line 1

    tabbed = tmp_path / "tab.yaml"
    tabbed.write_text("a: 1\nb:\n\t- 2\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tabbed))}:3:"):
        load_yaml(tabbed)

    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: top level must be a mapping, got list"):
        load_yaml(listed)

    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path)


def test_load_yaml_empty_and_plain(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}
    comments = tmp_path / "comments.yaml"
    comments.write_text("# nothing here\n")
    assert load_yaml(str(comments)) == {}
    plain = tmp_path / "plain.yaml"
    plain.write_text("loop:\n  iterations: 3\nlr: 1e-4\n")
    assert load_yaml(plain) == {"loop": {"iterations": 3}, "lr": "1e-4"}


def test_dump_then_load_round_trip(tmp_path):
    exp = Experiment(
        name="Zürich run",
        protagonist=Net(net_arch=(1, 2), actor_lr=1e-12),
        loop=Loop(adversary_bound=float("inf"), weights=(1e300, -0.0)),
    )
    target = tmp_path / "cfg.yaml"
    target.write_text("old: content\n")
    dump_yaml(to_dict(exp), target)
    assert from_dict(Experiment, load_yaml(target)) == exp
    text = target.read_text(encoding="utf-8")
    assert text.startswith("name: ")  # sort_keys=False keeps field order
    assert os.listdir(tmp_path) == ["cfg.yaml"]  # no temp file left behind
    # Created with the umask's mode like a plain open(), not mkstemp's 0o600.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_dump_yaml_failure_leaves_target_alone(tmp_path):
    target = tmp_path / "cfg.yaml"
    target.write_text("old: 1\n")
    with pytest.raises(yaml.YAMLError):
        dump_yaml({"bad": object()}, target)
    assert target.read_text() == "old: 1\n"
    assert os.listdir(tmp_path) == ["cfg.yaml"]


# --- property --------------------------------------------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.builds(
    Scalars,
    count=st.integers(min_value=-(2**70), max_value=2**70),
    rate=st.floats(allow_nan=False),
    flag=st.booleans(),
    label=st.text(max_size=20),
    maybe=st.none() | st.integers(),
    mode=st.sampled_from(["a", "b"]),
    sizes=st.lists(_finite, max_size=5).map(tuple),
    level=st.sampled_from([1, 2]),
)


@settings(max_examples=150, deadline=None)
@given(_scalars)
def test_property_round_trip(x):
    assert from_dict(Scalars, to_dict(x)) == x


@settings(max_examples=60, deadline=None)
@given(_scalars)
def test_property_round_trip_through_yaml_text(x):
    # Through real YAML text as well: the dumped floats and strings must read back as the same values.
    assert from_dict(Scalars, yaml.safe_load(yaml.safe_dump(to_dict(x)))) == x


def test_field_docstrings_do_not_become_fields():
    assert [f.name for f in dataclasses.fields(Net)] == ["net_arch", "actor_lr", "activation"]
