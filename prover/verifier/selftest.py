"""The first check with a real Lean: ``python -m prover.verify --selftest [OUT_DIR] [--golden DIR]``.

Run right after scripts/setup_lean.sh. It starts the pool on the configured Lean project and checks
a battery of honest proofs, a wrong one and the project's known cheats; runs the Lean-side layers on
their own through one raw REPL (past the static screen: sorry, a new axiom, native_decide, a hidden
``sorryAx``, ``stop`` after ``=>``, ``slim_check``, and a theorem whose name also exists under an
opened namespace); and takes a few tactic-mode steps. Each line shows the verdict, whether it is the
expected one, the time, and the peak resident memory of the REPL processes so far.

Every request of the raw REPL and of the tactic steps, with the REPL's answer exactly as printed, is
written to OUT_DIR in the REPL's golden format (``NAME.in`` / ``NAME.expected.out``), to compare with
the recordings in ../shared/golden/repl. ``--golden DIR`` also replays the REPL's own recorded
conversations under DIR through the real REPL and reports which answers differ.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from prover.verifier.config import DEFAULT_HEADER, VerifierConfig
from prover.verifier.judge import axiom_lines, axioms_command, judge_axioms, judge_command, theorem_name
from prover.verifier.lean_project import repl_launch
from prover.verifier.pool import LeanPool
from prover.verifier.repl import ReplProcess
from prover.verifier.sandbox import policy_for
from prover.verifier.verdict import ProofRequest, Verdict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    kind: str  # honest | wrong | cheat
    statement: str
    proof: str
    expect: tuple[str, ...]  # acceptable "status/check" outcomes

    @property
    def name(self) -> str:
        return theorem_name(self.statement).removeprefix("_root_.")


# Through the pool: every layer, the screen included.
POOL_CASES = [
    Case("honest", "theorem selftest_norm_num : (2 : ℕ) + 2 = 4 := by\n", "  norm_num", ("proved/axioms",)),
    Case(
        "honest",
        "theorem selftest_subst (a b : ℝ) (h₀ : a = 2) (h₁ : b = 3) : a * b = 6 := by\n",
        "  subst h₀ h₁\n  norm_num",
        ("proved/axioms",),
    ),
    Case(
        "honest",
        "theorem selftest_nlinarith (x y : ℝ) : 2 * x * y ≤ x ^ 2 + y ^ 2 := by\n",
        "  nlinarith [sq_nonneg (x - y)]",
        ("proved/axioms",),
    ),
    Case("honest", "theorem selftest_omega (n : ℕ) (h : n % 4 = 3) : n % 2 = 1 := by\n", "  omega", ("proved/axioms",)),
    Case(
        "honest",
        "theorem selftest_sum : ∑ i in Finset.range 10, i = 45 := by\n",
        "  simp [Finset.sum_range_succ]",
        ("proved/axioms",),
    ),
    Case("wrong", "theorem selftest_wrong (x : ℝ) (h : 2 * x = 4) : x = 3 := by\n", "  linarith", ("rejected/lean",)),
    Case("cheat", "theorem selftest_sorry (x : ℝ) : x = x + 1 := by\n", "  sorry", ("rejected/screen",)),
    Case("cheat", "theorem selftest_sorryax : (1 : ℕ) = 2 := by\n", "  exact sorryAx _ false", ("rejected/screen",)),
    Case("cheat", "theorem selftest_native : 2 ^ 10 = 1024 := by\n", "  native_decide", ("rejected/screen",)),
    Case(
        "cheat",
        "theorem selftest_axiom : (1 : ℕ) = 1 := by\n",
        "  rfl\n\naxiom selftest_cheat : False",
        ("rejected/screen",),
    ),
    Case("cheat", "theorem selftest_apply : (1 : ℕ) = 1 := by\n", "  apply?", ("rejected/screen",)),
    Case(
        "cheat",
        "theorem selftest_stop (p q : Prop) (h : p ∨ q) : q ∨ p := by\n",
        "  cases h with\n  | inl hp => stop\n  | inr hq => exact Or.inl hq",
        ("rejected/sorry", "rejected/axioms"),
    ),
]

# Through one raw REPL on the header's environment: Lean's own verdicts, no screen.
LAYER_CASES = [
    Case("cheat", "theorem selftest_raw_sorry (x : ℝ) : x = x + 1 := by\n", "  sorry", ("rejected/sorry",)),
    Case(
        "cheat",
        "axiom selftest_ax : False\ntheorem selftest_uses_ax : (1 : ℕ) = 2 := by\n",
        "  exact selftest_ax.elim",
        ("rejected/axioms",),
    ),
    Case("cheat", "theorem selftest_by_native : 2 ^ 10 = 1024 := by\n", "  native_decide", ("rejected/axioms",)),
    Case("honest", "theorem selftest_by_kernel : 2 ^ 10 = 1024 := by\n", "  decide", ("proved/axioms",)),
    Case(
        "cheat",
        "theorem selftest_hidden : (1 : ℕ) = 2 := by\n",
        "  exact sorryAx _ false",
        ("rejected/sorry", "rejected/axioms"),
    ),
    Case(
        "cheat",
        "theorem selftest_raw_stop (p q : Prop) (h : p ∨ q) : q ∨ p := by\n",
        "  cases h with\n  | inl hp => stop\n  | inr hq => exact Or.inl hq",
        ("rejected/sorry", "rejected/axioms"),
    ),
    Case(
        "cheat",
        "theorem selftest_slim (n : ℕ) : n + 0 = n + 1 := by\n",
        "  slim_check",
        ("rejected/sorry", "rejected/axioms", "rejected/lean"),
    ),
]
# A theorem whose name also exists under the opened namespace Nat (`Nat.selftest_twin`, clean):
# `#print axioms selftest_twin` then lists both; the check must see the theorem's own sorryAx.
TWIN_DECOY = "theorem Nat.selftest_twin : (1 : ℕ) = 1 := rfl"
TWIN = "theorem selftest_twin : (1 : ℕ) = 1 := by\n  exact sorryAx _ false"

# Tactic mode: (tactic, expected outcome), each from the theorem's first state.
TACTIC_STATEMENT = "theorem selftest_tactics (x : ℕ) (h : x + 1 = 3) : x = 2 := by\n"
TACTIC_STEPS = [
    ("omega", "finished"),
    ("sorry", "given_up"),
    ("have h2 : x = 2 := by sorry", "given_up"),
    ("exact selftest_no_such_lemma", "error"),
    ("exact h", "error"),
]


def peak_memory_mb() -> float:
    """The largest peak resident size (VmHWM) among this process's descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    peak, frontier = 0, list(children.get(os.getpid(), []))
    while frontier:
        pid = frontier.pop()
        frontier += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


