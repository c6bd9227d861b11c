"""Nested dataclass configs loaded from YAML and overridden from the command line.

Every entry point has one top-level dataclass whose fields may themselves be dataclasses
(``verifier.backend``). ``--config recipe.yaml`` sets values, ``--section.field value`` (or
``--section.field=value``) overrides them, and an unknown key is an error that names the key and
where it came from: a typo in a recipe must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or command-line override that does not fit the config dataclass."""


class BareFlag:
    """An option given without a value (``--grpo.learning_rate`` at the end of the line, or before
    another option): it switches a boolean on, and for any other field it is an error naming the flag."""

    def __init__(self, flag: str):
        self.flag = flag

    def __repr__(self) -> str:
        return f"BareFlag({self.flag!r})"


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


def _accepts_bool(tp: Any) -> bool:
    if tp is bool or tp is Any:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and bool in typing.get_args(tp)


def _describe(tp: Any) -> str:
    """What a value of field type ``tp`` looks like, for an error message."""
    tp, _ = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple) or tp in (list, tuple):
        return "a comma-separated list"
    if _is_dataclass_type(tp):
        return "a section: set its fields as --section.field VALUE"
    names = {int: "an integer", float: "a number", str: "a string", dict: "a YAML mapping"}
    return names.get(tp, names.get(origin, getattr(tp, "__name__", str(tp))))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field type ``tp``."""
    if isinstance(value, BareFlag):
        if _accepts_bool(tp) or _accepts_bool(_unwrap_optional(tp)[0]):
            return True
        raise ConfigError(f"{value.flag} needs a value ({_describe(tp)}): {value.flag} VALUE")
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
                value = (
                    [v.strip() for v in value.split(",") if v.strip()]
                    if not value.startswith("[")
                    else yaml.safe_load(value)
                )
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


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def option_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted option of ``cls``: sections and the fields inside them."""
    hints = _field_types(cls)
    names = []
    for f in _init_fields(cls):
        names.append(prefix + f.name)
        if _is_dataclass_type(hints[f.name]):
            names += option_names(_unwrap_optional(hints[f.name])[0], f"{prefix}{f.name}.")
    return names


def unknown_keys(cls: type, data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of ``data`` that ``cls`` has no field for (a section's own keys are searched too)."""
    hints = _field_types(cls)
    fields = {f.name for f in _init_fields(cls)}
    unknown = []
    for key, value in data.items():
        if key not in fields:
            unknown.append(prefix + key)
        elif _is_dataclass_type(hints[key]) and isinstance(value, dict):
            unknown += unknown_keys(_unwrap_optional(hints[key])[0], value, f"{prefix}{key}.")
    return unknown


def suggest(key: str, names: list[str]) -> list[str]:
    """Options a mistyped dotted ``key`` most likely meant: the same name in another section, or a
    close spelling in the same section (at most three). Whole dotted keys are not compared: their
    shared section prefix makes unrelated fields look alike (``grpo.foo`` ~ ``grpo.fsdp``)."""
    section, _, leaf = key.rpartition(".")
    same_leaf = [n for n in names if n.rpartition(".")[2] == leaf]
    siblings = [n.rpartition(".")[2] for n in names if n.rpartition(".")[0] == section]
    near = [f"{section}.{m}" if section else m for m in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.75)]
    return list(dict.fromkeys(same_leaf + near))[:3]


def unknown_message(cls: type, keys: list[str], form: str = "--{}", what: str = "option") -> str:
    """``unknown option --a (did you mean --b?)``: the keys with their likely meanings, never the
    whole list of known keys (a GRPO config has ~230)."""
    names = option_names(cls)
    parts = []
    for key in keys:
        close = suggest(key, names)
        hint = f" (did you mean {' or '.join(form.format(c) for c in close)}?)" if close else ""
        parts.append(form.format(key) + hint)
    return f"unknown {what}{'s' if len(keys) > 1 else ''} {', '.join(parts)}"


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a nested mapping; unknown keys raise ``ConfigError`` naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = _field_types(cls)
    fields = {f.name: f for f in _init_fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        close = {k: suggest(k, sorted(fields)) for k in unknown}
        hints_text = "; ".join(f"did you mean {' or '.join(c)} for {k}?" for k, c in close.items() if c)
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}"
            + (f"; {hints_text}" if hints_text else f" ({len(fields)} known keys; --help lists them)")
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp) and isinstance(value, dict):
            kwargs[name] = from_dict(_unwrap_optional(tp)[0], value, f"{where}.{name}")
        elif _is_dataclass_type(tp) and not (value is None and _unwrap_optional(tp)[1]):
            raise ConfigError(f"{where}.{name} is a section, not a value: set its fields ({name}.FIELD)")
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
                value = BareFlag(arg)  # switches a boolean on; any other field needs a value
        if key == "config":
            if isinstance(value, BareFlag):
                raise ConfigError("--config needs a value (a YAML file): --config FILE.yaml")
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
    """Defaults of ``cls`` < ``defaults`` < ``--config`` YAML < command-line overrides.

    An unknown key is reported where it was written: the command line (as ``--key``) or the file."""
    config_path, overrides = parse_overrides(list(argv or []))
    unknown = unknown_keys(cls, overrides)
    if unknown:
        raise ConfigError(unknown_message(cls, unknown) + "; --help lists every option")
    data = dict(defaults or {})
    where = "config"
    if config_path:
        recipe = load_yaml(config_path)
        unknown = unknown_keys(cls, recipe)
        if unknown:
            raise ConfigError(f"{config_path}: " + unknown_message(cls, unknown, form="{}", what="key"))
        data = _merge(data, recipe)
        where = config_path
    data = _merge(data, overrides)
    return from_dict(cls, data, where)


def help_text(cls: type, prefix: str = "", defaults: dict[str, Any] | None = None, skip: tuple[str, ...] = ()) -> str:
    """One line per option, with the help text from each field's metadata.

    ``defaults``: a nested mapping of the values the entry point itself starts from (the default
    job's), shown instead of the class defaults. ``skip``: top-level fields the entry point lists
    as its own flags."""
    defaults = defaults or {}
    lines = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = _field_types(cls)[f.name]
        if _is_dataclass_type(tp):
            section = defaults.get(f.name)
            lines.append(
                help_text(_unwrap_optional(tp)[0], f"{prefix}{f.name}.", section if isinstance(section, dict) else None)
            )
            continue
        if f.name in defaults:
            default = defaults[f.name]
        else:
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
            )
        lines.append(f"  --{prefix}{f.name} (default: {default!r})  {f.metadata.get('help', '')}".rstrip())
    return "\n".join(lines)
