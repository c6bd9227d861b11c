"""The project's reward path against a transcription of the reference's, on random groups.

The reference is the paper's release, AndreHe02/rewarding-unlikely-release (a veRL fork), as run by its
``examples/lean/grpo.sh`` (``lean.rank_penalty=0.25``, ``lean.penalize_extra_text=True``,
``lean.advantage_threshold=True``). Transcribed here in our own code, from

- ``verl/lean/verifier.py`` ``verify_with_deepseek_verifier``: the checked code is the first match of
  the regex from ```` ```lean4\\n ```` to the next newline + fence in prompt + header + statement +
  completion (no match: not proved); with ``penalize_extra_text`` a completion whose stripped text
  does not end with the fence is not proved either;
- ``verl/trainer/ppo/ray_lean_trainer.py`` ``_generate_and_verify_full_proofs``: reward 1 for a
  proved sample, else 0; a group is kept only when 0 < proved < G (``advantage_threshold``);
  ``_compute_advantages``: the ranking key is the mean log-prob of the response tokens under the
  policy that sampled them, ranks by a double argsort (0 = least likely), the reward times
  1 - rank / G x rank_penalty, then (reward - group mean) / (group std + 1e-6), ``torch.std``
  being Bessel-corrected.

The project's path is the real one: TRL's GRPOTrainer with our subclass samples (generation replaced
by the scripted completions), the Lean task cuts the proofs with ``reject_text_after_fence``, the
reward function sends them to a verifier, the trainer ranks with TRL's own old log-probs, shapes,
drops groups without signal and normalises. Both sides see the same stand-in for Lean.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from test_train import make_args
from transformers import AutoTokenizer

from prover.data.problem import Problem
from prover.rl.dataset import build_dataset
from prover.rl.rank_bias import completion_logprobs
from prover.rl.rewards import ProofReward
from prover.rl.trainer import UnlikelinessGRPOTrainer
from prover.tasks.base import TaskConfig
from prover.tasks.lean import LeanTask
from prover.verifier.base import Verifier
from prover.verifier.verdict import Status, Verdict

ROOT = Path(__file__).resolve().parents[1]
G = 8
GROUPS = 16
HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 0\n\nopen BigOperators Real Nat Topology Rat\n\n"


def lean_accepts(code: str) -> bool:
    """Stand-in for Lean on a whole file: a proof by nlinarith, with no stray fence in the code."""
    return "nlinarith" in code and "```" not in code and code.rstrip().endswith(("]", "nlinarith"))


class StandInLean(Verifier):
    """Judges header + statement + proof with ``lean_accepts``, as the reference's Lean judges its file."""

    async def check(self, request):
        code = request.header + request.statement + request.proof
        return Verdict(Status.PROVED if lean_accepts(code) else Status.REJECTED, check="stand-in")


# ---- the reference, transcribed --------------------------------------------------------------------

REFERENCE_PROMPT = "Complete the following Lean 4 code:\n\n```lean4\n"


def reference_proved(completion: str, header: str, statement: str) -> bool:
    code_file = REFERENCE_PROMPT + header + statement + completion
    match = re.search(r"```lean4\n(.*?)\n```", code_file, re.DOTALL)
    if match is None or not lean_accepts(match.group(1)):
        return False
    return completion.strip().endswith("```")  # penalize_extra_text


def reference_advantages(
    proved: list[bool], mean_logps: list[float], group: int, rank_penalty: float = 0.25, epsilon: float = 1e-6
) -> tuple[list[bool], list[float], list[float]]:
    """(kept, shaped score, advantage) per sample; dropped groups get no score or advantage (None)."""
    kept, shaped_all, advantages = [], [], []
    for g in range(0, len(proved), group):
        scores = torch.tensor([float(p) for p in proved[g : g + group]])
        keep = 0 < scores.sum() < group
        kept += [bool(keep)] * group
        if not keep:
            shaped_all += [None] * group
            advantages += [None] * group
            continue
        ranks = torch.argsort(torch.argsort(torch.tensor(mean_logps[g : g + group]))) / group
        shaped = scores * (1 - ranks * rank_penalty)
        adv = (shaped - shaped.mean()) / (shaped.std() + epsilon)
        shaped_all += shaped.tolist()
        advantages += adv.tolist()
    return kept, shaped_all, advantages


