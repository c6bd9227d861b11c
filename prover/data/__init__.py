"""Problems: loading, validation and prompts."""

from prover.data.loading import DEEPSEEK_HEADER, NAMED_EXCLUDES, NAMED_SETS, DataError, load_problems, resolve_exclude
from prover.data.problem import Problem
from prover.data.prompts import TEMPLATES, PromptTemplate, get_template

__all__ = [
    "DEEPSEEK_HEADER",
    "NAMED_EXCLUDES",
    "NAMED_SETS",
    "TEMPLATES",
    "DataError",
    "Problem",
    "PromptTemplate",
    "get_template",
    "load_problems",
    "resolve_exclude",
]
