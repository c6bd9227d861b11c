"""Prompt templates by name, and the matching cut of a proof out of a completion.

Two families:

* continuation (``deepseek-v1.5``, ``deepseek-v1.5-cot``): the prompt opens a ```lean4 fence and
  ends with the trusted statement; the model continues with the proof and closes the fence.
  The proof is the completion up to the first closing fence.
* chat (``chat``): the tokenizer's chat template wraps a user message that shows the theorem; the
  model answers in prose and then restates the whole theorem in its own ```lean4 block. The proof
  is what follows the trusted statement in the last such block; a block whose statement differs
  from the trusted one is malformed (the model must not weaken the theorem it proves).

Extraction returns None for a malformed completion: an unclosed fence (when the closing fence is
required), a changed statement, or an empty proof. None is scored as a wrong proof.

The stricter rule of "Rewarding the Unlikely" (``reject_text_after_fence``; the release's
``penalize_extra_text``, AndreHe02/rewarding-unlikely-release ``verl/lean/verifier.py``) also makes a
completion wrong when any text follows its last fence, and its checked code (a regex from the
opening fence to the first newline-plus-fence) ends at the first fence that starts a line. It decides which rewards are 0 or 1 and so which groups
have signal, and it is the only pressure to stop at the fence when sampling has no stop string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prover.data.problem import Problem

FENCE = "```"
_LEAN_BLOCK_OPEN = re.compile(r"```lean4?[ \t]*\n")

# The prompt prefixes of DeepSeek-Prover-V1.5 (deepseek-ai/DeepSeek-Prover-V1.5, prover/utils.py:
# non_cot_prompt and cot_prompt). The CoT variant asks for comments before each line, where the
# RL model writes its natural-language plan, and continues the same open fence.
DEEPSEEK_V15_INSTRUCTION = "Complete the following Lean 4 code:"
DEEPSEEK_V15_COT_INSTRUCTION = (
    "Complete the following Lean 4 code with explanatory comments preceding each line of code:"
)

# The user message of the chat provers (DeepSeek-Prover-V2, Goedel-Prover-V2 style): the theorem
# with `sorry` in a fence, then a request for a proof plan before the Lean code.
CHAT_PLAN_REQUEST = (
    "Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof plan "
    "outlining the main proof steps and strategies.\n"
    "The plan should highlight key ideas, intermediate lemmas, and proof structures that will guide the "
    "construction of the final formal proof."
)


class PromptError(ValueError):
    """A template that cannot be rendered as asked (unknown name, missing tokenizer)."""


def ends_with_fence(completion: str) -> bool:
    """Whether nothing but whitespace follows the completion's last fence (the reference's test)."""
    return completion.rstrip().endswith(FENCE)


def extract_continuation(
    completion: str, require_closing_fence: bool = True, reject_text_after_fence: bool = False
) -> str | None:
    """The proof in a continuation: everything before the first closing fence (text after it is cut).

    Without a closing fence the completion is malformed when ``require_closing_fence`` (it ran out
    of tokens mid-proof), else taken whole. Trailing whitespace is dropped; an empty proof is None.
    With ``reject_text_after_fence`` (the reference's rule) text after the last fence makes it
    malformed, and the proof ends at the first fence that starts a line (the prompt's statement
    ends with a line break, so a fence at the very start of the completion counts).
    """
    if reject_text_after_fence:
        if not ends_with_fence(completion):
            return None
        end = ("\n" + completion).find("\n" + FENCE)  # index in `completion` of the fence's first backtick
        proof = completion[:end].rstrip() if end >= 0 else ""
        return proof if proof.strip() else None
    end = completion.find(FENCE)
    if end < 0 and require_closing_fence:
        return None
    proof = (completion if end < 0 else completion[:end]).rstrip()
    return proof if proof.strip() else None


def _statement_pattern(statement: str) -> re.Pattern[str]:
    """The statement's tokens in order, any whitespace between them: a reformatted but unchanged
    statement matches; a renamed hypothesis or an edited type does not."""
    tokens = statement.split()
    if not tokens:
        raise PromptError("cannot match an empty statement")
    # (?!\S): `:= by` must end there, not run on into e.g. `by_contra`
    return re.compile(r"\s+".join(map(re.escape, tokens)) + r"(?!\S)")


def last_lean_block(completion: str, require_closing_fence: bool = True) -> str | None:
    """The body of the last ```lean4 (or ```lean) block, or None when there is none / it is unclosed."""
    opens = list(_LEAN_BLOCK_OPEN.finditer(completion))
    if not opens:
        return None
    start = opens[-1].end()
    end = completion.find(FENCE, start)
    if end < 0:
        return None if require_closing_fence else completion[start:]
    return completion[start:end]


def extract_restated(
    completion: str, statement: str, require_closing_fence: bool = True, reject_text_after_fence: bool = False
) -> str | None:
    """The proof after the trusted ``statement`` inside the completion's last Lean block.

    What precedes the statement in the block (imports, opens, helper lemmas) is dropped: the
    verifier checks trusted header + trusted statement + this proof, nothing else from the model.
    With ``reject_text_after_fence`` the completion must end with that block's closing fence.
    """
    if reject_text_after_fence and not ends_with_fence(completion):
        return None
    block = last_lean_block(completion, require_closing_fence)
    if block is None:
        return None
    match = _statement_pattern(statement).search(block)
    if match is None:
        return None
    proof = block[match.end() :].rstrip()
    if statement.endswith("\n"):  # the trusted statement brings the line break after `:= by`
        proof = re.sub(r"^[ \t]*\n", "", proof, count=1)
    return proof if proof.strip() else None


@dataclass(frozen=True)
class PromptTemplate:
    """A named prompt format. ``chat``: rendered through the tokenizer's chat template and answered
    with a restated theorem; otherwise a plain continuation of an open fence."""

    name: str
    instruction: str
    chat: bool = False
    description: str = ""

    @property
    def stop(self) -> list[str]:
        """Stop strings for sampling: a continuation is over at its closing fence; a chat answer
        ends at the end-of-turn token (its prose may hold fences before the final block)."""
        return [] if self.chat else [FENCE]

    def user_message(self, problem: Problem) -> str:
        """The chat template's user turn: the theorem with ``sorry`` in a fence, then the request."""
        code = f"{problem.header}{problem.informal}{problem.statement.rstrip()}\n  sorry".strip()
        return f"{self.instruction}\n\n```lean4\n{code}\n```\n\n{CHAT_PLAN_REQUEST}"

    def render(self, problem: Problem, tokenizer: Any = None) -> str:
        """The prompt text for ``problem`` (chat templates need the model's tokenizer)."""
        if not self.chat:
            return f"{self.instruction}\n\n```lean4\n{problem.header}{problem.informal}{problem.statement}"
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise PromptError(
                f"prompt template {self.name!r} applies the model's chat template: give the task a tokenizer "
                "that has one (task.options.tokenizer = the model path)"
            )
        messages = [{"role": "user", "content": self.user_message(problem)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def extract(
        self,
        completion: str,
        problem: Problem | None = None,
        require_closing_fence: bool = True,
        reject_text_after_fence: bool = False,
    ) -> str | None:
        """The proof in ``completion`` or None when malformed (see the module docstring)."""
        if not self.chat:
            return extract_continuation(completion, require_closing_fence, reject_text_after_fence)
        if problem is None:
            raise PromptError(f"prompt template {self.name!r} restates the theorem: extraction needs the problem")
        return extract_restated(completion, problem.statement, require_closing_fence, reject_text_after_fence)


TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        PromptTemplate(
            "deepseek-v1.5",
            DEEPSEEK_V15_INSTRUCTION,
            description="DeepSeek-Prover-V1.5 whole-proof completion (base and RL models)",
        ),
        PromptTemplate(
            "deepseek-v1.5-cot",
            DEEPSEEK_V15_COT_INSTRUCTION,
            description="DeepSeek-Prover-V1.5 chain of thought: a commented plan inside the proof",
        ),
        PromptTemplate(
            "chat",
            DEEPSEEK_V15_INSTRUCTION,
            chat=True,
            description="chat provers (DeepSeek-Prover-V2, Goedel-Prover-V2, Kimina-style): plan, then the full theorem",
        ),
    )
}


def get_template(name: str) -> PromptTemplate:
    if name not in TEMPLATES:
        raise PromptError(f"unknown prompt template {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]
