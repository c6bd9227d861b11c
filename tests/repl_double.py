#!/usr/bin/env python3
"""A stand-in for the Lean REPL (leanprover-community/repl) that speaks its protocol exactly and acts
out Lean's outcomes and the faults of a real process, as directed by the text it is sent.

Run: ``python tests/repl_double.py [--version v4.9.0|main] [--sorry-quote apostrophe|backtick] [--cost S]
[--start-delay S] [--graph FILE] [--tag TAG]`` (``--tag`` is ignored; it marks the process so tests can
find it).

``--version`` picks the shape of the REPL it acts (class ``VersionShape``), checked against the REPL's
own recorded conversations in ../shared/golden/repl (tests/test_golden.py):

* ``v4.9.0`` (the default: the pinned REPL, tag v4.9.0 = commit d920817, and DeepSeek-Prover-V1.5's
  fork of 7df77c0): tactic answers carry no ``proofStatus`` (``proof_step.expected.out``); a failing
  tactic answers a NEW proof state with ``goals: []`` and the error (``invalid_tactic``); the
  ``sorry`` tactic answers ``goals: []`` and a ``sorries`` entry (``tactic_mode_sorry``); the sorry
  warning reads ``declaration uses 'sorry'``.
* ``main`` (main at 8948401, Lean v4.33.0-rc2): the same plus ``proofStatus`` (REPL PR #63, from
  v4.19.0): "Completed", "Incomplete: open goals remain", "Incomplete: contains sorry" (also after a
  failing tactic, ``invalid_tactic``), "Incomplete: contains metavariable(s)"
  (``app_type_mismatch``); the sorry warning reads ``declaration uses `sorry` ``.

``--sorry-quote`` still overrides the quoting of the sorry warning alone.

Protocol (as the real REPL): a request is JSON text ended by a blank line (lines are trimmed and
joined); an answer is pretty-printed JSON followed by a blank line; malformed JSON prints
"Could not parse JSON" to stderr and exits 1.

* ``{"cmd": text}`` (no env): a fresh environment (the header); answers ``{"env": n}``.
* ``{"cmd": text, "env": n}``: runs ``text`` on env n; answers ``{"env": m, "messages"?, "sorries"?}``;
  an unknown n answers ``{"message": "Unknown environment."}``. Every ``theorem``/``lemma`` in the
  text is recorded in env m with the axioms it depends on, as Lean keeps axioms per declaration: the
  axiom directives (accept, no_axioms, axiom, silent_sorry, error, sorry) count for the declaration
  whose text holds them (those before the first declaration count for the first).
* ``{"cmd": "#print axioms NAME", "env": n}``: as Lean's ``printAxiomsOf`` (src/Lean/Elab/Print.lean,
  worded the same at v4.9.0 and on main), one info message per constant NAME resolves to:
  ``'NAME' depends on axioms: [propext, Classical.choice, Quot.sound]`` (Lean's order: fewer name
  components first; wrapped past 120 columns, each further axiom on its own line indented by one
  space) or ``'NAME' does not depend on any axioms``. Under the header's ``open`` lines, ``N.NAME``
  for an opened ``N`` comes before ``NAME``; ``_root_.NAME`` resolves to ``NAME`` alone. An unknown
  NAME gives an error message.
* ``{"tactic": t, "proofState": k}``: tactic mode over a state graph (below).

Directives, written anywhere in a command (usually inside a comment, which the verifier's screen
ignores), as ``double:NAME`` or ``double:NAME=ARG``; several may be combined:

    accept            the default: no messages, axioms propext, Classical.choice, Quot.sound
    no_axioms         the theorem depends on no axioms at all
    error[=TEXT]      an error message (default "unsolved goals ...")
    sorry             the sorry warning (quoting per --sorry-quote) and a `sorries` entry
    silent_sorry      no warning, no sorries, but the theorem depends on sorryAx (the apply? exploit)
    axiom=NAME        the theorem also depends on axiom NAME
    slow=S            sleep S seconds before answering
    hang              never answer
    exit[=CODE]       exit the process (default code 1)
    sigkill           SIGKILL itself
    oom               allocate memory (16 MB steps, every 10 ms) until a limit stops the process
    garbage           answer with text that is not JSON
    huge=N            add an info message of N characters
    unknown_env       answer {"message": "Unknown environment."}
    spawn             start a grandchild process (sleeping, carrying --tag) before answering
    write=PATH        try to create PATH; an info message says "write PATH: ok" or "write PATH: failed: ..."
    connect=HOST:PORT try a TCP connection; an info message says "connect ...: ok" or "...: failed: ..."
    read=PATH         try to read PATH; an info message says "read PATH: ok: <its first 300 characters>" or
                      "read PATH: failed: ..." (what a proof reads can reach Lean's messages)
    fork=N            start N processes that sleep (a fork bomb held in place); an info message "fork N: ok",
                      or an error "fork N: failed after K: ..." (Lean reports a failed spawn as an error)
    daemon            start a daemon: fork, setsid, fork again, the grandchild sleeps with its output closed
    fill=MB           write MB megabytes to /tmp and MB to /dev/shm (RAM-backed in a sandbox); an info
                      message "fill MB: ok", or an error "fill MB: failed in DIR after K MB: ..."
    once=PATH         apply the fault directives (slow ... fill, header_hang, header_exit) only if PATH does
                      not exist, creating it (a transient fault: the retry on a fresh worker succeeds)
    header_error      (in the header) the header does not compile
    defines=NAME      (in the header) the environment also holds constant NAME (standard axioms), e.g.
                      ``Nat.t`` to make ``#print axioms t`` ambiguous under ``open Nat``
    header_hang       (in the header) never answer the header
    header_exit       (in the header) exit (code 1) before answering the header

As Lean does, a theorem also depends on ``sorryAx`` when its text names it, on ``Lean.ofReduceBool``
when it uses ``native_decide`` or ``decide +native``, and on an ``axiom`` the same command declares
and uses. A literal ``sorry`` in a command (outside comments) acts as ``double:sorry``, and so do the tactics
Lean turns into one: ``stop`` (core: ``repeat sorry``), ``slim_check`` and ``plausible`` (Mathlib:
they admit the goal when they find no counterexample).

The sandbox probes (write, connect, read, fork, daemon, fill) do what a proof can do from inside Lean
through ``IO`` in a tactic or ``#eval`` (``IO.FS``, ``IO.Process.spawn`` of any program); an IO
error that escapes is reported by Lean as an error message, which is how fork and fill answer a failure.

State graph (tactic mode), a JSON file given by --graph or $REPL_DOUBLE_GRAPH:

    {"theorems": {"t": "root"},
     "states": {"root": {"goals": ["x : ℕ\\n⊢ x = x"], "tactics": {"rfl": "done", "simp": {"error": "simp made no progress"}}},
                "done": {"goals": []}}}

A command declaring theorem ``t`` with ``sorry`` answers a `sorries` entry whose ``proofState`` is a
fresh number standing for state "root". ``{"tactic": "rfl", "proofState": k}`` answers
``{"proofState": k2, "goals": [...]}`` (plus ``proofStatus`` as ``--version`` says); an
``{"error": msg}`` edge answers a new state with ``goals: []`` and the error; an ``{"mvars": true}``
edge answers ``goals: []`` with metavariables left (a later command-mode check of the script fails);
the tactic ``sorry`` answers ``goals: []`` and a ``sorries`` entry; a tactic missing from the graph
answers ``{"message": "Lean error:\\n<input>:1:1: unknown tactic"}``; an unknown k answers
``{"message": "Unknown proof state."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

DIRECTIVE = re.compile(r"double:([a-z_]+)(?:=(\S+))?")
DECL = re.compile(r"\b(?:theorem|lemma)\s+(\S+)")
PRINT_AXIOMS = re.compile(r"^\s*#print\s+axioms\s+(\S+)\s*$")
SORRY_TACTIC = re.compile(r"(?:^|=>|\bby\b|;|·)[ \t]*(?:stop|slim_check|plausible)(?![\w.])", re.M)  # as a tactic
OPEN_LINE = re.compile(r"^\s*open\s+([^\n]+)", re.M)
COMMENT = re.compile(r"--[^\n]*|/-.*?-/", re.S)
FAULTS = {
    "slow",
    "hang",
    "exit",
    "sigkill",
    "oom",
    "garbage",
    "unknown_env",
    "error",
    "sorry",
    "silent_sorry",
    "axiom",
    "huge",
    "fork",
    "daemon",
    "fill",
    "header_hang",
    "header_exit",
}
STANDARD_AXIOMS = ["propext", "Classical.choice", "Quot.sound"]


class Double:
    def __init__(self, args):
        self.args = args
        self.envs: dict[int, dict[str, list[str]]] = {}
        self.graph = {"theorems": {}, "states": {}}
        path = args.graph or os.environ.get("REPL_DOUBLE_GRAPH")
        if path:
            with open(path) as f:
                self.graph = json.load(f)
        self.proof_states: dict[int, str] = {}
        self.shape = VersionShape(args.version)
        quote = args.sorry_quote or self.shape.sorry_quote
        self.quote = "`" if quote == "backtick" else "'"
        self.opened: list[str] = []  # namespaces the header opens

    # -- helpers
    def new_env(self, theorems: dict[str, list[str]]) -> int:
        env = len(self.envs)
        self.envs[env] = theorems
        return env

    def new_state(self, node: str) -> int:
        k = len(self.proof_states)
        self.proof_states[k] = node
        return k

    @staticmethod
    def message(severity: str, data: str, line: int = 1) -> dict:
        return {
            "severity": severity,
            "pos": {"line": line, "column": 0},
            "endPos": {"line": line, "column": 1},
            "data": data,
        }

    # -- requests
    def handle(self, req: dict) -> dict | None:
        if "tactic" in req:
            return self.tactic(req)
        text = req.get("cmd", "")
        directives = [(m.group(1), m.group(2)) for m in DIRECTIVE.finditer(text)]
        directives = self.drop_spent_faults(directives)
        names = {d for d, _ in directives}
        if "env" not in req:
            time.sleep(self.args.start_delay)
            header_fault(names)
            messages = [self.message("error", "unknown package 'Mathlib'")] if "header_error" in names else []
            self.opened = [ns for line in OPEN_LINE.findall(COMMENT.sub(" ", text)) for ns in line.split()]
            defined = {arg: list(STANDARD_AXIOMS) for d, arg in directives if d == "defines"}
            return self.answer(self.new_env(defined), messages)
        if req["env"] not in self.envs or "unknown_env" in names:
            return {"message": "Unknown environment."}
        base = self.envs[req["env"]]
        printed = PRINT_AXIOMS.match(text)
        if printed:
            return self.print_axioms(printed.group(1), base)
        if self.args.cost:
            time.sleep(self.args.cost)
        return self.command(text, directives, names, base)

    def drop_spent_faults(self, directives):
        once = [arg for d, arg in directives if d == "once"]
        if not once:
            return directives
        if os.path.exists(once[0]):
            return [(d, a) for d, a in directives if d not in FAULTS]
        with open(once[0], "w"):
            pass
        return directives

    def command(self, text, directives, names, base) -> dict | None:
        messages, sorries = [], []
        code = COMMENT.sub(lambda m: " " * len(m.group()), text)  # same length: positions stay valid
        for name, arg in directives:
            if name == "slow":
                time.sleep(float(arg))
            elif name == "hang":
                while True:
                    time.sleep(3600)
            elif name == "exit":
                sys.stdout.flush()
                os._exit(int(arg or 1))
            elif name == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif name == "oom":
                hoard = []
                while True:
                    hoard.append(b"\x01" * (16 << 20))
                    time.sleep(0.01)
            elif name == "garbage":
                sys.stdout.write("this is not JSON {{{\n\n")
                sys.stdout.flush()
                return None
            elif name == "huge":
                messages.append(self.message("info", "x" * int(arg)))
            elif name == "spawn":
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "--tag", self.args.tag or ""])
            elif name == "write":
                try:
                    with open(arg, "w") as f:
                        f.write("escaped")
                    messages.append(self.message("info", f"write {arg}: ok"))
                except OSError as exc:
                    messages.append(self.message("info", f"write {arg}: failed: {exc}"))
            elif name == "connect":
                host, _, port = arg.rpartition(":")
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    messages.append(self.message("info", f"connect {arg}: ok"))
                except OSError as exc:
                    messages.append(self.message("info", f"connect {arg}: failed: {exc}"))
            elif name in SANDBOX_PROBES:
                messages.append(SANDBOX_PROBES[name](self, arg))
        if "error" in names:
            detail = next(a for d, a in directives if d == "error") or "unsolved goals\n⊢ False"
            messages.append(self.message("error", detail.replace("_", " "), line=2))
        decls = list(DECL.finditer(code))
        theorem = decls[0].group(1) if decls else None
        if "sorry" in names or re.search(r"\bsorry\b", code) or SORRY_TACTIC.search(code):
            messages.append(self.message("warning", f"declaration uses {self.quote}sorry{self.quote}"))
            node = self.graph["theorems"].get(theorem)
            goals = self.graph["states"][node]["goals"] if node else ["⊢ False"]
            sorries.append(
                {
                    "goal": "\n".join(goals),
                    "proofState": self.new_state(node) if node else None,
                    "pos": {"line": 1, "column": 0},
                    "endPos": {"line": 1, "column": 5},
                }
            )
        theorems = dict(base)
        for k, decl in enumerate(decls):
            start = decl.start() if k else 0
            end = decls[k + 1].start() if k + 1 < len(decls) else len(text)
            theorems[decl.group(1)] = self.axioms(text[start:end], code[start:end], names)
        return self.answer(self.new_env(theorems), messages, sorries)

    @staticmethod
    def axioms(text: str, code: str, active: set[str]) -> list[str]:
        """The axioms of one declaration, from the directives in its text (``code``: comments blanked;
        ``active``: the command's directives left after ``once``)."""
        directives = [(m.group(1), m.group(2)) for m in DIRECTIVE.finditer(text) if m.group(1) in active]
        names = {d for d, _ in directives}
        axioms = [] if "no_axioms" in names else list(STANDARD_AXIOMS)
        axioms += [arg for d, arg in directives if d == "axiom"]
        # silent_sorry: the apply? exploit; error: Lean adds the failed declaration with sorryAx
        if names & {"silent_sorry", "error", "sorry"} or re.search(r"\bsorry\b", code) or SORRY_TACTIC.search(code):
            axioms.append("sorryAx")
        return axioms + [a for a in implied_axioms(code) if a not in axioms]

    def print_axioms(self, name: str, theorems: dict) -> dict:
        found = resolve_constant(name, theorems, self.opened)
        if not found:
            return self.answer(self.new_env(theorems), [self.message("error", f"unknown constant '{name}'")])
        messages = [self.message("info", axioms_line(c, theorems[c])) for c in found]
        return self.answer(self.new_env(theorems), messages)

    def tactic(self, req: dict) -> dict:
        k = req.get("proofState")
        if k not in self.proof_states:
            return {"message": "Unknown proof state."}
        node = self.graph["states"][self.proof_states[k]]
        tactic = req["tactic"].strip()
        if re.search(r"\bsorry\b", tactic):
            sorry = {"proofState": self.new_state(self.proof_states[k]), "goal": "\n\n".join(node["goals"])}
            return self.shape.tactic_answer(self.new_state(self.proof_states[k]), [], sorries=[sorry])
        edge = node.get("tactics", {}).get(tactic)
        if edge is None:
            return {"message": "Lean error:\n<input>:1:1: unknown tactic"}
        if isinstance(edge, dict) and "error" in edge:
            return self.shape.tactic_answer(
                self.new_state(self.proof_states[k]), [], errors=[self.message("error", edge["error"])]
            )
        if isinstance(edge, dict):  # {"mvars": true}: no goals shown, but the proof term is unfinished
            return self.shape.tactic_answer(self.new_state(self.proof_states[k]), [], mvars=True)
        return self.shape.tactic_answer(self.new_state(edge), self.graph["states"][edge]["goals"])

    @staticmethod
    def answer(env: int, messages=(), sorries=()) -> dict:
        out = {"env": env}
        if messages:
            out["messages"] = list(messages)
        if sorries:
            out["sorries"] = list(sorries)
        return out


class VersionShape:
    """How the REPL version being acted shapes its answers (see the module docstring for the recordings)."""

    def __init__(self, version: str):
        self.version = version
        self.sorry_quote = "apostrophe" if version == "v4.9.0" else "backtick"

    def tactic_answer(self, state: int, goals: list[str], errors=(), sorries=(), mvars: bool = False) -> dict:
        out: dict = {"proofState": state, "goals": list(goals)}
        if errors:
            out["messages"] = list(errors)
        if sorries:
            out["sorries"] = list(sorries)
        if self.version == "main":  # proofStatus: REPL PR #63, first tagged v4.19.0
            if sorries or errors:  # a failing tactic's error recovery leaves a sorry (invalid_tactic)
                out["proofStatus"] = "Incomplete: contains sorry"
            elif goals:
                out["proofStatus"] = "Incomplete: open goals remain"
            elif mvars:
                out["proofStatus"] = "Incomplete: contains metavariable(s)"
            else:
                out["proofStatus"] = "Completed"
        return out


def implied_axioms(code: str) -> list[str]:
    """The axioms Lean finds in a declaration from what its text uses (see the module docstring)."""
    found = ["sorryAx"] if re.search(r"\bsorryAx\b", code) else []
    if re.search(r"\bnative_decide\b|\bdecide\s*\+native\b", code):
        found.append("Lean.ofReduceBool")
    for name in re.findall(r"\baxiom\s+(\S+)", code):
        if len(re.findall(rf"(?<![\w.]){re.escape(name)}(?![\w])", code)) > 1:  # declared and used
            found.append(name)
    return found


def lean_name_key(name: str) -> tuple:
    """Lean's ``Name.lt``, which ``#print axioms`` sorts by: fewer components first, then by component."""
    parts = name.split(".")
    return len(parts), parts


def axioms_line(name: str, axioms: list[str], width: int = 120) -> str:
    """``#print axioms`` for one constant, as Lean words and wraps it (``format.width`` 120)."""
    if not axioms:
        return f"'{name}' does not depend on any axioms"
    ordered = sorted(set(axioms), key=lean_name_key)
    head = f"'{name}' depends on axioms: "
    flat = f"{head}[{', '.join(ordered)}]"
    return flat if len(flat) <= width else head + "[" + ",\n ".join(ordered) + "]"


def resolve_constant(name: str, theorems: dict, opened: list[str]) -> list[str]:
    """The constants ``name`` resolves to, in the order Lean prints them: ``N.name`` for each opened
    namespace ``N`` before ``name`` itself; ``_root_.name`` is ``name`` alone."""
    if name.startswith("_root_."):
        candidates = [name.removeprefix("_root_.")]
    else:
        candidates = [f"{ns}.{name}" for ns in opened] + [name]
    return [c for c in candidates if c in theorems]


def header_fault(names: set[str]) -> None:
    """A header that never loads: one that hangs, or one whose process exits before answering."""
    if "header_hang" in names:
        while True:
            time.sleep(3600)
    if "header_exit" in names:
        os._exit(1)


# What a proof might try against its sandbox (issue 17): each returns the message it answers with.


def probe_read(double: Double, path: str) -> dict:
    try:
        with open(path, errors="replace") as f:
            return double.message("info", f"read {path}: ok: {f.read(300)}")
    except OSError as exc:
        return double.message("info", f"read {path}: failed: {exc}")


def _detach_and_sleep(seconds: float) -> None:
    """In a forked child: let go of the REPL's pipes (so they close when the REPL dies), sleep, exit."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    time.sleep(seconds)
    os._exit(0)


def probe_fork(double: Double, count: str) -> dict:
    """os.fork keeps the command line, so every child carries --tag and tests can count them."""
    started = 0
    try:
        for _ in range(int(count)):
            if os.fork() == 0:
                _detach_and_sleep(600)
            started += 1
    except OSError as exc:
        return double.message("error", f"fork {count}: failed after {started}: {exc}")
    return double.message("info", f"fork {count}: ok")


def probe_daemon(double: Double, _arg) -> dict:
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            _detach_and_sleep(600)
        os._exit(0)
    os.waitpid(child, 0)
    return double.message("info", "daemon: started")


def probe_fill(double: Double, megabytes: str) -> dict:
    chunk = b"\x01" * (1 << 20)
    for folder in ("/tmp", "/dev/shm"):
        written = 0
        try:
            with open(os.path.join(folder, f"double-fill-{os.getpid()}"), "wb") as f:
                for _ in range(int(megabytes)):
                    f.write(chunk)
                    f.flush()
                    written += 1
        except OSError as exc:
            return double.message("error", f"fill {megabytes}: failed in {folder} after {written} MB: {exc}")
    return double.message("info", f"fill {megabytes}: ok (double-fill-{os.getpid()})")


SANDBOX_PROBES = {"read": probe_read, "fork": probe_fork, "daemon": probe_daemon, "fill": probe_fill}


def read_request(stream) -> str | None:
    """Lines up to a blank line, trimmed and joined (None at end of input)."""
    lines = []
    for line in stream:
        if not line.strip():
            if lines:
                return " ".join(lines)
            continue
        lines.append(line.strip())
    return " ".join(lines) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--version", choices=["v4.9.0", "main"], default="v4.9.0", help="REPL version whose answers to act"
    )
    parser.add_argument("--sorry-quote", choices=["apostrophe", "backtick"], help="default: as --version")
    parser.add_argument("--cost", type=float, default=0.0, help="seconds slept per proof command")
    parser.add_argument("--start-delay", type=float, default=0.0, help="seconds slept on the header")
    parser.add_argument("--graph", help="state graph for tactic mode (JSON)")
    parser.add_argument("--tag", help="ignored; marks the process")
    double = Double(parser.parse_args())
    while (text := read_request(sys.stdin)) is not None:
        try:
            req = json.loads(text)
        except ValueError:
            sys.stderr.write("Could not parse JSON\n")
            sys.exit(1)
        answer = double.handle(req)
        if answer is not None:
            sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
