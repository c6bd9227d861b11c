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
        (["--modle", "x"], "unknown option --modle (did you mean --model?)"),  # a typo is an error, not ignored
        (["--inner.wrokers", "3"], "unknown option --inner.wrokers (did you mean --inner.workers?)"),
        (["--workers", "3"], "unknown option --workers (did you mean --inner.workers?)"),  # right name, no section
        (["--inner.zzz", "3"], "unknown option --inner.zzz; --help lists every option"),  # nothing close: no guess
        (["--inner.workers", "three"], "config.inner.workers"),
        (["--inner.workers"], "--inner.workers needs a value (an integer)"),  # not "invalid literal ... 'true'"
        (["--inner.timeout", "--seed", "3"], "--inner.timeout needs a value (a number)"),
        (["--inner.backend"], "--inner.backend needs a value (one of local, ray)"),
        (["--inner", "3"], "config.inner is a section, not a value"),
        (["--config"], "--config needs a value"),
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
    cfg.write_text("inner:\n  nope: 1\n  timout: 2\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml: unknown keys inner.nope, inner.timout \(did you mean inner.timeout\?\)$"
    ):
        load_config(Outer, ["--config", str(cfg)])
    # the same mistake on the command line is named as the option the user typed, not as the file's
    with pytest.raises(ConfigError, match=r"^unknown option --inner.timout \(did you mean --inner.timeout\?\)"):
        load_config(Outer, ["--config", str(cfg), "--inner.timout", "2"])


def test_typo_in_a_large_config_is_one_short_line(capsys):
    """``prover.train --grpo.learning_rat 1e-5`` used to print "running the default job" and then the
    ~230 keys of GRPOConfig; now it prints one line naming the likely option, and exits 2."""
    from prover.train import main

    assert main(["--grpo.learning_rat", "1e-5"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing before the error
    assert err.strip() == (
        "prover.train: unknown option --grpo.learning_rat (did you mean --grpo.learning_rate?); "
        "--help lists every option"
    )


def test_flag_without_a_value_says_so(capsys):
    from prover.train import main

    assert main(["--grpo.learning_rate"]) == 2
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err.strip() == "prover.train: --grpo.learning_rate needs a value (a number): --grpo.learning_rate VALUE"
    )
    assert load_config(Outer, ["--sandbox"]).sandbox is True  # a bare flag still switches a boolean on


def test_help_shows_the_default_jobs_values():
    """``prover.train --help`` showed TRL's learning rate (1e-06); the default job trains with 2e-4."""
    from prover.train import DEFAULT_JOB, make_parser

    text = make_parser().format_help()
    assert f"--grpo.learning_rate (default: {DEFAULT_JOB['grpo']['learning_rate']!r})" in text
    assert "--grpo.output_dir (default: 'runs/default-job')" in text


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
