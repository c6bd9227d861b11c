from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from prover.config import ConfigError, load_config, to_dict
from prover.runinfo import write_run_info


@dataclass
class Inner:
    backend: Literal["local", "ray"] = "local"
    workers: int = 2
    timeout: float = 1.5
    allow: list[str] = field(default_factory=lambda: ["a"])


@dataclass
class Outer:
    model: str = "m"
    seed: int | None = None
    sandbox: bool = True
    inner: Inner = field(default_factory=Inner)


def test_defaults_yaml_and_cli_layer_in_order(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: from-yaml\ninner:\n  workers: 8\n  timeout: 1e-3\n")
    out = load_config(Outer, ["--config", str(cfg), "--inner.backend", "ray", "--seed=3", "--inner.allow", "x,y"])
    assert out.model == "from-yaml"
    assert out.inner == Inner(backend="ray", workers=8, timeout=0.001, allow=["x", "y"])
    assert out.seed == 3 and out.sandbox is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--modle", "x"], "unknown key(s) ['modle']"),  # a typo is an error, not silently ignored
        (["--inner.wrokers", "3"], "config.inner: unknown key(s) ['wrokers']"),
        (["--inner.workers", "three"], "config.inner.workers"),
        (["--inner.backend", "slurm"], "expected one of ['local', 'ray']"),
        (["--sandbox", "maybe"], "expected true/false"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_input_names_the_field(argv, message):
    with pytest.raises(ConfigError) as err:
        load_config(Outer, argv)
    assert message in str(err.value)


def test_unknown_yaml_key_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("inner:\n  nope: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml\.inner: unknown key"):
        load_config(Outer, ["--config", str(cfg)])


def test_bare_flag_and_none():
    out = load_config(Outer, ["--sandbox", "false", "--seed", "none"])
    assert out.sandbox is False and out.seed is None


def test_run_info_records_config_versions_and_commit(tmp_path):
    cfg = load_config(Outer, ["--seed", "7"])
    write_run_info(tmp_path, cfg, seeds={"seed": 7})
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seeds"] == {"seed": 7}
    assert "torch" in info["packages"] and "commit" in info["git"]
    assert "seed: 7" in (tmp_path / "config.yaml").read_text()
    write_run_info(tmp_path, cfg)  # a resumed run keeps the earlier record
    assert (tmp_path / "run_info.1.json").exists()
    assert to_dict(cfg)["inner"]["allow"] == ["a"]
