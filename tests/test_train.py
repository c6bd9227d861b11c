"""GRPO steps on CPU with the tiny model and an exact verifier: the trainer subclass, its reward,
checkpoints and resume, the grad-norm skip, the dynamic update, the rank-bias probe."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import asdict

import pytest
import torch
import transformers
import trl
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from prover.data.problem import Problem
from prover.rl.config import ProverGRPOConfig
from prover.rl.dataset import build_dataset
from prover.rl.rank_bias import (
    RankBiasCallback,
    RankBiasProbe,
    RankBiasResult,
    completion_logprobs,
    plot_uplift,
    plot_uplift_comparison,
)
from prover.rl.rewards import ProofReward
from prover.rl.solved import SolvedProofs
from prover.rl.trainer import UnlikelinessGRPOTrainer
from prover.tasks.base import Task, TaskConfig
from prover.verifier.base import Verifier
from prover.verifier.verdict import Status, Verdict

G = 4


class CountingVerifier(Verifier):
    """Exact and instant: a proof holds when it has at least two letters 'o' (about half of the
    tiny random model's completions do, so groups are mixed). ``errors`` names proofs to fail on."""

    def __init__(self, rule=lambda request: request.proof.count("o") >= 2, errors=()):
        self.rule = rule
        self.errors = set(errors)
        self.checked: list[str] = []

    async def check(self, request):
        self.checked.append(request.proof)
        if request.proof in self.errors:
            return Verdict(Status.ERROR, reason="worker died", check="infra")
        return Verdict(Status.PROVED if self.rule(request) else Status.REJECTED, check="exact")


class WordTask(Task):
    """Prompts from the tiny model's corpus; the proof is the completion up to a closing fence,
    or the whole completion when require_closing_fence is off."""

    name = "words"

    def __init__(self, config: TaskConfig | None = None, verifier: Verifier | None = None):
        self.config = config or TaskConfig(name="words", require_closing_fence=False)
        self.verifier = verifier or CountingVerifier()

    def load_problems(self, dataset=None):
        return [
            Problem(name=f"t{i}", statement=f"theorem t{i} : {i} + 0 = {i} := by", header="import Mathlib")
            for i in range(8)
        ]

    def build_prompt(self, problem):
        return f"{problem.statement}\n"

    def extract_proof(self, completion, problem=None):
        if "```" in completion:
            return completion.split("```")[0]
        return None if self.config.require_closing_fence else completion

    def make_verifier(self, config=None):
        return self.verifier


def make_args(out, **overrides) -> ProverGRPOConfig:
    settings = dict(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        per_device_train_batch_size=8,
        num_generations=G,
        max_completion_length=16,
        num_iterations=2,
        beta=0.1,
        learning_rate=1e-3,
        max_steps=4,
        logging_steps=1,
        save_steps=2,
        seed=0,
        dynamic_update_size=4,
        disable_tqdm=True,
    )
    return ProverGRPOConfig(**(settings | overrides))


def make_trainer(model_dir, out, task=None, **overrides):
    task = task or WordTask()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_dataset(task, task.load_problems(), tokenizer, max_prompt_tokens=512)
    reward = ProofReward(task, task.make_verifier())
    return UnlikelinessGRPOTrainer(
        model=str(model_dir),
        reward_funcs=[reward],
        args=make_args(out, **overrides),
        train_dataset=dataset,
        solved_path=out / "solved_proofs.jsonl",
    )


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """4 optimizer steps (2 generations x 2 PPO epochs) with the unlikeliness reward."""
    out = tmp_path_factory.mktemp("grpo")
    trainer = make_trainer(tiny_model_dir, out)
    before = params(trainer.model)
    trainer.train()
    return trainer, out, before


def test_steps_are_finite_and_change_every_weight(trained):
    trainer, _, before = trained
    losses = logged(trainer, "loss")
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"


def test_metrics_are_logged(trained):
    trainer, _, _ = trained
    keys = set().union(*trainer.state.log_history)
    for key in (
        "pass_rate",
        "zero_signal_frac",
        "solved_total",
        "unlikeliness/factor_mean",
        "time/generate",
        "time/verify",
        "time/rank",
        "time/update",
        "grad_skipped",
        "dynamic/update",
        "kl",
        "rewards/proof/mean",
    ):
        assert key in keys, key
    assert all(0.0 <= x <= 1.0 for x in logged(trainer, "pass_rate"))
    assert any(x > 0 for x in logged(trainer, "pass_rate")), "the exact rule should pass some tiny-model completions"


def test_logged_rewards_are_shaped(trained):
    """The rewards TRL normalised are 0 or 1 - beta_rank * r / G with r a (tie-averaged) rank."""
    trainer, _, _ = trained
    allowed = {0.0} | {1 - 0.25 * (r / 2) / G for r in range(2 * G - 1)}
    rewards = list(trainer._logs["rewards"]["proof"])
    assert rewards and all(any(math.isclose(x, a, abs_tol=1e-6) for a in allowed) for x in rewards), rewards
    assert any(0 < x < 1 for x in rewards), "some correct proof should have been scaled down"


def test_solved_proofs_are_written(trained):
    trainer, out, _ = trained
    lines = [json.loads(x) for x in (out / "solved_proofs.jsonl").read_text().splitlines()]
    assert lines, "some proofs passed, so some must be recorded"
    names = {p.name: p.statement for p in WordTask().load_problems()}
    for rec in lines:
        assert set(rec) == {"name", "statement", "proof", "step"}
        assert names[rec["name"]] == rec["statement"] and rec["proof"].count("o") >= 2
    assert len({(r["name"], r["proof"]) for r in lines}) == len(lines)
    assert logged(trainer, "solved_total")[-1] == len({r["name"] for r in lines})


def test_checkpoints_and_resume_continue_the_step_count(trained, tiny_model_dir):
    trainer, out, _ = trained
    for step in (2, 4):
        ckpt = out / f"checkpoint-{step}"
        assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
        assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
    resumed = make_trainer(tiny_model_dir, out, max_steps=6)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    assert resumed.state.global_step == 6
    new_steps = [h["step"] for h in resumed.state.log_history if "loss" in h and h["step"] > 4]
    assert new_steps == [5, 6]


def test_ranking_keys_are_the_policy_log_probs(trained, tiny_model_dir):
    """The batched, padded ranking forward equals an unpadded forward of each sequence."""
    trainer, _, _ = trained
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [tok(text="theorem t1 : 1 + 0 = 1 := by\n")["input_ids"], tok(text="  norm_num")["input_ids"]]
    completions = [tok(text=" simp [h]")["input_ids"], tok(text=" at *\n  linarith\n```")["input_ids"]]
    trainer._prompt_ids = prompts
    keys, ids = trainer._ranking_keys(completions)
    sums, counts = completion_logprobs(trainer.model, prompts, completions, batch_size=1)
    assert torch.allclose(keys.cpu(), sums / counts, atol=1e-5)
    assert ids[0] != ids[1]


def test_ranking_reuses_trl_old_log_probs(tiny_model_dir, tmp_path, monkeypatch):
    """With num_iterations=2 TRL computes the old log-probs; the ranking keys taken from that pass
    equal the ones a separate forward pass gives."""
    checks = []
    original = UnlikelinessGRPOTrainer._ranking_keys

    def checked(self, completion_ids_list):
        reused = original(self, completion_ids_list)
        captured, self._old_logps = self._old_logps, None
        fresh = original(self, completion_ids_list)
        self._old_logps = captured
        checks.append(
            (
                captured is not None and "logps" in captured,
                torch.allclose(reused[0], fresh[0], atol=1e-5),
                torch.equal(reused[1], fresh[1]),
            )
        )
        return reused

    monkeypatch.setattr(UnlikelinessGRPOTrainer, "_ranking_keys", checked)
    make_trainer(tiny_model_dir, tmp_path, max_steps=2, save_steps=10).train()
    assert checks == [(True, True, True)]


def test_plain_grpo_keeps_01_rewards(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, tmp_path, unlikeliness=False, max_steps=2, save_steps=10, dynamic_update=False
    )
    trainer.train()
    assert set(trainer._logs["rewards"]["proof"]) <= {0.0, 1.0}
    keys = set().union(*trainer.state.log_history)
    assert "time/rank" not in keys and "unlikeliness/factor_mean" not in keys and "dynamic/update" not in keys


def test_grad_norm_skip_leaves_weights_alone(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, tmp_path, grad_skip_threshold=1e-12, max_steps=2, save_steps=10, dynamic_update=False
    )
    before = params(trainer.model)
    trainer.train()
    assert logged(trainer, "grad_skipped") == [1.0, 1.0]
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_dynamic_update_holds_without_signal(tiny_model_dir, tmp_path):
    """All proofs fail: every group is zero-signal, the buffer never fills, no step changes the weights."""
    task = WordTask(verifier=CountingVerifier(rule=lambda request: False))
    trainer = make_trainer(tiny_model_dir, tmp_path, task=task, max_steps=2, save_steps=10)
    before = params(trainer.model)
    trainer.train()
    assert logged(trainer, "dynamic/update") == [0.0]
    assert logged(trainer, "zero_signal_frac") == [1.0]
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_dynamic_update_concatenates_buffered_batches(tiny_model_dir, tmp_path):
    """Needing a whole generation batch of signal while half the theorems (t0-t3) are never proved,
    some batches are held and a later one trains on the rows of several, padded to a common length."""
    rule = lambda request: int(request.name[1:]) >= 4 and request.proof.count("o") >= 2  # noqa: E731
    task = WordTask(verifier=CountingVerifier(rule=rule))
    trainer = make_trainer(tiny_model_dir, tmp_path, task=task, dynamic_update_size=8, max_steps=8, save_steps=2)
    trainer.train()
    updates = logged(trainer, "dynamic/update")
    assert any(a == 0.0 and b == 1.0 for a, b in zip(updates, updates[1:])), updates  # held, then merged
    assert all(math.isfinite(x) for x in logged(trainer, "loss"))

    # A checkpoint taken while rows wait in the buffer keeps them; resuming there restores them.
    saved = {step: torch.load(tmp_path / f"checkpoint-{step}" / "dynamic_buffer_0.pt") for step in (2, 4, 6, 8)}
    step = next(step for step, state in saved.items() if state["size"] > 0)
    resumed = make_trainer(tiny_model_dir, tmp_path, task=task, dynamic_update_size=8, max_steps=8, save_steps=2)
    resumed._load_rng_state(str(tmp_path / f"checkpoint-{step}"))
    assert resumed._buffer_size == saved[step]["size"] > 0
    assert all(torch.equal(a[k], b[k]) for a, b in zip(resumed._buffer, saved[step]["rows"]) for k in a)


# ---- resuming repeats the uninterrupted run ----


class Interrupt(Exception):
    """Stands for Ctrl-C inside a test (a real KeyboardInterrupt would stop pytest itself)."""


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupt


@pytest.mark.parametrize(
    "max_steps, save_steps, stop_at",
    [
        (
            20,
            8,
            11,
        ),  # 8 steps per epoch: the checkpoint at step 8 resumes into epoch 1 (TRL's sampler replayed epoch 0)
        (12, 3, 5),  # num_iterations 2: checkpoint 3 sits inside a generation batch's 2 steps (TRL's buffer was lost)
    ],
)
def test_resumed_run_repeats_the_uninterrupted_one(tiny_model_dir, tmp_path, max_steps, save_steps, stop_at):
    settings = dict(max_steps=max_steps, save_steps=save_steps, num_iterations=2)
    whole = make_trainer(tiny_model_dir, tmp_path / "whole", **settings)
    whole.train()
    cut = make_trainer(tiny_model_dir, tmp_path / "cut", **settings)
    cut.add_callback(StopAt(stop_at))
    with pytest.raises(Interrupt):
        cut.train()
    resumed = make_trainer(tiny_model_dir, tmp_path / "cut", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / f"checkpoint-{save_steps * (stop_at // save_steps)}"))
    assert resumed.state.global_step == max_steps
    weights = params(whole.model)
    assert all(torch.equal(p, weights[n]) for n, p in resumed.model.named_parameters())
    history = lambda t: [(h["step"], h["loss"], h.get("pass_rate")) for h in t.state.log_history if "loss" in h]  # noqa: E731
    assert history(resumed)[-3:] == history(whole)[-3:]
    # the proofs found after the checkpoint were dropped and found again: the files agree line by line
    assert (tmp_path / "cut" / "solved_proofs.jsonl").read_text() == (
        tmp_path / "whole" / "solved_proofs.jsonl"
    ).read_text()


