"""Proof search for one theorem at a time: whole-proof sampling, truncate-and-resume and tactic-level
best-first search, non-interactive (``python -m prover.search --theorem ...``) or as an interactive session."""

from prover.search.config import SearchConfig
from prover.search.engine import SearchError, SearchResult, StatementError
from prover.search.session import SearchSession

__all__ = ["SearchConfig", "SearchError", "SearchResult", "SearchSession", "StatementError"]
