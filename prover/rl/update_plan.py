"""The dynamic update's optimizer steps, cut as the reference cuts them: whole steps of ``step_rows`` samples.

The reference (AndreHe02/rewarding-unlikely-release, ``verl/workers/actor/dp_actor.py``,
``update_policy``) splits the B samples it collected into mini-batches of ``ppo_mini_batch_size`` = 256
and takes one optimizer step per mini-batch and epoch: ceil(B / 256) steps per epoch, the last one
partial. Here every process holds all B rows (they were gathered) and cuts them the same way; the rows
of each step are dealt to processes x micro-batches in equal numbers, topped up with fully masked rows,
so every process runs the same number of forward/backward passes on the same number of rows (TRL
gathers one value per row for its clip metrics: unequal counts crash the gather, or hang on NCCL).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from trl.trainer.utils import pad

# Output keys of GRPOTrainer._generate_and_score_completions (TRL 1.16) that a row carries: how to pad
# each (side, value; "pad" = the tokenizer's pad id), None for one value per row. Anything else
# (images) is refused by the trainer.
LEFT, RIGHT = "left", "right"
ROW_KEYS: dict[str, tuple[str, Any] | None] = {
    "prompt_ids": (LEFT, "pad"),
    "prompt_mask": (LEFT, 0),
    "completion_ids": (RIGHT, "pad"),
    "completion_mask": (RIGHT, 0),
    "tool_mask": (RIGHT, 1),
    "old_per_token_logps": (RIGHT, 0.0),
    "ref_per_token_logps": (RIGHT, 0.0),
    "sampling_per_token_logps": (RIGHT, 0.0),
    "importance_sampling_ratio": (RIGHT, 1.0),
    "advantages": None,
}
Rows = dict[str, torch.Tensor]  # ROW_KEYS -> (n, ...) tensors, one row per sample


def select_rows(batch: dict[str, Any], index: torch.Tensor) -> Rows:
    """The rows ``index`` of a TRL output batch, on the CPU (the buffer waits there, off the GPU)."""
    return {k: batch[k].index_select(0, index.to(batch[k].device)).cpu() for k in ROW_KEYS if batch.get(k) is not None}


def concat_rows(parts: list[Rows], pad_id: int) -> Rows:
    """One batch from parts of different widths (each generation batch was padded to its own)."""
    keys = [k for k in ROW_KEYS if any(k in p for p in parts)]
    out = {}
    for key in keys:
        values = [p[key] for p in parts if key in p]
        if ROW_KEYS[key] is None:
            out[key] = torch.cat(values)
            continue
        side, fill = ROW_KEYS[key]
        rows = [row for v in values for row in v]  # pad() takes a list of per-row tensors
        out[key] = (
            pad(rows, padding_value=pad_id if fill == "pad" else fill, padding_side=side) if rows else torch.cat(values)
        )
    return out


def loss_mask(rows: Rows) -> torch.Tensor:
    """(n, T) the tokens TRL's loss counts."""
    mask = rows["completion_mask"]
    return mask * rows["tool_mask"] if "tool_mask" in rows else mask


def steps_per_epoch(total_rows: int, step_rows: int) -> int:
    """ceil(B / step_rows): the reference's optimizer steps per epoch over B collected samples."""
    return math.ceil(total_rows / step_rows)


def _micro_batch(rows: Rows, index: torch.Tensor, size: int, filler: int) -> Rows:
    """Rows ``index`` topped up to ``size`` with fully masked copies of row ``filler`` (advantage 0, no
    loss tokens; their prompts stay attended: an all-masked attention row would give NaN logits),
    trimmed to the widest real prompt and completion."""
    real = len(index)
    full = torch.cat([index, torch.full((size - real,), filler, dtype=index.dtype)])
    batch = {k: v.index_select(0, full).clone() for k, v in rows.items()}
    batch["completion_mask"][real:] = 0
    batch["advantages"][real:] = 0
    prompt_used = batch["prompt_mask"].any(0).nonzero()  # columns some row attends to
    completion_used = batch["completion_mask"].any(0).nonzero()
    first = int(prompt_used[0]) if len(prompt_used) else batch["prompt_mask"].size(1) - 1
    last = int(completion_used[-1]) + 1 if len(completion_used) else 1  # logits_to_keep = 0 would keep all
    for key, how in ROW_KEYS.items():
        if how is None or key not in batch or batch[key].dim() < 2:
            continue
        if how[0] == LEFT:
            batch[key] = batch[key][:, first:]
        elif batch[key].size(1) > 1:  # (n, 1): a per-sequence importance ratio, not a token axis
            batch[key] = batch[key][:, :last]
    return batch


def plan_update(
    rows: Rows, step_rows: int, processes: int, micro_batches: int, rank: int, items_scale: float = 1.0
) -> list[list[Rows]]:
    """This process's share of one epoch over ``rows``: one list of ``micro_batches`` batches per step.

    Step s takes rows [s * step_rows, (s + 1) * step_rows) in order. Its n rows go round-robin to
    processes x micro-batches of ceil(n / (processes x micro_batches)) rows each (a full step: exactly
    step_rows / (processes x micro_batches)); what is left over is masked filler. Each batch carries
    ``num_items_in_batch`` = the step's loss tokens over all processes x ``items_scale``, the number
    TRL's token-level losses divide by.
    """
    total = len(rows["advantages"])
    if total == 0:
        raise ValueError("plan_update needs at least one row")
    if step_rows % (processes * micro_batches):
        raise ValueError(
            f"step_rows ({step_rows}) must be a multiple of processes x micro-batches ({processes} x {micro_batches})"
        )
    tokens = loss_mask(rows).sum(-1)  # (B,)
    slots = processes * micro_batches
    steps = []
    for start in range(0, total, step_rows):
        index = torch.arange(start, min(total, start + step_rows))
        size = math.ceil(len(index) / slots)
        chunks = [index[c * size : (c + 1) * size] for c in range(slots)]
        items = torch.tensor(float(tokens[index].sum()) * items_scale)
        step = []
        for m in range(micro_batches):  # micro-batch m of this process: chunk m * processes + rank
            batch = _micro_batch(rows, chunks[m * processes + rank], size, filler=start)
            batch["num_items_in_batch"] = items
            step.append(batch)
        steps.append(step)
    return steps
