"""The rank-bias diagnostic (the paper's Figure 4): whose probability does training raise?

Sample G proofs per probe theorem from the initial model, keep the correct ones with their
likelihood rank in their group (0 = least likely) and their initial log-probability. At each later
evaluation, the *uplift rate* of a rank is the fraction of those proofs whose log-probability has
risen. Plain GRPO lifts mostly the high ranks (the proofs the model already liked: distribution
sharpening); the unlikeliness reward should lift the low ranks too.

Used by the trainer through ``RankBiasCallback`` and usable alone (the synthetic study):
``probe = RankBiasProbe.sample(model, tokenizer, prompts, problems, score, G)``, then
``probe.uplift(model, step)`` after each stretch of training, and ``plot_uplift(results, path)``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from prover.data.problem import Problem
from prover.plotting import pyplot, save_figure
from prover.rl.unlikeliness import likelihood_ranks

logger = logging.getLogger(__name__)

Score = Callable[[Sequence[Problem], Sequence[str]], Sequence[float | None]]


@torch.no_grad()
def completion_logprobs(
    model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token log-probs, token count) of each completion after its prompt, at temperature 1.

    Rows are batched in the order given, so the same list on the same weights gives bit-identical
    values (a risen log-prob is then never noise from a different batch composition).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums, counts = [], []
    for start in range(0, len(prompt_ids), batch_size):
        rows = [
            list(p) + list(c)
            for p, c in zip(
                prompt_ids[start : start + batch_size], completion_ids[start : start + batch_size], strict=True
            )
        ]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        target = torch.zeros(len(rows), width, dtype=torch.bool)  # positions whose token is a completion token
        for i, (row, p) in enumerate(zip(rows, prompt_ids[start : start + batch_size], strict=True)):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            target[i, len(p) : len(row)] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (b, L, V)
        logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
        tgt = target[:, 1:].to(device)  # token t+1 is predicted at position t
        sums.append((logps * tgt).sum(-1).cpu())
        counts.append(tgt.sum(-1).cpu())
    model.train(was_training)
    return torch.cat(sums), torch.cat(counts)


@dataclass
class RankBiasResult:
    step: int
    group_size: int
    rates: list[float | None]  # uplift rate per initial rank 0..G-1 (None: no correct proof had that rank)
    counts: list[int]  # correct probe proofs per rank
    # one [probe problem index, initial rank, risen 0/1] per correct probe proof: what the intervals resample
    # (None in results written before it was recorded)
    outcomes: list[list[int]] | None = None

    @property
    def overall(self) -> float | None:
        n = sum(self.counts)
        return sum(r * c for r, c in zip(self.rates, self.counts, strict=True) if r is not None) / n if n else None

    def binned(self, bins: int = 4) -> list[float | None]:
        """Uplift rate per rank bin (bin 0 = the least likely quarter when bins=4)."""
        out = []
        for b in range(bins):
            lo, hi = b * self.group_size // bins, (b + 1) * self.group_size // bins
            n = sum(self.counts[lo:hi])
            risen = sum(r * c for r, c in zip(self.rates[lo:hi], self.counts[lo:hi], strict=True) if r is not None)
            out.append(risen / n if n else None)
        return out

    def binned_intervals(
        self, bins: int = 4, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
    ) -> list[tuple[float, float, float] | None]:
        """(rate, low, high) per rank bin, the interval a bootstrap over probe problems: the proofs of one
        problem rise and fall together, so resampling single proofs would understate the spread."""
        if not self.outcomes:
            raise ValueError("this result records no per-proof outcomes (written by an older version)")
        outcomes = np.asarray(self.outcomes, dtype=np.int64)  # (proofs, 3)
        problems = np.unique(outcomes[:, 0], return_inverse=True)[1]
        edges = [b * self.group_size // bins for b in range(bins + 1)]
        bin_of = np.searchsorted(edges, np.minimum(outcomes[:, 1], self.group_size - 1), side="right") - 1
        risen = np.zeros((problems.max() + 1, bins))  # (P, bins)
        counts = np.zeros_like(risen)
        np.add.at(risen, (problems, bin_of), outcomes[:, 2])
        np.add.at(counts, (problems, bin_of), 1)
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(len(risen), np.full(len(risen), 1 / len(risen)), size=resamples)  # (R, P)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (weights @ risen) / (weights @ counts)  # (R, bins); NaN where a resample has no proof in a bin
        alpha = (1 - confidence) / 2
        out = []
        for b in range(bins):
            n = counts[:, b].sum()
            if not n:
                out.append(None)
                continue
            low, high = np.nanquantile(boot[:, b], [alpha, 1 - alpha])
            out.append((float(risen[:, b].sum() / n), float(low), float(high)))
        return out


class RankBiasProbe:
    """Correct proofs of the initial model with their initial rank and log-probability."""

    def __init__(self, group_size: int, samples: list[dict[str, Any]]):
        self.group_size = group_size
        self.samples = samples  # each: problem, rank, prompt_ids, completion_ids, initial_logp

    @classmethod
    def sample(
        cls,
        model,
        tokenizer,
        prompts: Sequence[str],
        problems: Sequence[Problem],
        score: Score,
        group_size: int,
        max_new_tokens: int = 512,
        temperature: float = 1.0,
        seed: int = 0,
        rank_key: str = "mean",
        batch_size: int = 16,
    ) -> RankBiasProbe:
        """Draw ``group_size`` completions per prompt from ``model`` and keep the correct ones."""
        device = next(model.parameters()).device
        kept = []
        for index, (prompt, problem) in enumerate(zip(prompts, problems, strict=True)):
            prompt_ids = tokenizer(text=prompt)["input_ids"]
            torch.manual_seed(seed + index)
            out = model.generate(
                input_ids=torch.tensor([prompt_ids], device=device),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long, device=device),
                do_sample=True,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=group_size,
                pad_token_id=tokenizer.pad_token_id,
            )
            completions = [_until_eos(row[len(prompt_ids) :].tolist(), tokenizer) for row in out]
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            rewards = score([problem] * group_size, texts)
            sums, counts = completion_logprobs(model, [prompt_ids] * group_size, completions, batch_size)
            keys = sums / counts.clamp(min=1) if rank_key == "mean" else sums
            ids = torch.tensor([hash(tuple(c)) for c in completions])
            # Copies of one proof take the positions they span ("first"), not their shared
            # average (the reward's rule), which would pile a group's most frequent proof into
            # one middle bin and leave the top bin nearly empty.
            ranks = likelihood_ranks(keys, group_size, sample_ids=ids, ties="first")
            kept += [
                {
                    "problem": problem.name,
                    "rank": int(ranks[i]),
                    "prompt_ids": prompt_ids,
                    "completion_ids": completions[i],
                }
                for i, r in enumerate(rewards)
                if r is not None and r > 0
            ]
        probe = cls(group_size, kept)
        initial = probe._logps(model, batch_size)
        for s, lp in zip(kept, initial.tolist(), strict=True):
            s["initial_logp"] = lp
        logger.info(
            "rank-bias probe: %d correct proofs of %d problems (%d samples each)", len(kept), len(prompts), group_size
        )
        return probe

    def _logps(self, model, batch_size: int = 16) -> torch.Tensor:
        if not self.samples:
            return torch.zeros(0)
        return completion_logprobs(
            model, [s["prompt_ids"] for s in self.samples], [s["completion_ids"] for s in self.samples], batch_size
        )[0]

    def uplift(self, model, step: int, batch_size: int = 16) -> RankBiasResult:
        """Per initial rank, the fraction of the probe's correct proofs whose log-prob has risen."""
        now = self._logps(model, batch_size).tolist()
        risen = [0] * self.group_size
        counts = [0] * self.group_size
        problem_index: dict[str, int] = {}
        outcomes = []
        for s, lp in zip(self.samples, now, strict=True):
            r = min(self.group_size - 1, int(s["rank"]))  # a probe saved with tie-shared ranks (2.5) counts them at 2
            up = lp > s["initial_logp"]
            counts[r] += 1
            risen[r] += up
            outcomes.append([problem_index.setdefault(s["problem"], len(problem_index)), r, int(up)])
        rates = [x / c if c else None for x, c in zip(risen, counts, strict=True)]
        return RankBiasResult(step=step, group_size=self.group_size, rates=rates, counts=counts, outcomes=outcomes)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"group_size": self.group_size, "samples": self.samples}))

    @classmethod
    def load(cls, path: str | Path) -> RankBiasProbe:
        data = json.loads(Path(path).read_text())
        return cls(data["group_size"], data["samples"])


