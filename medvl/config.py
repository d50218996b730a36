"""Typed configuration dataclasses.

Every configurable part of medvl declares a ``@dataclass`` that subclasses :class:`Config`. Values are checked against
the type hints when the object is built (``__post_init__``), so an unknown key or a value of the wrong type fails
early with a message naming the key. Configs round-trip through YAML and JSON (``from_file`` / ``to_file``).

Example:
    >>> @dataclass
    ... class TileConfig(Config):
    ...     mpp: float = 0.5
    ...     size: int = 224
    >>> TileConfig.from_dict({"mpp": 1.0}).size
    224
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

from medvl.errors import ConfigError

C = TypeVar("C", bound="Config")

__all__ = ["Config", "ConfigError", "dataclass", "field", "save_resolved_config"]

field = dataclasses.field


@dataclass
class Config:
    """Base class: type-checked, serialisable configuration."""

    #: file name used by :meth:`save_resolved_config` for this kind of config
    resolved_name: ClassVar[str] = "run_config.json"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            converted = _convert(value, hints[f.name], f"{type(self).__name__}.{f.name}")
            if converted is not value:
                object.__setattr__(self, f.name, converted)
        self.validate()

    def validate(self) -> None:
        """Check relations between fields; subclasses override and raise :class:`ConfigError`."""

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str | None = None) -> C:
        """Build from a mapping; unknown keys are an error naming the key (and the file when given)."""
        where = f" ({source})" if source else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}{where}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{source + ': ' if source else ''}{cls.__name__}: unknown key '{unknown[0]}'"
                f" (known keys: {', '.join(sorted(names))})"
            )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in data
        ]
        if missing:
            raise ConfigError(f"{cls.__name__}{where}: missing required key '{missing[0]}'")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None

    @classmethod
    def from_file(cls: type[C], path: str | Path) -> C:
        """Read a YAML (``.yaml``/``.yml``) or JSON file."""
        return cls.from_dict(read_config_file(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_file(self, path: str | Path) -> Path:
        """Write YAML or JSON (by suffix) atomically."""
        from medvl.atomic import atomic_write_text

        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write_text(path, text)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file into a dict, with a clear error on a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError and json.JSONDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: cannot parse config ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return data


def save_resolved_config(config: Config, out_dir: str | Path, name: str | None = None) -> Path:
    """Write the fully resolved config next to a run's outputs (JSON)."""
    return config.to_file(Path(out_dir) / (name or config.resolved_name))


# -------------------------------------------------------------------- type checking
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, name: str) -> Any:  # noqa: C901 - one branch per supported typing form
    """Check ``value`` against ``tp``; convert the lossless cases (int->float, str->Path, dict->Config, list->tuple)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # `X | None`: the inner error names the real problem (e.g. a nested unknown key)
            raise ConfigError(errors[0])
        raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        return _convert_sequence(value, tp, origin or tp, args, name)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
        if len(args) == 2:
            return {
                _convert(k, args[0], f"{name} key"): _convert(v, args[1], f"{name}[{k!r}]") for k, v in value.items()
            }
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            try:
                return tp.from_dict(value)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        raise ConfigError(f"{name}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
    return _convert_scalar(value, tp, name)


def _convert_sequence(value: Any, tp: Any, origin: Any, args: tuple, name: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: expected a list, got {type(value).__name__} {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item_tp = args[0] if args else Any
    items = [_convert(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    float: ((int, float), "a number"),
    int: ((int,), "an integer"),
    bool: ((bool,), "true or false"),
    str: ((str,), "a string"),
    Path: ((str, Path), "a path"),
}


def _convert_scalar(value: Any, tp: Any, name: str) -> Any:
    if tp in _SCALARS:
        accepted, label = _SCALARS[tp]
        # bool is an int subclass: a YAML `true` must not pass as a number
        if not isinstance(value, accepted) or (isinstance(value, bool) and tp is not bool):
            raise ConfigError(f"{name}: expected {label}, got {value!r}")
        return tp(value) if tp in (float, Path) else value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{name}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value