# ---- random groups ---------------------------------------------------------------------------------

GOOD_BODIES = [
    "  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b)]",
    "  nlinarith",
    "  norm_num [h₀]\n  nlinarith [h₀]",
    "  nlinarith [mul_pos h₀ h₁]",
]
BAD_BODIES = ["  linarith [h₀]", "  simp", "  positivity"]
GOOD_ENDINGS = ["\n```", "\n```\n", "\n```  \n", "\n```\n```", "\n```\n\nextra\n```"]
BAD_ENDINGS = ["\n```\nThe proof is complete.", "", "```"]  # text after the fence; unclosed; no fence at a line start


def random_completion(rng: random.Random, serial: int, group: int) -> str:
    """A proof body (a comment keeps the samples of a group distinct), then an ending. Groups 0, 4, ...
    can only fail, groups 1, 5, ... only pass (both dropped: no signal); the others mix everything."""
    kind = group % 4
    bodies = BAD_BODIES if kind == 0 else GOOD_BODIES if kind == 1 else GOOD_BODIES + BAD_BODIES
    endings = GOOD_ENDINGS if kind == 1 else GOOD_ENDINGS + BAD_ENDINGS
    return f"  -- try {serial}\n{rng.choice(bodies)}{rng.choice(endings)}"


def problems() -> list[Problem]:
    return [
        Problem(
            name=f"p{i}",
            statement=f"theorem p{i} (a b : ℝ) (h₀ : 0 < a) (h₁ : 0 < b) :\n    0 ≤ (a - b) ^ 2 + {i} := by\n",
            header=HEADER,
        )
        for i in range(GROUPS)
    ]