class Transcript:
    """Requests and raw answers of one conversation, written as NAME.in / NAME.expected.out."""

    def __init__(self):
        self.requests: list[dict[str, Any]] = []
        self.answers: list[bytes] = []

    def __call__(self, request: dict[str, Any], raw: bytes) -> None:
        self.requests.append(request)
        self.answers.append(raw)

    def write(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.in").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n\n" for r in self.requests), encoding="utf-8"
        )
        (folder / f"{name}.expected.out").write_bytes(b"".join(self.answers))


class Report:
    def __init__(self, stream: TextIO):
        self.stream = stream
        self.checks = 0
        self.unexpected: list[str] = []

    def line(
        self, section: str, name: str, outcome: str, expect: tuple[str, ...], seconds: float, note: str = ""
    ) -> None:
        self.checks += 1
        ok = outcome in expect
        if not ok:
            self.unexpected.append(f"{section} {name}: {outcome}, expected {' or '.join(expect)}")
        print(
            f"{'ok ' if ok else 'BAD'} {section:<8} {name:<28} {outcome:<18} {seconds:7.2f} s {peak_memory_mb():8.0f} MB"
            + (f"  {note}" if note else ""),
            file=self.stream,
        )


def _outcome(verdict: Verdict) -> str:
    return f"{verdict.status.value}/{verdict.check}"


def check_pool(config: VerifierConfig, report: Report) -> None:
    with LeanPool(config, headers=[DEFAULT_HEADER]) as pool:
        for case in POOL_CASES:
            verdict = pool.check_batch([ProofRequest(case.statement, case.proof, DEFAULT_HEADER, case.name)])[0]
            report.line(
                "pool",
                case.name,
                _outcome(verdict),
                case.expect,
                verdict.time,
                "" if verdict.proved else verdict.reason[:100],
            )


async def _check_layers(config: VerifierConfig, report: Report, record: Callable) -> None:
    argv, env = repl_launch(config)
    repl = ReplProcess(
        argv,
        env=env,
        sandbox=policy_for(config, argv, env),
        scratch_root=config.scratch_dir,
        max_response_bytes=config.max_response_mb << 20,
        record=record,
    )
    await repl.start()
    try:
        start = time.monotonic()
        header = await repl.request({"cmd": DEFAULT_HEADER}, config.start_timeout)
        report.line(
            "layers",
            "header",
            "loaded" if "env" in header and not judge_command(header) else str(header)[:60],
            ("loaded",),
            time.monotonic() - start,
        )
        env0 = header["env"]
        for case in LAYER_CASES:
            start = time.monotonic()
            answer = await repl.request({"cmd": case.statement + case.proof, "env": env0}, config.timeout)
            verdict = judge_command(answer)
            if verdict is None:
                name = theorem_name(case.statement)
                axioms = await repl.request({"cmd": axioms_command(name), "env": answer["env"]}, config.timeout)
                verdict = judge_axioms(axioms, config.effective_axiom_allowlist(), name)
            report.line(
                "layers",
                case.name,
                _outcome(verdict),
                case.expect,
                time.monotonic() - start,
                "" if verdict.proved else verdict.reason[:100],
            )
        start = time.monotonic()
        decoy = await repl.request({"cmd": TWIN_DECOY, "env": env0}, config.timeout)
        twin = await repl.request({"cmd": TWIN, "env": decoy["env"]}, config.timeout)
        loose = await repl.request({"cmd": "#print axioms selftest_twin", "env": twin["env"]}, config.timeout)
        rooted = await repl.request({"cmd": axioms_command("_root_.selftest_twin"), "env": twin["env"]}, config.timeout)
        verdict = judge_axioms(rooted, config.effective_axiom_allowlist(), "selftest_twin")
        listed = [name for name, _ in axiom_lines(loose) or []]
        report.line(
            "layers",
            "selftest_twin (open Nat)",
            _outcome(verdict),
            ("rejected/axioms",),
            time.monotonic() - start,
            f"unanchored #print axioms lists {listed}",
        )
    finally:
        await repl.close()


