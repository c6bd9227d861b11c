"""Our GRPO settings: TRL's ``GRPOConfig`` plus the fields of the unlikeliness recipe, and nothing else.

TRL's own fields (num_generations, num_iterations, epsilon, beta, learning_rate, ...) keep TRL's
meaning and defaults; the recipes set the paper's values with their arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from prover.rl.unlikeliness import RANK_KEYS, RANK_SETS


@dataclass
class ProverGRPOConfig(GRPOConfig):
    unlikeliness: bool = field(
        default=True,
        metadata={
            "help": "Multiply each correct proof's 0/1 reward by 1 - beta_rank * r / G, r its likelihood rank "
            "in its group (0 = least likely). Off: plain GRPO."
        },
    )
    beta_rank: float = field(
        default=0.25,
        metadata={
            "help": "Unlikeliness strength in [0, 1]: the most likely of G correct proofs keeps "
            "1 - beta_rank * (G-1)/G of its reward. The paper uses 0.25."
        },
    )
    rank_key: str = field(
        default="mean",
        metadata={
            "help": "What ranks samples: 'mean' per-token log-prob under the sampling policy (the reference) "
            "or the 'sum' (sequence log-prob, which also ranks long proofs as unlikely)."
        },
    )
    rank_set: str = field(
        default="all",
        metadata={
            "help": "Which samples are ranked: 'all' G samples of the group (the reference) or only the "
            "'correct' ones among themselves. The divisor is G either way."
        },
    )
    advantage_epsilon: float = field(
        default=1e-6,
        metadata={
            "help": "Added to a group's reward std before dividing by it (scale_rewards: group): the "
            "reference's 1e-6. TRL 1.16 hard-codes 1e-4, which shrinks the advantage of a group "
            "with one correct proof in 32 (std 0.18) by 6e-4 relative."
        },
    )
    dynamic_update: bool = field(
        default=True,
        metadata={
            "help": "Drop groups whose proofs all pass or all fail, and update only once "
            "dynamic_update_size samples with signal have been collected, in optimizer steps of "
            "per_device_train_batch_size x processes x gradient_accumulation_steps samples (the "
            "reference's dynamic update). Off: TRL's behaviour (such groups stay in the batch "
            "with advantage 0)."
        },
    )
    dynamic_update_size: int | None = field(
        default=None,
        metadata={
            "help": "Samples (completions, over all processes) from groups with signal needed before an "
            "update; None = half the generation batch (the reference: 256 of 16 x 32 = 512)."
        },
    )
    grad_skip_threshold: float | None = field(
        default=20.0,
        metadata={
            "help": "Skip the optimizer step when the gradient norm before clipping reaches this (>=, as the "
            "reference) or is not finite; max_grad_norm still clips the steps taken. None: never skip."
        },
    )

    def __post_init__(self):
        # prover.config turns "none" into None; transformers would then wrap it as [None].
        if self.report_to is None:
            self.report_to = "none"
        super().__post_init__()
        if not 0.0 <= self.beta_rank <= 1.0:
            raise ValueError(f"beta_rank must lie in [0, 1], got {self.beta_rank}")
        if self.rank_key not in RANK_KEYS:
            raise ValueError(f"rank_key must be one of {RANK_KEYS}, got {self.rank_key!r}")
        if self.rank_set not in RANK_SETS:
            raise ValueError(f"rank_set must be one of {RANK_SETS}, got {self.rank_set!r}")
        if not self.advantage_epsilon > 0:
            raise ValueError(f"advantage_epsilon must be positive, got {self.advantage_epsilon}")
        if self.grad_skip_threshold is not None and not self.grad_skip_threshold > 0:
            raise ValueError(f"grad_skip_threshold must be positive or None, got {self.grad_skip_threshold}")
        if self.grad_skip_threshold is not None and self.deepspeed:
            raise ValueError(
                "grad_skip_threshold is not supported with DeepSpeed (it clips inside its own engine); "
                "set grad_skip_threshold: null"
            )
        if self.dynamic_update_size is None:
            self.dynamic_update_size = max(self.num_generations, self.generation_batch_size // 2)
        if not 0 < self.dynamic_update_size <= self.generation_batch_size:
            raise ValueError(
                f"dynamic_update_size ({self.dynamic_update_size}) must lie in [1, generation_batch_size = "
                f"{self.generation_batch_size}]: the buffer is filled one generation batch at a time"
            )
