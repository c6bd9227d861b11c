"""The trained model's README.md: what it was trained from, on what, how, how well, and the command.

TRL writes a generic card ("fine-tuned version of [None]", an example prompt about a time machine);
this one replaces it in ``final/`` and in the run directory, once the run's numbers are known.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prover.eval.summary import Summary, paired_difference
from prover.runinfo import git_commit, package_versions

if TYPE_CHECKING:
    from prover.train import TrainConfig

PAPER = "He, Fried, Welleck: Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening (EMNLP 2025)"


def recipe_name(config: TrainConfig) -> str:
    return "GRPO + unlikeliness reward" if config.grpo.unlikeliness else "GRPO"


def key_settings(config: TrainConfig) -> list[tuple[str, str]]:
    """(setting, value with its meaning) of what decides the result, for the card's table."""
    g = config.grpo
    theorems = g.generation_batch_size // g.num_generations
    rows = [("recipe", recipe_name(config))]
    if g.unlikeliness:
        rows += [
            (
                "beta_rank",
                f"{g.beta_rank} (the most likely correct proof keeps 1 - {g.beta_rank} (G-1)/G of its reward)",
            ),
            ("rank_key / rank_set", f"{g.rank_key} log-prob / {g.rank_set} samples"),
        ]
    rows += [
        ("samples per theorem (G)", str(g.num_generations)),
        ("generation batch", f"{theorems} theorems x {g.num_generations} samples = {g.generation_batch_size} proofs"),
        ("updates per generated batch", f"{g.num_iterations} (num_iterations)"),
        ("optimizer steps", str(g.max_steps)),
        (
            "learning rate",
            f"{g.learning_rate:g} ({getattr(g.lr_scheduler_type, 'value', g.lr_scheduler_type)} schedule)",
        ),
        ("KL coefficient (beta)", f"{g.beta:g}"),
        ("clip (epsilon)", f"{g.epsilon:g}"),
        (
            "dynamic update",
            f"{g.dynamic_update} (update once {g.dynamic_update_size} samples with signal are in)"
            if g.dynamic_update
            else "off",
        ),
        ("max completion tokens", str(g.max_completion_length)),
        ("temperature", f"{g.temperature:g}"),
        ("seed", str(g.seed)),
    ]
    return rows


def passk_table(before: Summary, after: Summary, before_label: str = "base", after_label: str = "this model") -> str:
    """Markdown: pass@k before and after with 95% intervals, and the paired difference."""
    ks = [k for k in after.ks if k in before.ks]
    diff = paired_difference(before, after, ks, before.bootstrap, before.confidence)
    conf = f"{100 * before.confidence:.0f}%"

    def cell(s: Summary, k: int) -> str:
        iv = s.pass_at_k[k]
        return f"{100 * iv.mean:.1f} [{100 * iv.low:.1f}, {100 * iv.high:.1f}]"

    lines = [f"| k | {before_label} | {after_label} | Δ (paired {conf} interval) |", "| --- | --- | --- | --- |"]
    for k in ks:
        d = diff.get(k)
        delta = (
            f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]" if d is not None and d.problems else "-"
        )
        lines.append(f"| {k} | {cell(before, k)} | {cell(after, k)} | {delta} |")
    return "\n".join(lines)


def render(
    config: TrainConfig,
    base_model: str,
    command: str,
    before: Summary | None = None,
    after: Summary | None = None,
    eval_set: str | None = None,
    note: str = "",
) -> str:
    """The card's markdown text."""
    from prover.rl.preflight import default_eval_set

    name = Path(config.grpo.output_dir).name
    hub_base = base_model if not Path(base_model).exists() else None
    front = [
        "---",
        "library_name: transformers",
        "tags: [theorem-proving, grpo, unlikeliness-reward, trl"
        + (", lean4" if config.task.name == "lean" else "")
        + "]",
    ]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front.append("---")
    task = config.task
    dataset = task.dataset or "its default set"
    lines = [
        *front,
        "",
        f"# {name}",
        "",
        (
            f"A prover trained with GRPO and the unlikeliness reward ({PAPER})"
            if config.grpo.unlikeliness
            else f"A prover trained with plain GRPO, the baseline of {PAPER}"
        )
        + f", by `python -m prover.train` of this project.{(' ' + note) if note else ''}",
        "",
        "## Training",
        "",
        f"- **Base model**: `{base_model}`",
        f"- **Task**: `{task.name}`, training problems `{dataset}`"
        + (f" (options {task.options})" if task.options else "")
        + (
            "; a proof is checked by the Lean REPL (sandboxed), and only a proof Lean accepts earns a reward"
            if task.name == "lean"
            else "; a proof is checked by the task's exact checker"
        ),
        "",
        "| setting | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in key_settings(config)),
        "",
    ]
    if before is not None and after is not None:
        ev = config.eval
        lines += [
            "## Results",
            "",
            f"pass@k in % on `{eval_set or ev.dataset or default_eval_set(task)}` ({after.problems} problems, "
            f"{ev.samples} samples each, temperature {ev.temperature:g}), with {100 * after.confidence:.0f}% "
            "bootstrap intervals over problems:",
            "",
            passk_table(before, after),
            "",
        ]
    versions = package_versions()
    commit = git_commit().get("commit")
    lines += [
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        "Trained with "
        + ", ".join(f"{p} {versions[p]}" for p in ("trl", "transformers", "torch") if p in versions)
        + (f"; prover at commit {commit[:12]}" if commit else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    paths: list[Path],
    config: TrainConfig,
    base_model: str,
    command: str,
    summaries: Mapping[str, Any] | None = None,
    note: str = "",
) -> None:
    """Write the card to every path (``final/README.md``, the run directory's README.md)."""
    summaries = summaries or {}
    text = render(config, base_model, command, summaries.get("before"), summaries.get("after"), note=note)
    for path in paths:
        if path.parent.is_dir() and not (path.is_file() and path.read_text() == text):  # a rerun changes nothing
            path.write_text(text)