def test_rewards_and_advantages_match_the_reference(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = LeanTask(TaskConfig(name="lean", reject_text_after_fence=True))
    dataset = build_dataset(task, problems(), tokenizer, max_prompt_tokens=1024)
    verifier = StandInLean()
    args = make_args(
        tmp_path,
        num_generations=G,
        per_device_train_batch_size=G * GROUPS,
        num_iterations=2,
        max_completion_length=64,
        dynamic_update_size=G,
    )
    trainer = UnlikelinessGRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=[ProofReward(task, verifier)], args=args, train_dataset=dataset
    )

    rng = random.Random(0)
    texts = [random_completion(rng, i, i // G) for i in range(G * GROUPS)]
    ids = [tokenizer(text=t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == texts  # TRL decodes what we meant
    trainer._generate_single_turn = lambda prompt_ids, images, fields, n, **_: (ids, None)
    inputs = [row for row in dataset for _ in range(G)]  # the dataloader's layout: G copies of each prompt
    trainer.model.train()
    output = trainer._generate_and_score_completions(inputs)

    # The reference's side: its own proof cut and fence rule, and the policy's mean token log-prob.
    proved = [reference_proved(t, HEADER, row["statement"]) for t, row in zip(texts, inputs)]
    prompt_ids = [tokenizer(text=row["prompt"])["input_ids"] for row in inputs]
    sums, counts = completion_logprobs(trainer.model, prompt_ids, ids)
    mean_logps = (sums / counts).tolist()
    gaps = [
        abs(a - b)
        for g in range(0, len(ids), G)
        for i, a in enumerate(mean_logps[g : g + G])
        for b in mean_logps[g + i + 1 : g + G]
    ]
    assert min(gaps) > 1e-4, "two samples of a group are nearly tied: the ranks would hang on float noise"
    kept, shaped, advantages = reference_advantages(proved, mean_logps, G)
    assert sum(kept) >= len(kept) // 4 and any(p and not k for p, k in zip(proved, kept)), (
        "kept groups, and dropped ones that all pass"
    )

    # The project's side, same rows: which groups it keeps, their shaped rewards, their advantages.
    assert trainer._row_signal.tolist() == kept
    project_shaped = list(trainer._logs["rewards"]["proof"])
    project_adv = output["advantages"].tolist()
    for i in (i for i, k in enumerate(kept) if k):
        assert project_shaped[i] == pytest.approx(shaped[i], abs=1e-6), i
        assert project_adv[i] == pytest.approx(advantages[i], abs=1e-6), i
    # Where the fence rules differ from the project's default (cut at the first fence, ignore the rest),
    # the reference's wins: some completion the default rule would pass is 0 here.
    lenient = LeanTask(TaskConfig(name="lean"))
    assert any(
        lean_accepts(HEADER + row["statement"] + (lenient.extract_proof(t) or "")) and not p
        for t, row, p in zip(texts, inputs, proved)
    )


# ---- the Lean recipes resolve to the reference's settings ----------------------------------------------

# examples/lean/grpo.sh (and verl/trainer/config/lean_trainer.yaml for what it leaves at the default), as
# settings of ours; docs/training.md's table gives each row with its source and the rows that differ.
REFERENCE_SETTINGS = {
    "max_prompt_tokens": 512,  # data.max_prompt_length
    "task.reject_text_after_fence": True,  # +lean.penalize_extra_text=True
    "verifier.timeout": 300,  # Lean4ServerScheduler(timeout=300)
    "grpo.num_generations": 32,  # lean.num_samples
    "grpo.generation_batch_size": 512,  # lean.problem_batch_size 16 x 32
    "grpo.max_completion_length": 512,  # rollout.response_length
    "grpo.temperature": 1.0,
    "grpo.top_p": 1.0,  # rollout defaults
    "grpo.learning_rate": 1e-6,
    "grpo.lr_scheduler_type": "constant",
    "grpo.weight_decay": 0.01,
    "grpo.adam_beta1": 0.9,
    "grpo.adam_beta2": 0.999,  # AdamW betas in fsdp_workers.py
    "grpo.max_grad_norm": 1.0,
    "grpo.grad_skip_threshold": 20.0,
    "grpo.epsilon": 0.2,  # clip_ratio
    "grpo.beta": 0.1,
    "grpo.use_bias_correction_kl": False,  # use_kl_loss, kl_loss_coef, low_var_kl
    "grpo.vllm_importance_sampling_correction": False,  # no such correction in the reference
    "grpo.entropy_coef": 0.0,  # entropy_coeff=0.0
    "grpo.scale_rewards": "group",
    "grpo.advantage_epsilon": 1e-6,
    # advantage_threshold, trainer.dynamic_update, trainer.train_batch_size
    "grpo.dynamic_update": True,
    "grpo.dynamic_update_size": 256,
    "grpo.seed": 42,  # data.seed
}
UPDATE_ROWS = 256  # ppo_mini_batch_size: samples per optimizer step


@pytest.mark.parametrize(
    "recipe, unlikeliness, epochs",
    [
        # rank_penalty 0.25, ppo_epochs 2; and plain GRPO in 1 epoch
        ("recipes/deepseek-prover-v1.5-sft/grpo-unlikeliness/lean-workbook.yaml", True, 2),
        ("recipes/deepseek-prover-v1.5-sft/grpo/lean-workbook.yaml", False, 1),
    ],
)
def test_lean_recipes_resolve_to_the_reference_settings(recipe, unlikeliness, epochs, capsys, monkeypatch):
    """`python -m prover.train --config <recipe> --print_config` (bf16 off: transformers refuses it without a GPU)."""
    import yaml

    from prover.train import main

    monkeypatch.chdir(ROOT)
    assert main(["--config", recipe, "--grpo.bf16", "false", "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)

    def get(dotted):
        value = resolved
        for part in dotted.split("."):
            value = value[part]
        return value

    assert {k: get(k) for k in REFERENCE_SETTINGS} == REFERENCE_SETTINGS
    grpo = resolved["grpo"]
    assert grpo["per_device_train_batch_size"] * 8 * grpo["gradient_accumulation_steps"] == UPDATE_ROWS  # 8 GPUs
    assert (grpo["unlikeliness"], grpo["num_iterations"]) == (unlikeliness, epochs)
    if unlikeliness:
        assert (grpo["beta_rank"], grpo["rank_key"], grpo["rank_set"]) == (0.25, "mean", "all")
