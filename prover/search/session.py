"""A search session: the task, the model, the verifier and the proof-state backend, kept alive
across theorems (the model stays loaded, the verifier warm), and one ``search`` per theorem."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import threading
from pathlib import Path

from prover.data.problem import Problem
from prover.model_check import check_model
from prover.sampling.base import Sampler
from prover.search.backends import DojoBackend, ProofStateBackend, ReplBackend, open_leandojo
from prover.search.config import SearchConfig
from prover.search.engine import Found, SearchContext, SearchError, SearchResult, StatementError, make_strategy
from prover.search.progress import SearchProgress
from prover.search.record import AttemptLog
from prover.tasks.base import Task, make_task
from prover.verifier.base import Verifier

logger = logging.getLogger(__name__)


class SearchSession:
    """Proves theorems one at a time. A context manager; ``close`` is safe to call twice.

    ``task``, ``sampler``, ``verifier`` and ``backend`` may be given ready-made (tests, notebooks);
    otherwise they are built from the config the first time they are needed.
    """

    def __init__(
        self,
        config: SearchConfig,
        task: Task | None = None,
        sampler: Sampler | None = None,
        verifier: Verifier | None = None,
        backend: ProofStateBackend | None = None,
    ):
        self.config = config
        self.task = task or make_task(config.task)
        self._sampler = sampler
        self._verifier = verifier
        self._backend = backend
        self._checker: ReplBackend | None = backend if isinstance(backend, ReplBackend) else None

    # --- parts, built on first use -------------------------------------------------------------

    def resolve_model(self) -> str | None:
        """The model to sample from: the configured one, else the task's own base model when it has
        one (the synthetic task trains it on first use), else None."""
        if not self.config.sampler.model and hasattr(self.task, "ensure_base_model"):
            logger.info("no --model: using the %s task's base model (trained on first use)", self.task.name)
            self.config.sampler.model = str(self.task.ensure_base_model())
        return self.config.sampler.model

    @property
    def sampler(self) -> Sampler:
        if self._sampler is None:
            from prover.sampling import make_sampler

            if not self.resolve_model():
                raise SearchError("no model: pass --model PATH (or --sampler.model)")
            logger.info("loading %s", self.config.sampler.model)
            try:
                self._sampler = make_sampler(self.config.sampler)
            except (OSError, ValueError) as exc:  # transformers/vLLM: unreadable weights, unknown architecture
                raise SearchError(f"could not load the model {self.config.sampler.model}: {exc}") from exc
        return self._sampler

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = self.task.make_verifier(self.config.verifier)
        return self._verifier

    def _repl_backend(self) -> ReplBackend:
        """One REPL for statement checks and, with best_first.backend=repl, for the tactic search."""
        if self._checker is None:
            self._checker = ReplBackend.from_config(self.config.verifier, timeout=self.config.best_first.tactic_timeout)
        return self._checker

    @property
    def backend(self) -> ProofStateBackend:
        if self._backend is None:
            settings = self.config.best_first
            if settings.backend == "dojo":
                self._backend = DojoBackend(
                    open_leandojo(
                        settings.dojo_repo,
                        settings.dojo_commit,
                        settings.dojo_file,
                        settings.tactic_timeout,
                        self.config.verifier.start_timeout,
                    )
                )
            else:
                self._backend = self._repl_backend()
        return self._backend

    def set_model(self, path: str | None) -> None:
        """Swap the policy model; the new one is loaded by the next search."""
        if self._sampler is not None:
            self._sampler.close()
        self._sampler = None
        self.config.sampler.model = path

    def switch_model(self, path: str) -> None:
        """Load ``path`` in place of the current model. A path that is no model raises
        ``ModelNotFound`` with the current model still loaded; a model that fails to load raises
        ``SearchError`` after the previous one is loaded again (one model in memory at a time)."""
        check_model(path)
        previous = self.config.sampler.model if self._sampler is not None else None
        self.set_model(path)
        try:
            self.sampler
        except SearchError:
            self.set_model(previous)
            if previous:
                self.sampler
            raise

    # --- theorems ------------------------------------------------------------------------------

    def problem_from_text(self, text: str, name: str | None = None) -> Problem:
        """A problem from a statement typed or pasted by the user; ``StatementError`` says what is wrong."""
        if not text.strip():
            raise StatementError("the statement is empty")
        try:
            problem = self.task.parse_statement(text, name or self.config.name or "user_theorem")
        except NotImplementedError as exc:
            raise StatementError(str(exc)) from exc
        except ValueError as exc:
            raise StatementError(f"not a statement the {self.task.name} task can prove: {exc}") from exc
        return self._with_header(problem)

    def problem_from_dataset(self, name: str, dataset: str | None = None) -> Problem:
        try:
            problems = self.task.load_problems(dataset)
        except (ValueError, OSError) as exc:  # the loaders' DataError is a ValueError naming file and row
            raise StatementError(f"cannot load the problems: {exc}") from exc
        by_name = {p.name: p for p in problems}
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise StatementError(
                f"no problem named {name!r} in {dataset or 'the task dataset'} ({len(problems)} problems){hint}"
            )
        return self._with_header(by_name[name])

    def _with_header(self, problem: Problem) -> Problem:
        if not self.config.header:
            return problem
        path = Path(self.config.header).expanduser()
        if not path.is_file():
            raise StatementError(f"header file {path} does not exist")
        return dataclasses.replace(problem, header=path.read_text())

    def check_statement(self, problem: Problem) -> None:
        """Lean must accept the statement with ``sorry`` as its proof before any sampling is spent on it."""
        if self.config.strategy == "best-first" and self.config.best_first.backend == "dojo":
            # The search opens the theorem in LeanDojo anyway: opening it now reports LeanDojo's
            # DojoInitError as a bad statement before the model loads.
            self.backend.start(problem)
        mode, verifier = self.config.statement_check, self.config.verifier
        if mode == "none" or (mode == "auto" and not (verifier.repl_command or verifier.resolved_lean_project())):
            return
        self._repl_backend().start(problem)

    def search(
        self, problem: Problem, cancel: threading.Event | None = None, progress: SearchProgress | None = None
    ) -> SearchResult:
        """Search for a proof of ``problem`` under the current config; ``cancel`` stops it early.

        ``progress`` (created here when not given) is updated as the search goes, for a live display.
        """
        config = self.config
        strategy = make_strategy(config.strategy)
        progress = progress or SearchProgress()
        progress.update(
            strategy=strategy.name, budget=config.budget, budget_unit=strategy.budget_unit, time_limit=config.time_limit
        )
        ctx = SearchContext(
            problem=problem,
            task=self.task,
            sampler=self.sampler,
            verifier=self.verifier,
            config=config,
            progress=progress,
            cancel=cancel or threading.Event(),
            backend=self.backend if strategy.name == "best-first" else None,
        )
        found = self._resume(ctx) if config.run_dir else None
        try:
            found = found or strategy.run(ctx)
        finally:
            progress.finish()
        if found:
            result = SearchResult("proved", problem, progress, found.proof, found.verdict, ctx.note)
        else:
            result = SearchResult(ctx.stop_reason() or "exhausted", problem, progress, note=ctx.note)
        progress.update(phase=result.outcome)
        if ctx.log is not None:
            ctx.log.write_result(result.to_json())
        return result

    def _resume(self, ctx: SearchContext) -> Found | None:
        """Attach the run directory's attempt log; earlier attempts count and are not checked again."""
        ctx.log = AttemptLog(self.config.run_dir, ctx.problem)
        tried, counters = ctx.log.load()
        if not tried:
            return None
        ctx.tried.update(tried)
        ctx.progress.add(
            distinct=len(tried), **{k: v for k, v in counters.items() if k in ("samples", "rounds", "expansions")}
        )
        for verdict in tried.values():
            ctx.progress.record_verdict(verdict)
        logger.info("resuming from %s: %d attempts already checked", ctx.log.path, len(tried))
        for proof, verdict in tried.items():
            if verdict.proved:
                return Found(proof, verdict)
        return None

    def close(self) -> None:
        for part in ("_sampler", "_verifier", "_backend", "_checker"):
            obj = getattr(self, part)
            setattr(self, part, None)
            if obj is not None:
                obj.close()

    def __enter__(self) -> SearchSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
