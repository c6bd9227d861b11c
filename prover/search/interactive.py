"""The interactive session: paste a statement (ended by a blank line), watch the search live, get the
proof; Ctrl-C stops a search and returns to the prompt; ``:commands`` change the settings."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from prover.model_check import ModelNotFound, check_model
from prover.runinfo import write_run_info
from prover.search.config import STRATEGIES, SearchConfig
from prover.search.display import render_proof, run_search, summary_lines
from prover.search.engine import SearchError, SearchResult, StatementError
from prover.search.session import SearchSession
from prover.verifier.errors import VerifierError

try:
    import readline
except ImportError:  # not on every platform (Windows); editing and history are then the terminal's own
    readline = None

logger = logging.getLogger(__name__)

PROMPT, MORE = "theorem> ", "     ... "

HELP = """\
Paste a statement (Lean: ending with ':= by') and finish it with a blank line (two blank lines end
text that is not a statement yet, e.g. a header on its own). Ctrl-C stops a search.
  :budget N        samples (best-first: expansions) per theorem   :time S      seconds per theorem (0 = none)
  :temp T          sampling temperature                           :top_p P     nucleus mass
  :round N         samples per round                              :seed N      sampling seed
  :strategy NAME   whole | resume | best-first                    :model PATH  load another model
  :header FILE     header for the next theorems (:header none)    :save FILE   save the last proof found
  :show            current settings                               :quit        leave (or Ctrl-D)"""

# :command -> (config field, type)
_SETTINGS: dict[str, tuple[str, Callable]] = {
    "budget": ("budget", int),
    "time": ("time_limit", float),
    "temp": ("temperature", float),
    "top_p": ("top_p", float),
    "round": ("round_size", int),
    "seed": ("seed", int),
}


class InteractiveSession:
    def __init__(self, config: SearchConfig, session: SearchSession | None = None, console: Console | None = None):
        self.session = session or SearchSession(config)
        self.console = console or Console(highlight=False)
        self.last: SearchResult | None = None

    @property
    def config(self) -> SearchConfig:
        return self.session.config

    def _error(self, label: str, detail: object = "") -> None:
        """A red label and the detail as plain text (Lean and users write brackets rich would parse)."""
        self.console.print(f"[red]{label}[/]" + (f": {escape(str(detail))}" if detail != "" else ""))

    def run(self) -> int:
        history = self._load_history()
        if self.config.run_dir:
            write_run_info(
                self.config.run_dir,
                self.config,
                seeds={"seed": self.config.seed},
                lean_project=self.config.verifier.resolved_lean_project(),
            )
        try:
            self.console.print(
                f"[bold]prover search[/] · task {self.session.task.name} · strategy {self.config.strategy} · "
                f"budget {self.config.budget}. Paste a statement, then a blank line; :help for commands."
            )
            self._load_model()
            while True:
                try:
                    text = self._read()
                except EOFError:
                    self.console.print()
                    break
                except KeyboardInterrupt:
                    self.console.print("^C")
                    continue
                if text.startswith(":"):
                    if not self.command(text):
                        break
                else:
                    self.prove(text)
        finally:
            self._save_history(history)
            self.session.close()
        return 0

    def _read(self) -> str:
        """One command (a line starting with ':') or one statement.

        A blank line ends a statement that parses; one that does not yet (a pasted header with blank
        lines before the theorem) goes on until it does, or until two blank lines in a row.
        """
        lines: list[str] = []
        while True:
            line = input(MORE if lines else PROMPT)
            if not lines and line.strip().startswith(":"):
                return line.strip()
            if line.strip():
                lines.append(line)
                continue
            if not lines:
                continue
            text = "\n".join(lines).rstrip("\n") + "\n"
            if lines[-1] == "" or self._parses(text):
                return text
            lines.append("")

    def _parses(self, text: str) -> bool:
        try:
            self.session.problem_from_text(text)
        except StatementError:
            return False
        return True

    def _load_model(self) -> None:
        try:
            with self.console.status("finding the model"):
                model = self.session.resolve_model()
            if not model:
                self.console.print("[yellow]no model yet[/]: load one with :model PATH")
                return
            check_model(model)
            with self.console.status(f"loading {escape(model)}"):
                self.session.sampler
        except Exception as exc:  # a bad path must not end the session: the user can :model again
            self._error("could not load the model", exc)
            self.session.set_model(None)

    def _switch_model(self, path: str) -> None:
        """``:model PATH``: a path that is no model leaves the working model loaded."""
        before = self.config.sampler.model
        try:
            with self.console.status(f"loading {escape(path)}"):
                self.session.switch_model(path)
        except ModelNotFound as exc:
            self._error("no such model", exc)
            if before:
                self.console.print(f"still using {escape(before)}")
            return
        except SearchError as exc:
            self._error("could not load the model", exc)
            if self.config.sampler.model:
                self.console.print(f"back to {escape(self.config.sampler.model)}")
            return
        self.console.print(f"model: {escape(path)}")

    def prove(self, text: str) -> None:
        try:
            problem = self.session.problem_from_text(text)
            with self.console.status("checking the statement"):
                self.session.check_statement(problem)
        except StatementError as exc:
            self._error("bad statement", exc)
            return
        except (SearchError, VerifierError) as exc:
            self._error("could not check the statement", exc)
            return
        if not self.config.sampler.model:
            self.console.print("[red]no model[/]: load one with :model PATH")
            return
        try:
            result = run_search(self.session, problem, self.console, live=self.console.is_terminal)
        except (SearchError, VerifierError) as exc:
            self._error("search failed", exc)
            return
        if result.proved:
            self.last = result
            self.console.print(render_proof(result))
            self.console.print("[dim]:save FILE writes it to a file[/]")
        else:
            self.console.print("\n".join(summary_lines(result)), style="yellow", markup=False)

    def command(self, line: str) -> bool:
        """Apply one ``:command``; False means quit."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "q", "exit"):
            return False
        if name == "help":
            self.console.print(HELP, markup=False)
        elif name == "show":
            self._show()
        elif name in _SETTINGS or name == "strategy":
            self._set(name, arg)
        elif name == "model":
            if not arg:
                self.console.print("usage: :model PATH")
            else:
                self._switch_model(arg)
        elif name == "header":
            self._header(arg)
        elif name == "save":
            self._save(arg)
        else:
            self._error("unknown command", f":{name}; :help lists them")
        return True

    def _set(self, name: str, arg: str) -> None:
        if name == "strategy":
            if arg not in STRATEGIES:
                self._error("unknown strategy", f"{arg!r}; choose one of {', '.join(STRATEGIES)}")
                return
            field, value = "strategy", arg
        else:
            field, kind = _SETTINGS[name]
            try:
                value = kind(arg)
            except ValueError:
                self._error(f":{name} needs a {kind.__name__}", f"got {arg!r}")
                return
        try:
            self.session.config = dataclasses.replace(self.config, **{field: value})  # __post_init__ checks the value
        except ValueError as exc:
            self._error("bad value", exc)
            return
        self.console.print(f"{field} = {value}")

    def _header(self, arg: str) -> None:
        if arg in ("", "none"):
            self.session.config = dataclasses.replace(self.config, header=None)
            self.console.print("header: the task's default")
        elif not Path(arg).expanduser().is_file():
            self._error("no such file", arg)
        else:
            self.session.config = dataclasses.replace(self.config, header=arg)
            self.console.print(f"header: {arg}")

    def _save(self, arg: str) -> None:
        if self.last is None:
            self.console.print("[yellow]no proof found yet[/]")
            return
        if not arg:
            self.console.print("usage: :save FILE")
            return
        path = Path(arg).expanduser()
        # A new file gets the header, so that it checks on its own; later proofs are appended.
        text = self.last.full_text.rstrip() + "\n"
        text = ("\n" + text) if path.exists() else (self.last.problem.header.rstrip() + "\n\n" + text).lstrip()
        with path.open("a") as f:
            f.write(text)
        self.console.print(f"saved to {path}")

    def _show(self) -> None:
        c = self.config
        self.console.print(
            f"task {self.session.task.name} · model {c.sampler.model} · strategy {c.strategy} · budget {c.budget} · "
            f"time {c.time_limit:g} s · temp {c.temperature} · top_p {c.top_p} · round {c.round_size} · seed {c.seed} · "
            f"header {c.header or 'default'}"
        )

    def _load_history(self) -> Path | None:
        if readline is None:
            return None
        path = Path(self.config.history_file).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                readline.read_history_file(str(path))
        except OSError as exc:
            logger.warning("history file %s unusable: %s", path, exc)
            return None
        readline.set_history_length(1000)
        return path

    def _save_history(self, path: Path | None) -> None:
        if readline is not None and path is not None:
            try:
                readline.write_history_file(str(path))
            except OSError as exc:
                logger.warning("could not write history to %s: %s", path, exc)