def test_replay_sampler_gives_each_epoch_the_uninterrupted_order():
    from trl.trainer.utils import RepeatSampler

    from prover.rl.resume_state import ReplayRepeatSampler

    data = list(range(10))
    trl_sampler = RepeatSampler(data, mini_repeat_count=2, batch_size=5, seed=3)
    uninterrupted = [list(trl_sampler) for _ in range(3)]  # TRL's: one generator, epoch after epoch
    fresh = ReplayRepeatSampler(data, mini_repeat_count=2, batch_size=5, seed=3)  # a resumed run's new sampler
    fresh.set_epoch(2)
    assert list(fresh) == uninterrupted[2]
    assert list(RepeatSampler(data, mini_repeat_count=2, batch_size=5, seed=3)) != uninterrupted[2]  # what TRL did


def test_counts_are_logged_as_counts(tiny_model_dir, tmp_path):
    """solved_total is a running count: a log over 2 generation batches shows the count, not their mean."""
    trainer = make_trainer(tiny_model_dir, tmp_path, max_steps=4, logging_steps=4, save_steps=10)
    trainer.train()
    solved = {json.loads(line)["name"] for line in (tmp_path / "solved_proofs.jsonl").read_text().splitlines()}
    assert logged(trainer, "solved_total") == [float(len(solved))]
    checked = logged(trainer, "verifier/checked")
    assert checked and all(float(c).is_integer() for c in checked)


