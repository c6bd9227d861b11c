"""The Lean task adapter: loading through the config, prompts, extraction, user statements, verifier."""

from __future__ import annotations

import pytest

import prover.verifier
from prover.config import ConfigError
from prover.data.loading import DEEPSEEK_HEADER, NAMED_EXCLUDES
from prover.tasks import TaskConfig, make_task
from prover.tasks.lean import LeanTask
from prover.verifier.config import VerifierConfig


@pytest.fixture
def data_dir_env(shared_data_dir, monkeypatch):
    monkeypatch.setenv("PROVER_DATA_DIR", str(shared_data_dir))


def lean(**kwargs) -> LeanTask:
    return make_task(TaskConfig(name="lean", **kwargs))


def test_make_task_builds_a_lean_task_that_loads_with_exclusions(data_dir_env):
    task = lean(dataset="minif2f-test", exclude=["minif2f-defective"], limit=300)
    assert isinstance(task, LeanTask) and task.name == "lean"
    problems = task.load_problems()
    assert len(problems) == 244 - len(NAMED_EXCLUDES["minif2f-defective"])
    assert not {p.name for p in problems} & set(NAMED_EXCLUDES["minif2f-defective"])
    assert [p.name for p in task.load_problems("minif2f-valid")][:1] == ["amc12a_2019_p21"]  # explicit dataset wins


def test_options_reach_the_loader(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        '{"id": "a", "lean": "theorem a : True := by", "part": "dev"}\n'
        '{"id": "b", "lean": "theorem b : True := by", "part": "test"}\n'
    )
    task = lean(
        dataset=str(path),
        options={
            "columns": {"name": "id", "statement": "lean", "split": "part"},
            "split": "test",
            "header": "import Mathlib\n\n",
        },
    )
    (p,) = task.load_problems()
    assert (p.name, p.header, p.split) == ("b", "import Mathlib\n\n", "test")


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"task.options: unknown key\(s\) \['splitt'\]"):
        lean(options={"splitt": "test"})
    with pytest.raises(ValueError, match="unknown prompt template 'deepseek'"):
        lean(prompt_template="deepseek")
    with pytest.raises(ValueError, match="task.dataset is not set"):
        lean().load_problems()


def test_prompt_and_extraction_round_trip(data_dir_env):
    task = lean(dataset="minif2f-test", limit=1)
    (p,) = task.load_problems()
    prompt = task.build_prompt(p)
    assert prompt.startswith("Complete the following Lean 4 code:\n\n```lean4\n" + DEEPSEEK_HEADER + p.informal)
    assert prompt.endswith(p.statement)
    assert task.stop == ["```"]
    assert task.extract_proof("  norm_num [h₀]\n```\nextra", p) == "  norm_num [h₀]"
    assert task.extract_proof("  norm_num [h₀]", p) is None
    assert lean(require_closing_fence=False).extract_proof("  norm_num [h₀]") == "  norm_num [h₀]"
    request = task.proof_request(p, "  norm_num")
    assert (request.header, request.statement, request.proof, request.name) == (
        p.header,
        p.statement,
        "  norm_num",
        p.name,
    )


def test_chat_template_uses_the_tokenizer_from_options(tiny_model_dir, data_dir_env):
    task = lean(dataset="minif2f-valid", limit=1, prompt_template="chat", options={"tokenizer": str(tiny_model_dir)})
    (p,) = task.load_problems()
    prompt = task.build_prompt(p)
    assert prompt.startswith("<s>user\nComplete the following Lean 4 code:") and prompt.endswith("<s>assistant\n")
    assert task.stop == []
    answer = f"Plan...\n```lean4\n{p.statement}  simp\n```"
    assert task.extract_proof(answer, p) == "  simp"
    assert task.extract_proof(answer.replace(p.name, p.name + "_v2"), p) is None  # statement changed


@pytest.mark.parametrize(
    "text, header, informal, statement",
    [
        # statement alone: the DeepSeek header
        ("theorem two_pos : (0 : ℕ) < 2 := by", DEEPSEEK_HEADER, "", "theorem two_pos : (0 : ℕ) < 2 := by\n"),
        # trailing whitespace after `:= by`, and `lemma`
        ("lemma l (x : ℝ) : x ^ 2 ≥ 0 := by  \n\n", DEEPSEEK_HEADER, "", "lemma l (x : ℝ) : x ^ 2 ≥ 0 := by\n"),
        # imports before the theorem become the header; a doc comment the informal statement
        (
            "import Mathlib\nopen Real\n\n/-- Pi is positive. -/\ntheorem p : 0 < π := by\n",
            "import Mathlib\nopen Real\n\n",
            "/-- Pi is positive. -/\n",
            "theorem p : 0 < π := by\n",
        ),
        # opens without imports are added after the DeepSeek header
        ("open Nat\ntheorem f : 0 < 5 ! := by", DEEPSEEK_HEADER + "open Nat\n\n", "", "theorem f : 0 < 5 ! := by\n"),
    ],
)
def test_parse_statement(text, header, informal, statement):
    p = lean().parse_statement(text, name="mine")
    assert (p.name, p.header, p.informal, p.statement, p.split) == ("mine", header, informal, statement, "user")


@pytest.mark.parametrize(
    "text, message",
    [
        ("example : 1 = 1 := by", "must declare a `theorem` or `lemma`"),
        ("def f : ℕ := 1", "must declare a `theorem` or `lemma`"),
        ("theorem t : 1 = 1 := by rfl", "must end with `:= by`"),
        ("theorem t : 1 = 1", "must end with `:= by`"),
    ],
)
def test_parse_statement_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        lean().parse_statement(text)


def test_make_verifier_delegates_to_the_verifier_factory(monkeypatch):
    seen = []
    monkeypatch.setattr(
        prover.verifier, "make_verifier", lambda config: seen.append(config) or "verifier", raising=False
    )
    config = VerifierConfig(workers=3)
    assert lean().make_verifier(config) == "verifier"
    assert lean().make_verifier() == "verifier"
    assert seen[0] is config and isinstance(seen[1], VerifierConfig)
