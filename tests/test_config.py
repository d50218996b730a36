from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from medvl.config import Config, ConfigError, save_resolved_config


@dataclass
class Inner(Config):
    size: int = 224
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer(Config):
    name: str
    lr: float = 1e-3
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    out: Path | None = None
    maybe: Inner | None = None

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError("Outer.lr: must be positive")


def test_roundtrip_yaml_and_json(tmp_path):
    cfg = Outer(name="x", lr=2, tags=["a"], inner={"size": 32, "mode": "b"}, out="runs/1")
    assert cfg.lr == 2.0 and isinstance(cfg.lr, float)
    assert isinstance(cfg.inner, Inner) and cfg.inner.size == 32
    assert cfg.out == Path("runs/1")
    for suffix in (".yaml", ".json"):
        path = cfg.to_file(tmp_path / f"c{suffix}")
        assert Outer.from_file(path) == cfg


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="c.yaml: Outer: unknown key 'learning_rate'"):
        Outer.from_file(path)


def test_nested_unknown_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        Outer.from_dict({"name": "x", "inner": {"bogus": 1}})
    with pytest.raises(ConfigError, match="Inner.size: expected an integer"):
        Outer.from_dict({"name": "x", "inner": {"size": "big"}})
    with pytest.raises(ConfigError, match="Outer.lr: expected a number"):
        Outer(name="x", lr="fast")
    with pytest.raises(ConfigError, match="must be one of"):
        Inner(mode="c")
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        Outer.from_dict({})
    with pytest.raises(ConfigError, match="must be positive"):
        Outer(name="x", lr=-1.0)


def test_malformed_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: cannot parse"):
        Outer.from_file(path)
    with pytest.raises(ConfigError, match="not found"):
        Outer.from_file(tmp_path / "missing.yaml")


def test_save_resolved_config(tmp_path):
    path = save_resolved_config(Outer(name="run"), tmp_path)
    assert path.name == "run_config.json" and Outer.from_file(path).name == "run"


def test_optional_nested_config_keeps_inner_error():
    assert Outer(name="x", maybe={"size": 8}).maybe == Inner(size=8)
    with pytest.raises(ConfigError, match="unknown key 'sise'"):
        Outer.from_dict({"name": "x", "maybe": {"sise": 8}})
