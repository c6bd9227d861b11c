"""Nested dataclass configs loaded from YAML and overridden from the command line.

Every entry point has one top-level dataclass whose fields may themselves be dataclasses
(``verifier.backend``). ``--config recipe.yaml`` sets values, ``--section.field value`` (or
``--section.field=value``) overrides them, and an unknown key is an error that names the key and
where it came from: a typo in a recipe must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or command-line override that does not fit the config dataclass."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return tp, type(None) in typing.get_args(tp)
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field type ``tp``."""
    tp, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: None is not allowed here")
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if tp is int:
            if isinstance(value, bool):
                raise ValueError(f"expected an integer, got {value!r}")
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return tp(value)
        if origin is typing.Literal:
            if value not in typing.get_args(tp):
                raise ValueError(f"expected one of {list(typing.get_args(tp))}, got {value!r}")
            return value
        if origin in (list, tuple) or tp in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()] if not value.startswith("[") else yaml.safe_load(value)
            (item_tp,) = typing.get_args(tp)[:1] or (Any,)
            items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin is dict or tp is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {value!r}")
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, str):
        return yaml.safe_load(value)
    return value


def _is_dataclass_type(tp: Any) -> bool:
    tp, _ = _unwrap_optional(tp)
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a nested mapping; unknown keys raise ``ConfigError`` naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp) and isinstance(value, dict):
            kwargs[name] = from_dict(_unwrap_optional(tp)[0], value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, tp, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe mapping of a (nested) config: what a run directory records."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    return plain(config)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--{dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    """Split ``[--config F] [--a.b value | --a.b=value | --flag]...`` into (F, nested overrides)."""
    config_path = None
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: options look like --name value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"  # a bare flag switches a boolean on
        if key == "config":
            config_path = value
        else:
            _set_dotted(overrides, key, value)
        i += 1
    return config_path, overrides


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a YAML mapping at the top level")
    return data


def load_config(cls: type[T], argv: list[str] | None = None, defaults: dict[str, Any] | None = None) -> T:
    """Defaults of ``cls`` < ``defaults`` < ``--config`` YAML < command-line overrides."""
    config_path, overrides = parse_overrides(list(argv or []))
    data = dict(defaults or {})
    where = "config"
    if config_path:
        data = _merge(data, load_yaml(config_path))
        where = config_path
    data = _merge(data, overrides)
    return from_dict(cls, data, where)


def help_text(cls: type, prefix: str = "") -> str:
    """One line per option, with the help text from each field's metadata."""
    lines = []
    for f in dataclasses.fields(cls):
        tp = _field_types(cls)[f.name]
        if _is_dataclass_type(tp):
            lines.append(help_text(_unwrap_optional(tp)[0], f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)"
        )
        lines.append(f"  --{prefix}{f.name} (default: {default!r})  {f.metadata.get('help', '')}".rstrip())
    return "\n".join(lines)