def _until_eos(ids: list[int], tokenizer) -> list[int]:
    """A generated row up to and including its first EOS (the rest is padding)."""
    eos = tokenizer.eos_token_id
    return ids[: ids.index(eos) + 1] if eos in ids else [t for t in ids if t != tokenizer.pad_token_id]


def plot_uplift(results: Sequence[RankBiasResult], path: str | Path, bins: int = 8, title: str = "") -> Path:
    """Uplift rate against initial likelihood rank, one line per evaluation step (later = darker)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    cmap = plt.get_cmap("viridis")
    for i, res in enumerate(results):
        b = min(bins, res.group_size)
        rates = res.binned(b)
        xs = [(j + 0.5) / b for j in range(b) if rates[j] is not None]
        ys = [100 * r for r in rates if r is not None]
        ax.plot(
            xs, ys, marker="o", markersize=3, color=cmap(1 - (i + 1) / (len(results) + 1)), label=f"step {res.step}"
        )
    ax.set_xlabel("initial likelihood rank of the correct proof (0 = least likely, 1 = most)")
    ax.set_ylabel("uplift rate (% with risen log-prob)")
    ax.set_ylim(-5, 105)
    ax.set_xlim(0, 1)
    ax.set_title(title or "Rank bias: which correct proofs does training make likelier?")
    ax.grid(True, alpha=0.3)
    if results:
        ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


QUARTERS = ("least likely", "2nd", "3rd", "most likely")


def plot_uplift_comparison(
    results: dict[str, RankBiasResult], path: str | Path, bins: int = 4, title: str = "", confidence: float = 0.95
) -> Path:
    """Uplift rate by initial-rank bin, one line per run (e.g. GRPO and GRPO + unlikeliness, same probe),
    each point with its bootstrap interval over probe problems."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    offsets = np.linspace(-0.06, 0.06, max(1, len(results))) if len(results) > 1 else [0.0]
    for offset, (label, result) in zip(offsets, results.items()):
        cells = result.binned_intervals(bins, confidence=confidence)
        xs = [b + 1 + offset for b, c in enumerate(cells) if c is not None]
        mean = np.array([100 * c[0] for c in cells if c is not None])
        low = np.array([100 * c[1] for c in cells if c is not None])
        high = np.array([100 * c[2] for c in cells if c is not None])
        n = sum(result.counts)
        ax.errorbar(
            xs,
            mean,
            yerr=np.vstack([mean - low, high - mean]),
            marker="o",
            markersize=4,
            capsize=3,
            label=f"{label} ({n} proofs)",
        )
    ticks = list(range(1, bins + 1))
    ax.set_xticks(ticks, list(QUARTERS) if bins == 4 else [f"bin {b}" for b in ticks])
    ax.set_xlabel("initial likelihood rank of the correct proof in its group (quarters)")
    ax.set_ylabel("uplift rate (% whose log-prob rose)")
    ax.set_ylim(-5, 105)
    ax.set_title(
        title or f"Rank bias at the end of training ({100 * confidence:.0f}% intervals over probe problems)",
        fontsize="medium",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


class RankBiasCallback(TrainerCallback):
    """Builds the probe from the model as training starts (or reloads it on resume), evaluates it
    every ``every`` optimizer steps, appends each result to
    ``<dir>/rank_bias.jsonl``, redraws ``<dir>/rank_bias.png``, and reports the binned rates through
    ``log_metric`` (``rank_bias/uplift_q1`` = least likely quarter ... ``q4``)."""

    def __init__(
        self,
        out_dir: str | Path,
        build: Callable[[Any], RankBiasProbe],
        every: int,
        log_metric: Callable[[str, float], None] | None = None,
    ):
        if every < 1:
            raise ValueError(f"rank-bias evaluation interval must be >= 1 step, got {every}")
        self.dir = Path(out_dir)
        self.build = build
        self.every = every
        self.log_metric = log_metric
        self.probe: RankBiasProbe | None = None

    @property
    def probe_path(self) -> Path:
        return self.dir / "rank_bias_probe.json"

    @property
    def results_path(self) -> Path:
        return self.dir / "rank_bias.jsonl"

    @property
    def plot_path(self) -> Path:
        return self.dir / "rank_bias.png"

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Every process samples and scores the probe alike (same seeds): a sharded (FSDP) model's
        # forward passes need all of them; only the main process writes.
        if self.probe_path.exists():  # a resumed run keeps the initial model's probe
            self.probe = RankBiasProbe.load(self.probe_path)
            if state.is_world_process_zero:
                self._truncate_after(state.global_step)
            return
        self.probe = self.build(model)
        if state.is_world_process_zero:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.probe.save(self.probe_path)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.probe is None or state.global_step % self.every:
            return
        result = self.probe.uplift(model, state.global_step)
        if not state.is_world_process_zero:
            return
        with self.results_path.open("a") as f:
            f.write(json.dumps(asdict(result)) + "\n")
        plot_uplift(self.history(), self.plot_path)
        quarters = result.binned(4)
        logger.info(
            "step %d rank-bias uplift by quarter (least likely first): %s",
            state.global_step,
            ", ".join("-" if q is None else f"{100 * q:.0f}%" for q in quarters),
        )
        if self.log_metric is not None:
            for i, q in enumerate(quarters, 1):
                self.log_metric(f"rank_bias/uplift_q{i}", math.nan if q is None else q)

    def _truncate_after(self, step: int) -> None:
        """Drop results of steps after the checkpoint a run resumes from: it evaluates them again."""
        history = self.history()
        kept = [r for r in history if r.step <= step]
        if len(kept) < len(history):
            self.results_path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in kept))

    def history(self) -> list[RankBiasResult]:
        if not self.results_path.exists():
            return []
        return [RankBiasResult(**json.loads(line)) for line in self.results_path.read_text().splitlines() if line]
