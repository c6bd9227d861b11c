"""Tasks: Lean (miniF2F, Lean Workbook) and the synthetic task with an exact checker."""

from prover.tasks.base import Task, TaskConfig, make_task

__all__ = ["Task", "TaskConfig", "make_task"]