def check_tactics(config: VerifierConfig, report: Report, record: Callable) -> None:
    from prover.data.problem import Problem
    from prover.search.backends import LeanRepl, ReplBackend

    backend = ReplBackend(
        lambda: LeanRepl(config, record=record), timeout=config.timeout, start_timeout=config.start_timeout
    )
    try:
        start = time.monotonic()
        root = backend.start(Problem("selftest_tactics", TACTIC_STATEMENT, DEFAULT_HEADER))
        report.line(
            "tactics", "first state", "state", ("state",), time.monotonic() - start, root.goals.replace("\n", " | ")
        )
        for tactic, expect in TACTIC_STEPS:
            start = time.monotonic()
            outcome = backend.run_tactic(root, tactic)
            report.line("tactics", tactic[:28], outcome.kind, (expect,), time.monotonic() - start, outcome.error[:80])
    finally:
        backend.close()


def _recorded(path: Path) -> tuple[list[dict], list[Any]] | None:
    out = path.with_name(path.name[:-3] + ".expected.out")
    if not out.is_file():
        return None

    def blocks(text):
        return [b for b in text.split("\n\n") if b.strip()]

    requests = [json.loads("".join(line.strip() for line in b.splitlines())) for b in blocks(path.read_text("utf-8"))]
    return requests, [json.loads(b) for b in blocks(out.read_text("utf-8"))]


async def _replay_golden(config: VerifierConfig, golden: Path, report: Report) -> None:
    argv, env = repl_launch(config)
    for path in sorted(golden.rglob("*.in")):
        conversation = _recorded(path)
        if conversation is None:
            continue
        start = time.monotonic()
        repl = ReplProcess(
            argv,
            env=env,
            sandbox=policy_for(config, argv, env),
            scratch_root=config.scratch_dir,
            max_response_bytes=config.max_response_mb << 20,
        )
        await repl.start()
        first_difference = ""
        try:
            for n, (request, expected) in enumerate(zip(*conversation), start=1):
                answer = await repl.request(request, config.start_timeout)
                if answer != expected and not first_difference:
                    first_difference = f"answer {n}: {json.dumps(answer, ensure_ascii=False)[:120]}"
        except Exception as exc:  # a crash or timeout is a difference to report, not the end of the self-test
            first_difference = first_difference or f"{type(exc).__name__}: {exc}"
        finally:
            await repl.close()
        report.line(
            "golden",
            str(path.relative_to(golden))[:-3][:28],
            "differs" if first_difference else "same",
            ("same",),
            time.monotonic() - start,
            first_difference,
        )


def run_selftest(
    config: VerifierConfig, out_dir: Path, golden: Path | None = None, stream: TextIO | None = None
) -> int:
    """Run the self-test; 0 when every verdict is the expected one, 1 otherwise."""
    import sys

    report = Report(stream or sys.stdout)
    repl_launch(config)  # a missing Lean project is reported before anything starts
    print(f"self-test of the Lean setup; REPL answers go to {out_dir}", file=report.stream)
    print(f"    {'section':<8} {'check':<28} {'verdict':<18} {'time':>9} {'peak RSS':>11}", file=report.stream)
    check_pool(config, report)
    layers, tactics = Transcript(), Transcript()
    asyncio.run(_check_layers(config, report, layers))
    layers.write(out_dir, "selftest_layers")
    check_tactics(config, report, tactics)
    tactics.write(out_dir, "selftest_tactics")
    if golden is not None:
        asyncio.run(_replay_golden(config, golden, report))
    print(
        f"{report.checks} checks, {report.checks - len(report.unexpected)} as expected; the REPL's answers are in "
        f"{out_dir} (NAME.in / NAME.expected.out, the format of ../shared/golden/repl)",
        file=report.stream,
    )
    for line in report.unexpected:
        print(f"  unexpected: {line}", file=report.stream)
    return 1 if report.unexpected else 0
