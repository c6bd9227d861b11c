"""Training progress a person can read: one short line per logging step instead of a 40-key dict.

On a terminal, transformers' tqdm bar stays and the line is written above it. Elsewhere (a batch
job's log file, a pipe) a bar only adds carriage returns (147 KB of them for the default job), so
there is no bar: the same line goes through ``logging`` with the elapsed time and an ETA.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

logger = logging.getLogger(__name__)

# (metric, label, format) shown in each line, when logged; the full set goes to report_to.
SHOWN = (
    ("loss", "loss", "{:.4f}"),
    ("pass_rate", "pass", "{:.2f}"),
    ("solved_total", "solved", "{:.0f}"),
    ("zero_signal_frac", "no-signal groups", "{:.2f}"),
    ("dynamic/update", "updates", "{:.2f}"),
    ("unlikeliness/factor_mean", "unlikeliness factor", "{:.3f}"),
    ("grad_skipped", "skipped", "{:.2f}"),
)


def is_terminal() -> bool:
    """Progress bars go to stderr; where it is not a terminal they are not drawn."""
    return sys.stderr.isatty()


def quiet_library_bars() -> None:
    """Turn off the weight-loading / shard-writing bars of transformers and huggingface_hub."""
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


def format_line(
    step: int, max_steps: int, logs: dict[str, Any], elapsed: float | None = None, eta: float | None = None
) -> str:
    """``step 40/400 (10%) 0:12 ETA 1:48 · loss 0.0123 · pass 0.61 · solved 312 · ...``"""
    parts = [f"step {step}/{max_steps} ({100 * step // max(1, max_steps)}%)"]
    if elapsed is not None:
        parts[0] += f" {_fmt_seconds(elapsed)}" + (f" ETA {_fmt_seconds(eta)}" if eta is not None else "")
    for key, label, fmt in SHOWN:
        value = logs.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {fmt.format(value)}")
    return " · ".join(parts)


class LineProgress(TrainerCallback):
    """Logs one line per logging step (and one at the end) on the main process."""

    def __init__(self):
        self._start: float | None = None
        self._first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.monotonic()
        self._first_step = state.global_step  # a resumed run's ETA counts only the steps run now

    def _timing(self, state) -> tuple[float | None, float | None]:
        if self._start is None:
            return None, None
        elapsed = time.monotonic() - self._start
        done = state.global_step - self._first_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
        return elapsed, eta

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:  # transformers' summary at the end of train()
            self.emit(f"training done: {state.global_step} steps in {_fmt_seconds(logs['train_runtime'])}")
            return
        self.emit(format_line(state.global_step, state.max_steps, logs, *self._timing(state)))

    def emit(self, line: str) -> None:
        logger.info(line)


class BarProgress(ProgressCallback):
    """transformers' tqdm bar, with the short line written above it instead of the metrics dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "train_runtime" not in logs:
            self.training_bar.write(format_line(state.global_step, state.max_steps, logs))


def use_line_progress(trainer) -> None:
    """Replace the trainer's bar and dict printer: a bar with short lines on a terminal, log lines elsewhere."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarProgress() if is_terminal() else LineProgress())
