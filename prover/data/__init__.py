"""Problems: loading, validation and prompts."""

from prover.data.problem import Problem

__all__ = ["Problem"]
