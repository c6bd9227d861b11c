"""The synthetic task: exact checker, theorem generation and splits, prompts/extraction, tokenizer,
and the cached supervised base model."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random

import pytest

from prover.config import ConfigError
from prover.tasks import TaskConfig, make_task
from prover.tasks.synthetic import SyntheticOptions, SyntheticTask, check_proof
from prover.tasks.synthetic.base_model import build_corpus, cache_key, ensure_base_model
from prover.tasks.synthetic.checker import parse_statement
from prover.tasks.synthetic.generator import OPS, Theorem, apply_op, count_proofs, sample_proof
from prover.tasks.synthetic.tokenizer import build_tokenizer
from prover.verifier.verdict import ProofRequest, Status

T = Theorem(start=5, goal=40, budget=6)

CHECKER_CASES = [
    # (proof, proved, words the reason must contain)
    ("*2 10 *2 20 *2 40", True, []),  # three doublings
    ("+3 8 *3 24 *2 48", False, ["ends at 48"]),  # valid steps, wrong end
    ("*2 10 *2 20 *2 41", False, ["claims 41", "gives 40"]),  # wrong intermediate claim
    ("+1 6 +1 7 +1 8 +1 9 *2 18 *2 36 +3 39", False, ["over budget", "7 steps"]),  # 7 steps > 6
    ("*2 10 *2", False, ["malformed"]),  # an op without its value
    ("*4 20 *2 40", False, ["unknown operation", "*4"]),  # not an allowed op
    ("*2 ten *2 20 *2 40", False, ["not a value"]),  # value is not a number
    ("*3 15 *3 45 *3 135", False, ["above the largest value"]),  # leaves the value range
    ("", False, ["ends at 5"]),  # the empty proof
    ("*2 10 *2 20 *2 40 qed", False, ["malformed"]),  # the end marker belongs to the completion, not the proof
]


@pytest.mark.parametrize("proof,proved,words", CHECKER_CASES)
def test_checker_hand_made_proofs(proof, proved, words):
    verdict = check_proof(T, proof, max_value=99)
    assert verdict.proved is proved, verdict.reason
    assert verdict.status is (Status.PROVED if proved else Status.REJECTED)
    assert verdict.reward() == (1.0 if proved else 0.0)
    for word in words:
        assert word in verdict.reason


def test_verifier_interface_order_and_bad_statement():
    task = SyntheticTask()
    problem = task.parse_statement("start 5 goal 40 steps 6")
    requests = [task.proof_request(problem, p) for p, _, _ in CHECKER_CASES]
    requests.append(ProofRequest(statement="prove 5 = 40", proof="*2 10"))
    with task.make_verifier() as verifier:
        verdicts = verifier.check_batch(requests)
        again = asyncio.run(verifier.check_many(requests))
    assert [v.proved for v in verdicts[:-1]] == [proved for _, proved, _ in CHECKER_CASES]
    assert [v.status for v in again] == [v.status for v in verdicts]
    assert verdicts[-1].status is Status.ERROR and verdicts[-1].reward() is None
    assert "not a synthetic theorem" in verdicts[-1].reason


def test_kind_depends_on_the_budget_only():
    # the same numbers: additive proofs fit in 6 steps, not in 3, where only *2 *2 or *3 +3 +2 ... work
    assert (Theorem(5, 20, 6).kind, Theorem(5, 20, 3).kind) == ("easy", "rare")
    assert count_proofs(Theorem(5, 20, 3))["additive"] == 0 < count_proofs(Theorem(5, 20, 3))["multiplicative"]
    problems = SyntheticTask().load_problems("test")
    easy_gaps = {p.extra["goal"] - p.extra["start"] for p in problems if p.extra["kind"] == "easy"}
    rare_gaps = {p.extra["goal"] - p.extra["start"] for p in problems if p.extra["kind"] == "rare"}
    assert max(rare_gaps) <= max(easy_gaps)  # rare theorems are not told apart by larger numbers


def test_count_proofs_matches_brute_force():
    for theorem in (Theorem(5, 40, 4), Theorem(3, 14, 4), Theorem(20, 30, 4)):
        additive = multiplicative = 0
        for n in range(theorem.budget + 1):
            for seq in itertools.product(OPS, repeat=n):
                value, path = theorem.start, []
                for op in seq:
                    value = apply_op(op, value)
                    path.append(value)
                # a proof stops the first time it reaches the goal (every op increases the value)
                if value == theorem.goal and theorem.goal not in path[:-1] and theorem.goal != theorem.start:
                    if any(op.startswith("*") for op in seq):
                        multiplicative += 1
                    else:
                        additive += 1
        assert count_proofs(theorem) == {"additive": additive, "multiplicative": multiplicative}


@pytest.mark.parametrize(
    "theorem,style",
    [(Theorem(5, 40, 6), "multiplicative"), (Theorem(5, 17, 6), "additive"), (Theorem(5, 17, 6), "multiplicative")],
)
def test_sampled_proofs_are_correct_and_in_style(theorem, style):
    rng = random.Random(0)
    proofs = {" ".join(sample_proof(theorem, style, rng)) for _ in range(200)}
    assert len(proofs) > 5  # many distinct proofs, not one template
    for proof in proofs:
        assert check_proof(theorem, proof, 99).proved, proof
        assert any(op in proof.split() for op in ("*2", "*3")) is (style == "multiplicative")
    with pytest.raises(ValueError, match="no additive proof"):
        sample_proof(Theorem(5, 40, 6), "additive", rng)


def test_generation_reproducible_and_splits_disjoint():
    def names(seed, dataset):
        return [p.name for p in SyntheticTask(TaskConfig(options={"seed": seed})).load_problems(dataset)]

    assert names(0, "train") == names(0, "train") and names(0, "test") == names(0, "test")
    assert names(1, "test") != names(0, "test")
    task = SyntheticTask(
        TaskConfig(options={"test_size": 40, "train_size": 100, "probe_size": 10, "rare_fraction": 0.25})
    )
    train, test, probe = (task.load_problems(d) for d in ("train", "test", "probe"))
    assert (len(train), len(test), len(probe)) == (100, 40, 10)
    assert not {p.statement for p in train} & {p.statement for p in test}
    assert [p.name for p in probe] == [p.name for p in train[:10]]
    for problems, n in ((train, 100), (test, 40)):
        rare = [p for p in problems if p.extra["kind"] == "rare"]
        assert len(rare) == round(0.25 * n)
        assert all(p.extra["additive_proofs"] == 0 < p.extra["multiplicative_proofs"] for p in rare)
        assert all(p.extra["additive_proofs"] > 0 for p in problems if p.extra["kind"] == "easy")
    # the base model's corpus never sees a test theorem
    corpus = {prompt for prompt, _ in build_corpus(task.options)}
    assert not corpus & {task.build_prompt(p) for p in test}


def test_dataset_exclude_limit_and_unknown_dataset():
    task = SyntheticTask(
        TaskConfig(dataset="test", limit=5, options={"test_size": 20, "train_size": 20, "probe_size": 5})
    )
    first = SyntheticTask(TaskConfig(options={"test_size": 20, "train_size": 20, "probe_size": 5})).load_problems(
        "test"
    )
    assert [p.name for p in task.load_problems()] == [p.name for p in first[:5]]
    task.config.exclude = [first[0].name]
    assert first[0].name not in [p.name for p in task.load_problems()]
    with pytest.raises(ValueError, match="unknown dataset 'valid'"):
        task.load_problems("valid")


def test_options_are_validated():
    with pytest.raises(ConfigError, match="unknown key.*'budgte'"):
        SyntheticTask(TaskConfig(options={"budgte": 5}))
    with pytest.raises(ConfigError, match="rare_fraction=1.5"):
        SyntheticTask(TaskConfig(options={"rare_fraction": 1.5}))
    with pytest.raises(ConfigError, match="base_model.*unknown key.*'hidden'"):
        SyntheticTask(TaskConfig(options={"base_model": {"hidden": 64}}))
    assert isinstance(make_task(TaskConfig(name="synthetic")), SyntheticTask)


def test_prompt_and_extraction():
    task = SyntheticTask()
    problem = task.parse_statement("  start 5  goal 40 steps 6 ", name="mine")
    assert (problem.name, problem.statement, problem.extra["kind"]) == ("mine", "start 5 goal 40 steps 6", "rare")
    assert task.build_prompt(problem) == "start 5 goal 40 steps 6 : "
    assert task.extract_proof("*2 10 *2 20 *2 40 qed") == "*2 10 *2 20 *2 40"
    assert task.extract_proof(" *2 10 qed +1 11 qed junk") == "*2 10"  # after the end marker is ignored
    assert task.extract_proof("*2 10 *2 20 *2 40") is None  # no end marker: wrong
    lenient = SyntheticTask(TaskConfig(require_closing_fence=False))
    assert lenient.extract_proof("*2 10 *2 20 *2 40") == "*2 10 *2 20 *2 40"
    for bad in ("start 5 goal 40", "start x goal 40 steps 6", "start 0 goal 4 steps 2"):
        with pytest.raises(ValueError):
            task.parse_statement(bad)
    with pytest.raises(ValueError, match="above max_value=64"):
        task.parse_statement("start 5 goal 400 steps 6")
    assert parse_statement("start 5 goal 40 steps 6") == Theorem(5, 40, 6)


def test_tokenizer_one_token_per_word():
    tok = build_tokenizer(99)
    text = "start 5 goal 40 steps 6 : *2 10 *2 20 +3 23 *3 69 +1 70 +2 72 qed"
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text.split()) and tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
    assert tok("100", add_special_tokens=False).input_ids == [tok.unk_token_id]  # above max_value


TINY = {
    "test_size": 10,
    "train_size": 10,
    "probe_size": 2,
    "base_model": {"examples": 300, "steps": 30, "batch_size": 16, "hidden_size": 32, "layers": 1, "lr": 1e-2},
}


def test_base_model_builds_loads_and_is_cached(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import prover.tasks.synthetic.base_model as base_model

    path = ensure_base_model(TINY, cache_dir=tmp_path, progress=False)
    info = json.loads((path / "synthetic.json").read_text())
    assert path.name == cache_key(
        SyntheticOptions(**{**TINY, "base_model": base_model.BaseModelConfig(**TINY["base_model"])})
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert info["final_loss"] < math.log(len(tok))  # it learned something beyond uniform guessing
    prompt = tok(["start 5 goal 40 steps 6 : "], add_special_tokens=False, return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=14, do_sample=True)
    assert out.shape[1] > prompt.input_ids.shape[1]
    assert torch.equal(out[0, : prompt.input_ids.shape[1]], prompt.input_ids[0])

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(base_model, "train_base_model", no_training)
    assert ensure_base_model(TINY, cache_dir=tmp_path, progress=False) == path
    assert SyntheticTask(TaskConfig(options=TINY)).ensure_base_model(cache_dir=tmp_path, progress=False) == path
    other = {**TINY, "base_model": {**TINY["base_model"], "seed": 1}}
    with pytest.raises(AssertionError, match="cached model"):
        ensure_base_model(other, cache_dir=tmp_path, progress=False)  # other settings, other model
