"""TRL's GRPOTrainer with the unlikeliness reward, the reference's dynamic update and a gradient-norm skip.

TRL is pinned (trl==1.16.0) because twelve private methods are overridden, each as a thin wrapper
around TRL's own, and ``tests/test_train.py`` and ``tests/test_dynamic_update.py`` assert their
signatures so an upgrade fails loudly:

- ``GRPOTrainer._generate``: times generation and keeps the prompt token ids, which the ranking needs.
- ``GRPOTrainer._calculate_rewards``: its result is already gathered over processes, so whole groups
  are visible; no optimizer step happens between sampling and this call, so log-probs computed here
  are the sampling (old) policy's. The unlikeliness shaping goes here, before TRL normalises groups,
  and so do the group advantages with the reference's epsilon (``advantage_epsilon``).
- ``GRPOTrainer._generate_and_score_completions``: puts those advantages in its output.
- ``GRPOTrainer._get_per_token_logps_and_entropies``: when TRL computes the old policy's log-probs
  itself (``num_iterations > 1``, or vLLM's importance-sampling correction), its first no-grad call
  on the policy in a generation step is that computation; keeping its result saves the ranking a
  second forward pass over the batch.
- ``GRPOTrainer.training_step`` / ``_prepare_inputs``: with the dynamic update the trainer decides per
  optimizer step what to train on (``prover.rl.update_plan``); a held step calls neither of TRL's,
  so it runs no forward, no backward and no optimizer work on any backend (DeepSpeed steps its
  engine inside ``backward``).
- ``transformers.Trainer._get_grad_norm``: called before every optimizer step with the pre-clip norm;
  dropping the gradients there makes ``optimizer.step()`` a no-op (AdamW skips parameters without a
  gradient: no momentum, no weight decay), which is what a *skip* means.
- ``transformers.Trainer._save_checkpoint`` / ``_load_rng_state``: the dynamic update's state (rows
  with signal, prompts not yet sampled, optimizer steps still to take), TRL's buffered generation
  batch and its step counter are saved beside the RNG state and restored with it on resume
  (``prover.rl.resume_state``).
- ``GRPOTrainer._get_train_sampler``: TRL's sampler with an epoch-replaying ``set_epoch`` (same module).
- ``GRPOTrainer.create_model_card`` (none during training) and ``GRPOTrainer.log`` (counts as counts).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

from prover.rl.config import ProverGRPOConfig
from prover.rl.resume_state import ReplayRepeatSampler, load_resume_state, save_resume_state
from prover.rl.rewards import ProofReward
from prover.rl.solved import SolvedProofs
from prover.rl.unlikeliness import group_advantages, sequence_logprob, shape_rewards, zero_signal_groups
from prover.rl.update_plan import ROW_KEYS, Rows, concat_rows, plan_update, select_rows

logger = logging.getLogger(__name__)


class UnlikelinessGRPOTrainer(GRPOTrainer):
    """GRPO as in TRL, plus (per ``ProverGRPOConfig``) the unlikeliness reward on ``reward_funcs[0]``, the
    0/1 correctness reward; the dynamic update; the grad-norm skip; solved proofs written to
    ``solved_path``; and metrics: ``pass_rate``, ``solved_total``, ``zero_signal_frac``,
    ``unlikeliness/factor_mean``, ``time/{generate,verify,rank,update}``, ``grad_skipped``, ``dynamic/*``.
    """

    def __init__(self, *args: Any, solved_path: str | Path | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, ProverGRPOConfig):
            raise TypeError(f"args must be a ProverGRPOConfig, got {type(self.args).__name__}")
        if self.args.dynamic_update and self.args.steps_per_generation % self.args.gradient_accumulation_steps:
            raise ValueError(
                f"dynamic_update needs steps_per_generation ({self.args.steps_per_generation}) to be a multiple of "
                f"gradient_accumulation_steps ({self.args.gradient_accumulation_steps}), so that new prompts "
                "arrive at the start of an optimizer step"
            )
        self.solved = SolvedProofs(solved_path) if solved_path else None
        self._solved_names: set[str] = set(self.solved.names) if self.solved else set()
        self._prompt_ids: list[list[int]] | None = None  # of the batch being scored
        self._old_logps: dict[str, torch.Tensor] | None = None  # TRL's old log-probs of that batch, when it makes them
        self._row_signal: torch.Tensor | None = None  # (N_global,) rows of groups with signal
        self._advantages: torch.Tensor | None = None  # (N_global,) with advantage_epsilon, when they replace TRL's
        self._ranking_logps: dict[str, torch.Tensor] | None = None  # the ranking's own forward pass, if it ran one
        # The dynamic update: local rows with signal per generation batch (one part each, maybe empty), their
        # count over all processes, dataloader batches not sampled yet, the optimizer steps still to take
        # (each a list of gradient_accumulation_steps micro-batches), and the step being taken.
        self._buffer: list[Rows] = []
        self._buffer_size = 0
        self._pending: list[list[dict[str, Any]]] = []
        self._plan: list[list[Rows]] = []
        self._slot: list[Rows] | None = None
        self._micro: dict[str, Any] | None = None  # the micro-batch _prepare_inputs hands TRL next
        self._hold = False  # this optimizer step has nothing to train on
        self._scoring_time = 0.0
        self._update_time = 0.0

    # ---- generation and rewards -------------------------------------------------------------------

    def _generate(self, prompts: list):
        start = time.perf_counter()
        out = super()._generate(prompts)
        self._prompt_ids = out[0]
        self._metrics["train" if self.model.training else "eval"]["time/generate"].append(time.perf_counter() - start)
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.model.training:
            return rewards_per_func
        metrics = self._metrics["train"]
        group = self.num_generations
        raw = rewards_per_func[:, 0]  # (N,) the correctness reward, gathered over processes
        self._record_solved()
        zero = zero_signal_groups(raw, group)  # (N / G,)
        self._row_signal = ~zero.repeat_interleave(group)
        metrics["pass_rate"].append(torch.nanmean(raw).item())
        metrics["zero_signal_frac"].append(zero.float().mean().item())
        metrics["solved_total"].append(float(len(self._solved_names)))
        if self.args.unlikeliness:
            rewards_per_func = self._shape(rewards_per_func, completion_ids_list)
        self._advantages = self._group_advantages(rewards_per_func)
        return rewards_per_func

    def _shape(self, rewards_per_func: torch.Tensor, completion_ids_list: list[list[int]]) -> torch.Tensor:
        """The correctness reward (column 0) times each correct proof's unlikeliness factor."""
        metrics, group, raw = self._metrics["train"], self.num_generations, rewards_per_func[:, 0]
        start = time.perf_counter()
        keys, sample_ids = self._ranking_keys(completion_ids_list)
        shaped, factors = shape_rewards(raw, keys, group, self.args.beta_rank, self.args.rank_set, sample_ids)
        metrics["time/rank"].append(time.perf_counter() - start)
        correct = raw > 0
        if correct.any():
            metrics["unlikeliness/factor_mean"].append(factors[correct].mean().item())
        rewards_per_func = rewards_per_func.clone()
        rewards_per_func[:, 0] = shaped
        return rewards_per_func

    def _group_advantages(self, rewards_per_func: torch.Tensor) -> torch.Tensor | None:
        """TRL's advantages with ``advantage_epsilon`` instead of its 1e-4, where TRL's formula is the
        reference's (group scaling of the weighted sum; otherwise TRL's own stand)."""
        if self.scale_rewards != "group" or self.multi_objective_aggregation != "sum_then_normalize":
            return None
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable, as TRL marks it
        return group_advantages(rewards, self.num_generations, self.args.advantage_epsilon)

    def _ranking_keys(self, completion_ids_list: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, sample ids) of every completion, gathered: the old policy's log-prob and a token-id hash."""
        device = self.accelerator.device
        # Python's hash of a tuple of ints is the same in every process (only str/bytes hashing is salted).
        ids = torch.tensor([hash(tuple(ids)) for ids in completion_ids_list], dtype=torch.long, device=device)
        if self._old_logps and len(self._old_logps["logps"]) == len(completion_ids_list):
            keys = sequence_logprob(self._old_logps["logps"].float(), self._old_logps["mask"], self.args.rank_key)
            return self.accelerator.gather(keys), self.accelerator.gather(ids)
        prompt_ids = [torch.tensor(ids) for ids in self._prompt_ids]
        completion_ids = [torch.tensor(ids, dtype=torch.long) for ids in completion_ids_list]
        pad_id = self._tokenizer.pad_token_id
        prompt = pad(prompt_ids, padding_value=pad_id, padding_side="left").to(device)  # (B, P)
        prompt_mask = pad([torch.ones_like(t) for t in prompt_ids], padding_value=0, padding_side="left").to(device)
        completion = pad(completion_ids, padding_value=pad_id, padding_side="right").to(device)  # (B, C)
        completion_mask = pad([torch.ones_like(t) for t in completion_ids], padding_value=0, padding_side="right").to(
            device
        )
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model,
                torch.cat([prompt, completion], dim=1),
                torch.cat([prompt_mask, completion_mask], dim=1),
                completion.size(1),
                batch_size=self.args.per_device_train_batch_size,
            )  # (B, C)
        self._ranking_logps = {"logps": logps, "mask": completion_mask}
        keys = sequence_logprob(logps.float(), completion_mask, self.args.rank_key)
        return self.accelerator.gather(keys), self.accelerator.gather(ids)

    def _trl_computes_old_logps(self) -> bool:
        """TRL 1.16's condition for computing ``old_per_token_logps`` in _generate_and_score_completions."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return bool(
            self.args.gradient_accumulation_steps % generate_every != 0
            or (self.use_vllm and self.vllm_importance_sampling_correction)
        )

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        out = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs
        )
        if (
            self._old_logps is not None
            and "logps" not in self._old_logps
            and model is self.model
            and not torch.is_grad_enabled()
        ):
            self._old_logps = {"logps": out[0], "mask": attention_mask[:, -logits_to_keep:]}
        return out

    def _record_solved(self) -> None:
        reward = self.reward_funcs[0]
        records = reward.pop_proved() if isinstance(reward, ProofReward) else []
        records = gather_object(records)
        self._solved_names.update(r["name"] for r in records)
        if self.solved is not None and self.accelerator.is_main_process:
            self.solved.add(records, step=self.state.global_step)

    # ---- scoring, and the dynamic update ------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        # Truncated completions masked out of the attention would give the ranking no tokens: rank them ourselves.
        capture = (
            self.model.training
            and self.args.unlikeliness
            and self._trl_computes_old_logps()
            and not self.mask_truncated_completions
        )
        self._old_logps = {} if capture else None
        self._advantages = self._ranking_logps = None
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._old_logps = None
        if self.model.training and self._advantages is not None:
            local = len(output["advantages"])
            rank = self.accelerator.process_index
            output["advantages"] = self._advantages[rank * local : (rank + 1) * local].to(output["advantages"].device)
        self._scoring_time += time.perf_counter() - start
        return output

    def training_step(self, model, inputs, num_items_in_batch):
        """With the dynamic update, one optimizer step = ``gradient_accumulation_steps`` calls: the first
        decides what the step trains on (sampling the next prompts when no update is under way); a held
        step returns at once, so neither TRL nor transformers runs anything for it."""
        if self.args.dynamic_update:
            if self._step % self.args.gradient_accumulation_steps == 0:
                model.train()  # sampling happens here, before transformers' training_step would set it
                self._start_step(inputs)
            if self._slot is None:
                self._step += 1  # TRL's micro-step count, which its own training_step would advance
                return torch.zeros((), device=self.args.device)
            self._micro = self._slot[self._step % self.args.gradient_accumulation_steps]
        start, scoring = time.perf_counter(), self._scoring_time
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._update_time += time.perf_counter() - start - (self._scoring_time - scoring)
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["time/update"].append(self._update_time)
            self._update_time = 0.0
        return loss

    def _prepare_inputs(self, generation_batch):
        if self._micro is None:  # TRL's own schedule (evaluation, or dynamic_update off)
            return super()._prepare_inputs(generation_batch)
        device = self.accelerator.device
        micro, self._micro = self._micro, None
        return {k: v.to(device) for k, v in micro.items()}

    def _start_step(self, inputs: list[dict[str, Any]]) -> None:
        """Pick what this optimizer step trains on: the next step of the update under way, else sample
        queued prompts (one generation batch at a time, all from the current policy) until the buffer
        fills; with nothing to train on, the step is held.

        TRL's dataloader hands the same generation batch to ``steps_per_generation x num_iterations``
        micro-steps in a row; each new one joins the queue. An update can take more optimizer steps than
        that (the reference: ceil(B / 256) per epoch for B up to 767); the prompts that arrive meanwhile
        wait, and are sampled once it is over, so every sample is trained on by the policy that made it.
        """
        micro_step = self.state.global_step * self.args.gradient_accumulation_steps  # as the dataloader counts
        if micro_step % (self.args.steps_per_generation * self.num_iterations) == 0:
            self._pending.append(inputs)
        while not self._plan and self._pending:
            self._collect(self._pending.pop(0))
        self._slot = self._plan.pop(0) if self._plan else None
        self._hold = self._slot is None

    def _collect(self, inputs: list[dict[str, Any]]) -> None:
        """Sample and score one generation batch; keep the rows of groups with signal; plan the update
        once ``dynamic_update_size`` of them (over all processes) are in.

        The reference collects generation batches, minus groups whose proofs all pass or all fail,
        until ``train_batch_size`` samples are in, and then updates on all of them. No optimizer step
        happens while the buffer fills, so every buffered sample is still on-policy and its old/ref
        log-probs and advantages, computed when it was sampled, remain valid.
        """
        output = self._generate_and_score_completions(inputs)
        unknown = sorted(
            k for k, v in output.items() if k not in ROW_KEYS and k != "num_items_in_batch" and v is not None
        )
        if unknown:
            raise ValueError(f"dynamic_update cannot buffer {unknown} (multimodal inputs); set dynamic_update: false")
        if output.get("old_per_token_logps") is None:  # needed from the update's second optimizer step on
            output["old_per_token_logps"] = self._sampling_logps(output)
        local = len(output["advantages"])
        rank = self.accelerator.process_index
        keep = self._row_signal[rank * local : (rank + 1) * local]
        self._buffer.append(select_rows(output, keep.nonzero().squeeze(-1)))
        self._buffer_size += int(self._row_signal.sum().item())
        metrics = self._metrics["train"]
        metrics["dynamic/buffer_size"].append(float(self._buffer_size))
        full = self._buffer_size >= self.args.dynamic_update_size
        metrics["dynamic/update"].append(1.0 if full else 0.0)
        if full:
            self._plan = self._plan_update()
            self._buffer, self._buffer_size = [], 0

    def _plan_update(self) -> list[list[Rows]]:
        """Every process's buffered rows, gathered in the order one process would hold them (by
        generation batch, then by process), cut into the reference's optimizer steps for every epoch."""
        processes = self.accelerator.num_processes
        parts = gather_object([self._buffer])  # one list of parts per process
        rows = concat_rows([p[b] for b in range(len(parts[0])) for p in parts], self._tokenizer.pad_token_id)
        ga = self.args.gradient_accumulation_steps
        step_rows = self.args.per_device_train_batch_size * processes * ga
        # TRL's token-level losses (dapo) divide by num_items_in_batch / processes x accumulation / steps_per_generation
        # (GRPOTrainer._compute_loss): scaled so, each optimizer step is the mean over its own loss tokens.
        steps = plan_update(
            rows,
            step_rows,
            processes,
            ga,
            self.accelerator.process_index,
            items_scale=self.args.steps_per_generation / ga,
        )
        logger.info(
            "dynamic update: %d samples with signal, %d optimizer steps of up to %d samples x %d epochs",
            len(rows["advantages"]),
            len(steps),
            step_rows,
            self.num_iterations,
        )
        return [step for _ in range(self.num_iterations) for step in steps]

    def _sampling_logps(self, output: dict[str, Any]) -> torch.Tensor:
        """(B, C) the policy's log-probs of the batch's completions, now, before any update: the ranking's
        forward pass when it made one, else a new one."""
        completion_mask = output["completion_mask"]
        if self._ranking_logps is not None and self._ranking_logps["logps"].shape == completion_mask.shape:
            return self._ranking_logps["logps"]
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], completion_mask], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model,
                input_ids,
                attention_mask,
                completion_mask.size(1),
                batch_size=self.args.per_device_train_batch_size,
            )
        return logps

    # ---- checkpoints: the dynamic update's state travels with the RNG state --------------------------

    def _state_file(self, checkpoint: str | Path) -> Path:
        return Path(checkpoint) / f"dynamic_buffer_{self.accelerator.process_index}.pt"

    def _save_checkpoint(self, model, trial):
        # Ours first: transformers writes trainer_state.json last, so a checkpoint that has it is complete.
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        save_resume_state(self, folder)
        if self.args.dynamic_update:
            torch.save(
                {
                    "rows": self._buffer,
                    "size": self._buffer_size,
                    "pending": self._pending,
                    "plan": self._plan,
                    "processes": self.accelerator.num_processes,
                },
                self._state_file(folder),
            )
        super()._save_checkpoint(model, trial)

    def _load_rng_state(self, checkpoint):
        """Called once when training resumes from ``checkpoint``: restore the RNG state, TRL's generation
        buffer, and the dynamic update's state (rows with signal, prompts not sampled yet, optimizer
        steps not taken); cut the solved proofs back to the checkpoint."""
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        load_resume_state(self, checkpoint)
        if self.solved is not None:
            self.solved.truncate_from(self.state.global_step)
            self._solved_names = set(self.solved.names)
        path = self._state_file(checkpoint)
        if not (self.args.dynamic_update and path.is_file()):
            return
        state = torch.load(path, map_location="cpu")
        if state.get("processes", 1) != self.accelerator.num_processes:
            raise ValueError(
                f"{path}: saved by {state.get('processes', 1)} processes, resumed with "
                f"{self.accelerator.num_processes}; resume with the same number of processes"
            )
        self._buffer, self._buffer_size = state["rows"], state["size"]
        self._pending, self._plan = state.get("pending", []), state.get("plan", [])
        logger.info(
            "resumed the dynamic update: %d samples with signal, %d prompt batches to sample, "
            "%d optimizer steps to take",
            self._buffer_size,
            len(self._pending),
            len(self._plan),
        )

    def _get_train_sampler(self, dataset=None):
        """TRL's sampler, made to give every epoch the same order in a resumed run (prover.rl.resume_state)."""
        sampler = super()._get_train_sampler(dataset)
        return ReplayRepeatSampler(
            sampler.data_source,
            sampler.mini_repeat_count,
            sampler.batch_size,
            sampler.repeat_count,
            sampler.shuffle,
            sampler.seed,
        )

    def create_model_card(self, *args, **kwargs):
        """TRL writes a generic card at every checkpoint; prover.rl.model_card writes the run's own at the end."""

    # Running counts are logged as their latest value, per-batch counts as their sum since the last log,
    # not as TRL's mean over the logging window (which made solved_total 37.4).
    _LATEST = ("solved_total", "dynamic/buffer_size")
    _SUMMED = ("verifier/checked",)

    def log(self, logs, start_time=None):
        for metrics in self._metrics.values():
            for key in self._LATEST:
                if metrics.get(key):
                    metrics[key] = metrics[key][-1:]
            for key in self._SUMMED:
                if metrics.get(key):
                    metrics[key] = [sum(metrics[key])]
        super().log(logs, start_time)

    # ---- the update -------------------------------------------------------------------------------

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        # None under DeepSpeed (the config refuses a threshold there), whose engine has no norm before its first step
        threshold = self.args.grad_skip_threshold
        norm = float(grad_norm) if threshold is not None else math.nan
        # the reference steps only below the threshold: a norm of exactly 20 is skipped
        too_large = threshold is not None and not (math.isfinite(norm) and norm < threshold)
        if too_large and not self._hold:
            logger.warning(
                "step %d: gradient norm %.3g >= %g, optimizer step skipped", self.state.global_step, norm, threshold
            )
        if self._hold or too_large:
            for p in model.parameters():
                p.grad = None
        self._metrics["train"]["grad_skipped"].append(float(too_large and not self._hold))
        return grad_norm
