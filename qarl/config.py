"""Strict configuration: frozen dataclasses are the schema, YAML supplies the values.

A schema is a (frozen) dataclass whose fields carry real defaults, each documented by a string literal right below it.
``from_dict`` checks a plain mapping (from ``load_yaml``, ``merge`` and ``parse_overrides``) against the schema's type
hints and builds the instance; every mistake raises ``ConfigError`` whose message starts with the dotted key path, so
a command line can print it as one line. A dataclass may define ``validate(self) -> None`` raising ``ValueError`` for
range or cross-field checks; ``from_dict`` calls it after construction.

Supported annotations: ``int``, ``float``, ``bool``, ``str``, ``None``, ``X | None`` / ``Optional[X]``,
``Literal[...]``, ``tuple[X, ...]`` and fixed ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]`` and nested dataclasses.
Schema classes must be importable at module level: their hints are resolved with ``typing.get_type_hints``, which
cannot see classes defined inside a function when ``from __future__ import annotations`` is in force.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from qarl.files import atomic_write_text

__all__ = ["ConfigError", "dump_yaml", "from_dict", "load_yaml", "merge", "parse_overrides", "to_dict"]

T = TypeVar("T")

# PyYAML follows YAML 1.1, which reads ``1e-4`` (no dot) as a string. Float fields accept such strings, but only ones
# that look like a number as written: float() alone would also take '1_000' and ' 5 '.
_FLOAT_STR = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_NON_FINITE_WORD = re.compile(r"inf|nan", re.IGNORECASE)


class ConfigError(ValueError):
    """A mistake in configuration input; the message starts with the dotted key path (or the file name)."""


class _Mismatch(Exception):
    """Internal: the value at the current path has the wrong type; ``_convert`` words the message for the whole
    annotation there (so ``float | None`` reports 'expected float or null', not just 'expected float')."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


