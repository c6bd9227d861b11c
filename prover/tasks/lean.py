"""``LeanTask``: miniF2F, Lean Workbook or any Lean 4 problem set, checked by the Lean REPL pool."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from prover.config import from_dict
from prover.data.loading import DEEPSEEK_HEADER, load_problems
from prover.data.problem import Problem
from prover.data.prompts import get_template
from prover.tasks.base import Task, TaskConfig
from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig

# A declaration keyword, optionally after attributes / modifiers, at the start of a line.
_DECLARATION = re.compile(
    r"^[ \t]*(?:@\[[^\]]*\][ \t]*)?(?:(?:private|protected|nonrec)[ \t]+)*(?:theorem|lemma)[ \t]+\S", re.MULTILINE
)
_TRAILING_DOC = re.compile(r"/--(?:(?!-/).)*-/\s*$", re.DOTALL)


@dataclass
class LeanOptions:
    """``task.options`` of the Lean task."""

    split: str | None = field(
        default=None,
        metadata={
            "help": "keep rows whose split column equals this (files holding several splits, e.g. DeepSeek's minif2f.jsonl)"
        },
    )
    header: str | None = field(
        default=None,
        metadata={
            "help": "Lean header for every problem, overriding the file's (default: the file's header column, else the DeepSeek header)"
        },
    )
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "{field: column} for name, statement, informal, split, header (default: detect the shared or the DeepSeek layout)"
        },
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "model path or hub id whose chat template renders the `chat` prompt template"}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "where named sets live (default: $PROVER_DATA_DIR, else ../shared/data)"}
    )


class LeanTask(Task):
    """Lean 4 theorems: the prompt shows the trusted header and statement, the model writes the
    proof, the REPL pool checks header + statement + proof."""

    name = "lean"

    def __init__(self, config: TaskConfig | None = None, tokenizer: Any = None):
        self.config = config or TaskConfig(name="lean")
        self.options = from_dict(LeanOptions, self.config.options, "task.options")
        self.template = get_template(self.config.prompt_template)
        self._tokenizer = tokenizer

    @property
    def stop(self) -> list[str]:
        """Stop strings to sample with: the closing fence for continuation templates."""
        return self.template.stop

    @cached_property
    def tokenizer(self) -> Any:
        """The tokenizer given at construction, else ``options.tokenizer`` loaded (chat templates only)."""
        if self._tokenizer is not None or not (self.template.chat and self.options.tokenizer):
            return self._tokenizer
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.options.tokenizer)

    def load_problems(self, dataset: str | None = None) -> list[Problem]:
        dataset = dataset or self.config.dataset
        if not dataset:
            raise ValueError(
                "task.dataset is not set: name a set (minif2f-test, minif2f-valid, lean-workbook, "
                "lean-workbook-holdout), a parquet/jsonl file, a directory or a hub id"
            )
        o = self.options
        return load_problems(
            dataset,
            columns=o.columns or None,
            split=o.split,
            header=o.header,
            exclude=self.config.exclude,
            limit=self.config.limit,
            data_dir=o.data_dir,
        )

    def build_prompt(self, problem: Problem) -> str:
        return self.template.render(problem, self.tokenizer)

    def extract_proof(self, completion: str, problem: Problem | None = None) -> str | None:
        return self.template.extract(
            completion, problem, self.config.require_closing_fence, self.config.reject_text_after_fence
        )

    def make_verifier(self, config: VerifierConfig | None = None) -> Verifier:
        from prover.verifier import make_verifier  # the REPL pool pulls in asyncio subprocess machinery

        return make_verifier(config or VerifierConfig())

    def parse_statement(self, text: str, name: str = "user_theorem") -> Problem:
        """A problem from a statement typed by a user: ``theorem``/``lemma`` ... ``:= by``.

        Lines before the declaration (imports, opens, options) become the header (after the
        DeepSeek header when they import nothing); with none, the DeepSeek header is used. A doc
        comment right before the declaration becomes the informal statement.
        """
        match = _DECLARATION.search(text)
        if match is None:
            raise ValueError(
                "a statement must declare a `theorem` or `lemma`, e.g. `theorem two_pos : (0 : ℕ) < 2 := by`"
            )
        statement = text[match.start() :].rstrip()
        if not statement.endswith(":= by"):
            raise ValueError(
                f"a statement must end with `:= by` (the proof follows it); it ends with {statement[-40:]!r}"
            )
        prefix = text[: match.start()]
        doc = _TRAILING_DOC.search(prefix)
        informal = prefix[doc.start() :].strip() + "\n" if doc else ""
        header = (prefix[: doc.start()] if doc else prefix).strip()
        if not header:
            header = DEEPSEEK_HEADER
        elif not re.search(r"^import\s", header, re.MULTILINE):
            header = DEEPSEEK_HEADER + header + "\n\n"  # opens / options without imports: add Mathlib's
        else:
            header += "\n\n"
        return Problem(name=name, statement=statement + "\n", header=header, informal=informal, split="user")
