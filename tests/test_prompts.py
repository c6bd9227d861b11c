"""Prompt templates (exact text) and proof extraction (edge cases, table-driven)."""

from __future__ import annotations

import pytest

from prover.data.problem import Problem
from prover.data.prompts import TEMPLATES, PromptError, extract_continuation, extract_restated, get_template

HEADER = (
    "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
)
STATEMENT = "theorem t (x : ℝ) (h₀ : 0 < x) :\n    0 < x ^ 2 := by\n"
PROBLEM = Problem(name="t", statement=STATEMENT, header=HEADER, informal="/-- Show that $x^2 > 0$. -/\n")


def test_template_names():
    assert sorted(TEMPLATES) == ["chat", "deepseek-v1.5", "deepseek-v1.5-cot"]
    with pytest.raises(PromptError, match=r"unknown prompt template 'nope'; choose one of \['chat', "):
        get_template("nope")


def test_deepseek_v15_exact_text():
    assert get_template("deepseek-v1.5").render(PROBLEM) == (
        "Complete the following Lean 4 code:\n\n```lean4\n"
        "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
        "/-- Show that $x^2 > 0$. -/\n"
        "theorem t (x : ℝ) (h₀ : 0 < x) :\n    0 < x ^ 2 := by\n"
    )


def test_deepseek_v15_cot_exact_text():
    assert get_template("deepseek-v1.5-cot").render(PROBLEM) == (
        "Complete the following Lean 4 code with explanatory comments preceding each line of code:\n\n```lean4\n"
        + HEADER
        + "/-- Show that $x^2 > 0$. -/\n"
        + STATEMENT
    )


def test_continuation_templates_stop_at_the_fence_chat_does_not():
    assert get_template("deepseek-v1.5").stop == ["```"]
    assert get_template("deepseek-v1.5-cot").stop == ["```"]
    assert get_template("chat").stop == []


class FakeChatTokenizer:
    chat_template = "set"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert (tokenize, add_generation_prompt) == (False, True)
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def test_chat_exact_user_message_and_rendering():
    template = get_template("chat")
    expected_message = (
        "Complete the following Lean 4 code:\n\n```lean4\n"
        + HEADER
        + "/-- Show that $x^2 > 0$. -/\n"
        + "theorem t (x : ℝ) (h₀ : 0 < x) :\n    0 < x ^ 2 := by\n  sorry"
        + "\n```\n\n"
        "Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof plan "
        "outlining the main proof steps and strategies.\n"
        "The plan should highlight key ideas, intermediate lemmas, and proof structures that will guide the "
        "construction of the final formal proof."
    )
    assert template.user_message(PROBLEM) == expected_message
    assert template.render(PROBLEM, FakeChatTokenizer()) == f"<user>{expected_message}</user><assistant>"


def test_chat_with_the_tiny_model_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = get_template("chat").render(PROBLEM, tokenizer)
    assert text == f"<s>user\n{get_template('chat').user_message(PROBLEM)}</s>\n<s>assistant\n"


def test_chat_without_tokenizer_is_a_clear_error():
    with pytest.raises(PromptError, match="chat template: give the task a tokenizer"):
        get_template("chat").render(PROBLEM)
    with pytest.raises(PromptError, match="extraction needs the problem"):
        get_template("chat").extract("```lean4\n" + STATEMENT + "  simp\n```")


