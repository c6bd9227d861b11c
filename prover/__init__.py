"""Train and evaluate Lean 4 theorem provers with GRPO and the unlikeliness reward."""

__version__ = "0.1.0"