def test_trl_model_card_is_not_written(trained):
    _, out, _ = trained
    assert not (out / "README.md").exists()  # TRL's generic card; prover.rl.model_card writes the run's own


# ---- the private methods we override or call: an upgrade of TRL/transformers must fail here ----


def _names(fn):
    return list(inspect.signature(fn).parameters)


def test_pinned_private_signatures():
    assert trl.__version__ == "1.16.0", "prover.rl overrides private GRPOTrainer methods: re-check them, then this pin"
    assert _names(trl.GRPOTrainer._generate) == ["self", "prompts"]
    assert _names(trl.GRPOTrainer._calculate_rewards) == [
        "self",
        "inputs",
        "prompts",
        "completions",
        "completion_ids_list",
    ]
    assert _names(trl.GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    assert _names(trl.GRPOTrainer._get_per_token_logps_and_entropies)[:6] == [
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
    ]
    assert _names(trl.GRPOTrainer.training_step) == ["self", "model", "inputs", "num_items_in_batch"]
    assert _names(transformers.Trainer._get_grad_norm) == ["self", "model", "grad_norm"]
    assert _names(transformers.Trainer._save_checkpoint) == ["self", "model", "trial"]
    assert _names(transformers.Trainer._load_rng_state) == ["self", "checkpoint"]
    assert _names(trl.GRPOTrainer._get_train_sampler) == ["self", "dataset"]
    assert _names(trl.trainer.utils.RepeatSampler.__init__) == [
        "self",
        "data_source",
        "mini_repeat_count",
        "batch_size",
        "repeat_count",
        "shuffle",
        "seed",
    ]
    assert "torch.randperm(self.num_samples, generator=self.generator)" in inspect.getsource(
        trl.trainer.utils.RepeatSampler.__iter__
    )
    # what prover.rl.resume_state saves: TRL's generation buffer and the step counter that indexes it
    prepare = inspect.getsource(trl.GRPOTrainer._prepare_inputs)
    assert "if self._step % generate_every == 0 or self._buffered_inputs is None:" in prepare
    assert "inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]" in prepare
    # TRL averages every metric over the logging window in log(), then clears them
    log = inspect.getsource(trl.GRPOTrainer.log)
    assert "for key, val in self._metrics[mode].items():" in log and "self._metrics[mode].clear()" in log
    # the condition under which TRL computes old log-probs, which _trl_computes_old_logps repeats
    source = inspect.getsource(trl.GRPOTrainer._generate_and_score_completions)
    assert "if self.args.gradient_accumulation_steps % generate_every != 0 or (" in source
    assert "self.use_vllm and self.vllm_importance_sampling_correction" in source
    assert source.index("old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(") < source.index(
        "ref_per_token_logps, _, _ = self._get_per_token_logps_and_entropies("
    )
    # the output keys the dynamic update pads (a new per-row key would be refused, not dropped)
    assert '"num_items_in_batch": num_items_in_batch' in source and 'output["old_per_token_logps"]' in source


# ---- the reward function, the dataset, the solved-proof file, the config ----


def test_reward_checks_each_distinct_proof_once_and_caches():
    verifier = CountingVerifier(errors={"broken o o"})
    reward = ProofReward(WordTask(verifier=verifier), verifier)
    probs = WordTask().load_problems()[:1] * 5
    texts = ["foo boo", "foo boo", "nothing", "broken o o", "no fence ```"]
    cols = dict(name=[p.name for p in probs], statement=[p.statement for p in probs], header=[p.header for p in probs])
    seen = {}
    rewards = reward(prompts=[""] * 5, completions=texts, log_metric=lambda k, v: seen.setdefault(k, v), **cols)
    # case by case: proved, duplicate (one check), wrong, verifier error (None), proof before the fence
    assert rewards == [1.0, 1.0, 0.0, None, 0.0]
    assert sorted(verifier.checked) == sorted(["foo boo", "nothing", "broken o o", "no fence "])
    assert "time/verify" in seen and seen["verifier/error_frac"] == pytest.approx(0.2)
    verifier.checked.clear()
    assert reward(prompts=[""] * 5, completions=texts, **cols) == [1.0, 1.0, 0.0, None, 0.0]
    assert verifier.checked == ["broken o o"], "verdicts are cached, errors are not"
    assert [r["proof"] for r in reward.pop_proved()] == ["foo boo"] * 4 and reward.pop_proved() == []


def test_unclosed_fence_is_wrong_without_a_check():
    verifier = CountingVerifier()
    task = WordTask(config=TaskConfig(name="words", require_closing_fence=True), verifier=verifier)
    p = task.load_problems()[0]
    assert ProofReward(task, verifier).score([p, p], ["foo boo", "foo boo\n```"]) == [0.0, 1.0]
    assert verifier.checked == ["foo boo\n"]


def test_dataset_leaves_out_long_prompts(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = WordTask()
    problems = task.load_problems()[:2] + [
        Problem(name="long", statement="theorem long : " + "x + " * 300 + "x = x := by")
    ]
    ds = build_dataset(task, problems, tok, max_prompt_tokens=64)
    assert ds["name"] == ["t0", "t1"] and set(ds.column_names) == {"prompt", "name", "statement", "header"}
    with pytest.raises(ValueError, match="no training problems"):
        build_dataset(task, problems[2:], tok, max_prompt_tokens=64)


def test_solved_proofs_are_cut_back_to_a_checkpoint(tmp_path):
    path = tmp_path / "solved.jsonl"
    solved = SolvedProofs(path)
    for step, proof in ((0, "p"), (3, "q"), (4, "r"), (9, "s")):
        solved.add([{"name": f"t{step}", "statement": "s", "proof": proof}], step=step)
    assert solved.truncate_from(4) == 2  # found once 4 steps were done: after checkpoint-4
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [0, 3]
    assert solved.names == {"t0", "t3"} and SolvedProofs(path).names == {"t0", "t3"}
    assert solved.add([{"name": "t4", "statement": "s", "proof": "r"}], step=4) == 1  # found again, written once


def test_solved_proofs_survive_a_restart(tmp_path):
    path = tmp_path / "solved.jsonl"
    rec = {"name": "a", "statement": "s", "proof": "p"}
    assert SolvedProofs(path).add([rec, rec], step=3) == 1
    again = SolvedProofs(path)
    assert again.names == {"a"} and again.add([rec, {**rec, "proof": "q"}], step=7) == 1
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [3, 7]
    with path.open("a") as f:
        f.write('{"name": "b", "statem')  # Ctrl-C in the middle of a write
    assert SolvedProofs(path).names == {"a"} and path.read_text().endswith("\n")
    path.write_text("not json\n")  # a whole line that is not a record is an error
    with pytest.raises(ValueError, match="solved.jsonl:1"):
        SolvedProofs(path)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(beta_rank=1.5), "beta_rank"),
        (dict(rank_key="median"), "rank_key"),
        (dict(rank_set="wrong"), "rank_set"),
        (dict(grad_skip_threshold=-1.0), "grad_skip_threshold"),
        (dict(dynamic_update_size=64), "dynamic_update_size"),
    ],
)
def test_config_errors_name_the_field(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        make_args(tmp_path, **bad)


def test_config_defaults_follow_the_reference(tmp_path):
    args = make_args(tmp_path, dynamic_update_size=None, per_device_train_batch_size=16)
    assert (args.unlikeliness, args.beta_rank, args.rank_key, args.rank_set, args.grad_skip_threshold) == (
        True,
        0.25,
        "mean",
        "all",
        20.0,
    )
    assert args.dynamic_update_size == 8  # half the generation batch of 16


# ---- the rank-bias diagnostic ----


def test_rank_bias_probe_measures_uplift(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    task = WordTask()
    problems = task.load_problems()[:3]
    reward = ProofReward(task, task.make_verifier())
    probe = RankBiasProbe.sample(
        model,
        tok,
        [task.build_prompt(p) for p in problems],
        problems,
        reward.score,
        group_size=8,
        max_new_tokens=12,
        seed=0,
    )
    assert probe.samples and all(isinstance(s["rank"], int) and 0 <= s["rank"] <= 7 for s in probe.samples)
    for name in {s["problem"] for s in probe.samples}:  # one position per sample, copies of a proof included
        ranks = [s["rank"] for s in probe.samples if s["problem"] == name]
        assert len(set(ranks)) == len(ranks)
    unchanged = probe.uplift(model, step=0)
    assert unchanged.overall == 0.0 and sum(unchanged.counts) == len(probe.samples)
    with torch.no_grad():  # zero logits: the uniform distribution, each token costs log(V)
        model.lm_head.weight.zero_()
    flat = probe.uplift(model, step=1)  # a uniform distribution: each log-prob is -len * log(V)
    risen = [s["initial_logp"] < -len(s["completion_ids"]) * math.log(model.config.vocab_size) for s in probe.samples]
    assert flat.overall == pytest.approx(sum(risen) / len(risen))
    probe.save(tmp_path / "probe.json")
    assert RankBiasProbe.load(tmp_path / "probe.json").uplift(model, 1) == flat
    png = plot_uplift([unchanged, flat], tmp_path / "rank_bias.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rank_bias_bins():
    res = RankBiasResult(step=0, group_size=4, rates=[1.0, 0.0, None, 0.5], counts=[2, 2, 0, 4])
    assert res.binned(2) == [0.5, 0.5] and res.binned(4) == [1.0, 0.0, None, 0.5]
    assert res.overall == pytest.approx((2 + 0 + 2) / 8)


def test_rank_bias_intervals_resample_problems(tmp_path):
    """Bin 0: every problem's proofs rose (no spread). Bin 1: problem 0's all rose, problem 1's none: the
    rate is 1/2 and resampling problems spans nearly [0, 1]; resampling single proofs would not."""
    outcomes = [[0, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1], [0, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 0]]
    res = RankBiasResult(step=5, group_size=2, rates=[1.0, 0.5], counts=[2, 6], outcomes=outcomes)
    (m0, lo0, hi0), (m1, lo1, hi1) = res.binned_intervals(bins=2)
    assert (m0, lo0, hi0) == (1.0, 1.0, 1.0)
    assert m1 == 0.5 and lo1 == 0.0 and hi1 == 1.0
    assert RankBiasResult(**json.loads(json.dumps(asdict(res)))) == res
    png = plot_uplift_comparison({"GRPO": res, "GRPO + unlikeliness": res}, tmp_path / "rb.png", bins=2)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="older version"):
        RankBiasResult(step=0, group_size=2, rates=[1.0, None], counts=[1, 0]).binned_intervals()


def test_rank_bias_lines_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    callback = RankBiasCallback(tmp_path, build=None, every=2)
    RankBiasProbe(4, []).save(callback.probe_path)
    callback.results_path.write_text(
        "".join(
            json.dumps(asdict(RankBiasResult(step=s, group_size=4, rates=[None] * 4, counts=[0] * 4))) + "\n"
            for s in (2, 4, 6)
        )
    )
    state = transformers.TrainerState(global_step=4)
    callback.on_train_begin(None, state, None)  # resuming from checkpoint-4
    assert [r.step for r in callback.history()] == [2, 4]


# ---- GPU: TRL's vLLM colocate path ----


@pytest.mark.gpu
@pytest.mark.vllm
def test_vllm_colocate_step(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        use_cpu=False,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.2,
        max_steps=2,
        save_steps=10,
    )
    before = params(trainer.model)
    trainer.train()
    assert all(math.isfinite(x) for x in logged(trainer, "loss"))
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