# --- continuation extraction -----------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, require_fence, expected",
    [
        # the proof is everything before the closing fence
        ("  nlinarith [sq_nonneg x]\n```", True, "  nlinarith [sq_nonneg x]"),
        # text after the fence is cut
        ("  positivity\n```\n\nThis proof uses positivity.", True, "  positivity"),
        # two fences: cut at the first
        ("  simp\n```\n```lean4\ntheorem other : False := by\n  sorry\n```", True, "  simp"),
        # no closing fence: malformed when the fence is required ...
        ("  nlinarith [sq_nonneg x", True, None),
        # ... and taken whole when not
        ("  nlinarith [sq_nonneg x]\n", False, "  nlinarith [sq_nonneg x]"),
        # an empty proof is malformed
        ("```", True, None),
        ("\n  \n```\nok", True, None),
        ("", False, None),
        # a multi-line proof keeps its layout
        (
            "  have h : 0 < x ^ 2 := by positivity\n  exact h\n```",
            True,
            "  have h : 0 < x ^ 2 := by positivity\n  exact h",
        ),
    ],
)
def test_extract_continuation(completion, require_fence, expected):
    assert extract_continuation(completion, require_fence) == expected
    assert get_template("deepseek-v1.5").extract(completion, None, require_fence) == expected
    assert get_template("deepseek-v1.5-cot").extract(completion, PROBLEM, require_fence) == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        # the fence ends the completion: the proof before it
        ("  nlinarith [sq_nonneg x]\n```", "  nlinarith [sq_nonneg x]"),
        # whitespace (and the EOS the decoder dropped) after the fence is allowed
        ("  positivity\n```\n", "  positivity"),
        ("  positivity\n```  \n\n", "  positivity"),
        # any other text after the fence: wrong (the default rule would cut it and check "  positivity")
        ("  positivity\n```\n\nThis proof uses positivity.", None),
        # a second block after the first: the completion still ends with a fence, the proof is the first block's
        ("  simp\n```\n```lean4\ntheorem other : False := by\n  sorry\n```", "  simp"),
        # a fence in the middle of a line does not end the proof (the reference's regex wants newline + fence) ...
        ("  simp ```\n  ring\n```", "  simp ```\n  ring"),
        # ... and with no fence at a line start there is no proof
        ("  simp```", None),
        # no closing fence at all
        ("  nlinarith [sq_nonneg x", None),
        # a fence at once: empty proof
        ("```", None),
        ("\n```", None),
    ],
)
def test_reject_text_after_fence(completion, expected):
    """The reference's penalize_extra_text, as rewarding-unlikely-release verl/lean/verifier.py applies
    it: a completion whose stripped text does not end with the fence scores 0, and the checked code is
    its regex group from the opening fence to the first newline-plus-fence of prompt + completion."""
    assert extract_continuation(completion, True, reject_text_after_fence=True) == expected
    assert get_template("deepseek-v1.5").extract(completion, None, True, reject_text_after_fence=True) == expected


def test_lean_task_option_switches_the_fence_rule():
    from prover.tasks.base import TaskConfig
    from prover.tasks.lean import LeanTask

    text = "  positivity\n```\nThe proof is done."
    assert LeanTask(TaskConfig(name="lean")).extract_proof(text) == "  positivity"
    assert LeanTask(TaskConfig(name="lean", reject_text_after_fence=True)).extract_proof(text) is None


def test_chat_with_text_after_the_block_is_rejected_by_the_reference_rule():
    answer = f"Plan.\n```lean4\n{STATEMENT}{PROOF}\n```"
    assert get_template("chat").extract(answer, PROBLEM, True, reject_text_after_fence=True) == PROOF
    assert get_template("chat").extract(answer + "\nDone.", PROBLEM, True, reject_text_after_fence=True) is None


# --- chat extraction: the proof after the trusted statement, in the last Lean block --------------

PROOF = "  nlinarith [sq_nonneg x, h₀]"