def _at(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    """'str 'abc'' style: type and a repr short enough to keep the message on one line."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as e:
        raise TypeError(
            f"cannot resolve the annotations of {cls.__qualname__} ({e}); define schema dataclasses at module level"
        ) from e


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _optional_arg(tp: Any) -> Any:
    """The X of ``X | None``; TypeError for other unions, whose conversion order would be ambiguous."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) != 1 or len(typing.get_args(tp)) != 2:
        raise TypeError(f"unsupported annotation {tp!r}: only X | None unions are supported")
    return args[0]


def _describe(tp: Any) -> str:
    """The expected type in words, as the error messages show it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return "null"
    if _is_union(tp):
        return f"{_describe(_optional_arg(tp))} or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_describe(args[0])}"
        return f"list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin is list:
        return f"list of {_describe(args[0])}"
    if origin is dict:
        return f"mapping of str to {_describe(args[1])}"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", repr(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    try:
        return _convert_inner(tp, value, path)
    except _Mismatch as m:
        raise ConfigError(_at(path, f"expected {_describe(tp)}, got {_show(value)}{m.detail}")) from None


def _convert_inner(tp: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    # bool is a subclass of int, so every numeric check excludes it explicitly: `iterations: true` is a mistake.
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch
    if tp is float:
        return _to_float(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise _Mismatch
    if tp is type(None) or tp is None:
        if value is None:
            return None
        raise _Mismatch

    if _is_union(tp):
        inner = _optional_arg(tp)
        return None if value is None else _convert_inner(inner, value, path)

    if origin is Literal:
        # Compare type as well as value: True == 1 and 1 == 1.0 would otherwise slip through.
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return choice
        raise _Mismatch

    if origin in (tuple, list):
        # A str is a Sequence too; 'abc' for a list of str is a mistake, not ['a', 'b', 'c'].
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if not args:
            raise TypeError(f"unsupported annotation {tp!r}: give the element type")
        if origin is list:
            (elem,) = args
            return [_convert(elem, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Mismatch(f" (length {len(value)})")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))

    if origin is dict:
        key_tp, val_tp = args
        if key_tp is not str:
            raise TypeError(f"unsupported annotation {tp!r}: dict keys must be str")
        if not isinstance(value, Mapping):
            raise _Mismatch
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(_at(path, f"keys must be strings, got {_show(k)}"))
            out[k] = _convert(val_tp, v, _join(path, k))
        return out

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return from_dict(tp, value, path)

    raise TypeError(f"unsupported annotation {tp!r} at {path or 'top level'}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise _Mismatch(" (out of range)") from None
    if isinstance(value, str) and _FLOAT_STR.fullmatch(value):
        result = float(value)
        # '1e400' silently becomes inf; only a value written as inf/nan may be non-finite.
        if not math.isfinite(result) and not _NON_FINITE_WORD.search(value):
            raise _Mismatch(" (out of range)")
        return result
    raise _Mismatch


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, checking every value against the type hints.

    Missing keys take the field default; fields without one are required. ``path`` prefixes error messages (the
    dotted location of ``data`` in a larger config). Raises ConfigError for any mistake in ``data``, TypeError for a
    schema this module cannot read.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(_at(path, f"expected {_describe(cls)}, got {_show(data)}"))

    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    allowed = [f.name for f in fields]

    # Unknown keys first: a misspelt key would otherwise surface as a less helpful 'required' on the real one.
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(_at(path, f"keys must be strings, got {_show(key)}"))
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            listed = ", ".join(allowed) if allowed else "none"
            raise ConfigError(f"{_join(path, key)}: unknown key{hint}; allowed keys: {listed}")

    kwargs: dict[str, Any] = {}
    for f in fields:
        key_path = _join(path, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required")

    # Both __post_init__ and validate() report range or cross-field mistakes as ValueError; give them the path.
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ValueError as e:
        raise ConfigError(_at(path, str(e))) from e
    return obj


def _plain(value: Any, where: str) -> Any:
    # Exact plain types so yaml.safe_dump can write them: it refuses subclasses such as numpy.float64 or str enums.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), _join(where, f.name)) for f in dataclasses.fields(value) if f.init
        }
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: _plain(v, _join(where, str(k))) for k, v in value.items()}
    raise TypeError(f"{where}: cannot convert {_show(value)} to plain YAML data")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as nested plain dicts, lists, int, float, str, bool and None (tuples become lists).

    Only init fields are written, so ``from_dict(type(obj), to_dict(obj)) == obj``.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {obj!r}")
    return _plain(obj, "")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge key by key, anything else in ``override`` (lists included) replaces.

    Neither argument is mutated, and the result shares no mutable values with them.
    """
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _yaml_problem(e: yaml.YAMLError) -> str:
    # MarkedYAMLError splits its wording into context ('expected a single document') and problem ('but found ...').
    parts = [getattr(e, "context", None), getattr(e, "problem", None)]
    text = ": ".join(str(p) for p in parts if p) or str(e)
    return " ".join(text.split())


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Command-line ``dotted.key=value`` items as a nested dict; each value is read with ``yaml.safe_load``.

    ``loop.iterations=5`` gives ``{'loop': {'iterations': 5}}``; ``net_arch=[64,64]`` a list; ``x=null`` None.
    Raises ConfigError for an item without ``=``, an empty key or key segment, an empty or invalid YAML value, or a
    key given twice (or both as a leaf and as a parent of another key).
    """
    if isinstance(items, str):
        raise TypeError("parse_overrides takes a sequence of 'key=value' strings, not one string")
    out: dict[str, Any] = {}
    seen: dict[tuple[str, ...], str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        parts = tuple(p.strip() for p in key.split("."))
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty segment in key {key!r}")
        key = ".".join(parts)
        # An empty value would load as None; make the user say `null` or `''` so a forgotten value is not silent.
        if not text.strip():
            raise ConfigError(
                f"{key}: empty value in override {item!r} (write null for None or '' for an empty string)"
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: invalid YAML value {text!r} in override {item!r}: {_yaml_problem(e)}") from None

        for other, other_item in seen.items():
            short = min(len(other), len(parts))
            if other[:short] == parts[:short]:
                if other == parts:
                    raise ConfigError(f"{key}: given twice ({other_item!r} and {item!r})")
                raise ConfigError(f"{key}: override {item!r} conflicts with {other_item!r}")
        seen[parts] = item

        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; an empty file is ``{}``.

    Raises ConfigError naming the file for a missing or unreadable file, a syntax error (with line and column) or a
    top level that is not a mapping. Note PyYAML keeps the last of duplicate keys without complaint.
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        raise ConfigError(f"{where}: invalid YAML: {_yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: top level must be a mapping, got {type(data).__name__}")
    return data


def require_at_least(config: Any, names: Sequence[str], minimum: int) -> None:
    """Raise ValueError naming the first of ``config``'s fields ``names`` below ``minimum`` (for ``validate()``)."""
    for name in names:
        if getattr(config, name) < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {getattr(config, name)}")


LEGACY_METHOD_KEY = "algorithm"
"""What ``method`` was called in the files of earlier versions (config.yaml, meta.json, eval.parquet, checkpoints)."""


def with_method_key(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with an earlier version's ``algorithm`` key read as ``method`` (files on disk are never rewritten)."""
    out = dict(data)
    if LEGACY_METHOD_KEY in out and "method" not in out:
        out["method"] = out.pop(LEGACY_METHOD_KEY)
    return out


LEGACY_DIAGNOSTICS_KEYS: dict[str, str | None] = {
    "heldout_size": "recent_size",
    "train_size": "sample_size",
    "regression_steps": None,
    "regression_batch": None,
    "regression_lr": None,
}
"""Earlier versions' ``diagnostics`` keys in stored run files: renamed (to the new name) or retired (None)."""


def with_current_diagnostics_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored ``diagnostics`` settings with an earlier version's keys renamed or dropped (files are never rewritten;
    a key present under both names keeps the current name's value)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in LEGACY_DIAGNOSTICS_KEYS:
            out[key] = value
        elif LEGACY_DIAGNOSTICS_KEYS[key] is not None and LEGACY_DIAGNOSTICS_KEYS[key] not in data:
            out[LEGACY_DIAGNOSTICS_KEYS[key]] = value
    return out


SCALES = ("smoke", "small", "paper")
"""The budget presets of ``configs/scales.yaml``, smallest first."""


def configs_dir() -> Path:
    """The repository's ``configs/`` folder (next to the packages)."""
    return Path(__file__).resolve().parents[1] / "configs"


def dump_yaml(data: Mapping[str, Any], path: str | os.PathLike[str], header: str = "") -> None:
    """Write ``data`` with ``yaml.safe_dump(sort_keys=False)`` after ``header`` (e.g. comment lines), atomically: a
    reader sees the old file or the new one.

    The text is produced before any file is touched, so data ``safe_dump`` cannot represent leaves nothing behind.
    """
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, header + text)
