"""What can go wrong in the checker itself (never in the proof: a wrong proof is a verdict).

Callers catch a category: ``VerifierError`` for all, ``LeanSetupError`` for a missing or broken
Lean project (a message that says how to fix it), ``ReplError`` for a REPL process that failed.
"""

from __future__ import annotations


class VerifierError(RuntimeError):
    """Base class of the checker's own failures."""


class LeanSetupError(VerifierError):
    """The Lean project, the REPL binary or the sandbox is missing or unusable."""


class PoolClosedError(VerifierError):
    """The pool was closed while a request waited; the request got no verdict."""


class ReplError(VerifierError):
    """A REPL process failed; ``reason`` says how, ``stderr`` holds the tail of its error output."""

    def __init__(self, reason: str, stderr: str = ""):
        super().__init__(reason + (f"; stderr: {stderr}" if stderr else ""))
        self.reason = reason
        self.stderr = stderr


class ReplCrashed(ReplError):
    """The process exited, closed its output, or was killed."""


class ReplProtocolError(ReplError):
    """The process answered something that is not a framed JSON object (or too much of it)."""


class ReplTimeout(ReplError):
    """No answer within the wall-clock limit; the process group has been killed."""


class WorkerStartError(ReplError):
    """A worker could not start or could not check its header."""