@pytest.mark.parametrize(
    "completion, require_fence, expected",
    [
        # plan, then the full theorem with header
        (f"Plan: square is positive.\n```lean4\n{HEADER}{STATEMENT}{PROOF}\n```", True, PROOF),
        # the statement reformatted (whitespace only) still matches
        (f"```lean4\ntheorem t (x : ℝ) (h₀ : 0 < x) : 0 < x ^ 2 := by\n{PROOF}\n```", True, PROOF),
        # ```lean (without the 4) also counts
        (f"```lean\n{STATEMENT}{PROOF}\n```", True, PROOF),
        # two blocks: the last one is the answer (the first is the plan's sketch)
        (f"```lean4\n{STATEMENT}  sorry\n```\nNow the proof:\n```lean4\n{STATEMENT}{PROOF}\n```", True, PROOF),
        # text after the final fence is cut
        (f"```lean4\n{STATEMENT}{PROOF}\n```\nDone. ```", True, PROOF),
        # a changed statement (weakened hypothesis) is malformed
        (f"```lean4\ntheorem t (x : ℝ) (h₀ : 0 ≤ x) :\n    0 < x ^ 2 := by\n{PROOF}\n```", True, None),
        # a renamed theorem is malformed
        (f"```lean4\ntheorem t2 (x : ℝ) (h₀ : 0 < x) :\n    0 < x ^ 2 := by\n{PROOF}\n```", True, None),
        # `:= by` must end the statement: `:= by_contra` is not it
        ("```lean4\ntheorem t (x : ℝ) (h₀ : 0 < x) :\n    0 < x ^ 2 := by_contra h\n```", True, None),
        # no Lean block at all
        (f"The answer is {PROOF}", True, None),
        # an unclosed block: malformed when the fence is required, else taken to the end
        (f"```lean4\n{STATEMENT}{PROOF}\n", True, None),
        (f"```lean4\n{STATEMENT}{PROOF}\n", False, PROOF),
        # an empty proof
        (f"```lean4\n{STATEMENT}\n```", True, None),
    ],
)
def test_extract_restated(completion, require_fence, expected):
    assert extract_restated(completion, STATEMENT, require_fence) == expected
    assert get_template("chat").extract(completion, PROBLEM, require_fence) == expected


def test_restated_drops_model_text_before_the_statement():
    completion = f"```lean4\nimport Mathlib\nlemma helper : True := trivial\n\n{STATEMENT}{PROOF}\n```"
    assert extract_restated(completion, STATEMENT) == PROOF


# --- the token ids TRL trains on: one BOS, as DeepSeek-Prover-V1.5 samples ------------------------


def bos_adding_tokenizer(tiny_model_dir):
    """The tiny tokenizer made to prepend BOS to every text, as DeepSeek's tokenizers do
    (LlamaTokenizerFast with add_bos_token: true)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)]
    )
    assert tokenizer(text="x")["input_ids"][0] == tokenizer.bos_token_id
    return tokenizer


def trl_prompt_ids(tokenizer, prompts):
    """Token ids as TRL 1.16's GRPOTrainer._tokenize_prompts makes them from the dataset's text prompts."""
    from types import SimpleNamespace

    from trl import GRPOTrainer

    return GRPOTrainer._tokenize_prompts(SimpleNamespace(processing_class=tokenizer), prompts)[0]


@pytest.mark.parametrize("template", ["deepseek-v1.5", "chat"])
def test_training_prompts_begin_with_one_bos(tiny_model_dir, template):
    """Continuation prompts: BOS + the text, DeepSeek-Prover-V1.5's format (its vLLM sampling adds
    special tokens). Chat prompts rendered with the BOS text must not get a second one from TRL."""
    from prover.rl.dataset import build_dataset
    from prover.tasks.base import TaskConfig
    from prover.tasks.lean import LeanTask

    tokenizer = bos_adding_tokenizer(tiny_model_dir)
    task = LeanTask(TaskConfig(name="lean", prompt_template=template), tokenizer=tokenizer)
    dataset = build_dataset(task, [PROBLEM], tokenizer)
    (ids,) = trl_prompt_ids(tokenizer, list(dataset["prompt"]))
    text = task.build_prompt(PROBLEM)
    body = text[len(tokenizer.bos_token) :] if text.startswith(tokenizer.bos_token) else text
    assert ids == [tokenizer.bos_token_id] + tokenizer(text=body, add_special_tokens=False)["input_ids"]
