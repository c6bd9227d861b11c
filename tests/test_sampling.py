"""Samplers on the tiny model: shapes, finish reasons, stop strings, seeding, and log-probs that
agree between the transformers and the vLLM backends on the same tokens."""

from __future__ import annotations

import math
import os

import pytest

from prover.sampling import SamplerConfig, SamplingParams, make_sampler, resolve_backend
from prover.sampling.common import check_params, encode_prompts

PROMPTS = [
    "Complete the following Lean 4 code:\n\n```lean4\ntheorem t : 1 = 1 := by\n",
    "theorem lean_workbook (a b : ℝ) : a ^ 2 + b ^ 2 ≥ 2 * a * b := by\n",
    "hello",
]
# A completion cut by max_tokens may end inside a UTF-8 character: HF decodes the stray bytes as
# U+FFFD, vLLM's incremental detokenizer holds them back.
PARTIAL_CHARACTER = "\ufffd"
SAMPLED = SamplingParams(n=3, temperature=0.8, top_p=0.9, max_tokens=12, seed=7)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    sampler = make_sampler(SamplerConfig(backend="hf", model=str(tiny_model_dir), batch_size=4))
    yield sampler
    sampler.close()


def token_ids(outputs):
    return [[c.token_ids for c in completions] for completions in outputs]


def assert_well_formed(outputs, params, tokenizer):
    assert len(outputs) == len(PROMPTS)
    for completions in outputs:
        assert len(completions) == params.n
        for c in completions:
            assert 1 <= len(c.token_ids) <= params.max_tokens
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert len(c.token_ids) == params.max_tokens
            assert c.logprob_sum <= 0 and math.isfinite(c.logprob_sum)
            assert c.logprob_mean == pytest.approx(c.logprob_sum / len(c.token_ids))
            if not params.stop:
                decoded = tokenizer.decode(c.token_ids, skip_special_tokens=True)
                assert c.text in (decoded, decoded.rstrip(PARTIAL_CHARACTER))


def assert_stop_strings_honoured(outputs, stop, tokenizer):
    """A stopped completion ends with its first stop string, at the first token that completes it."""
    finishes = [c.finish_reason for cs in outputs for c in cs]
    assert "stop" in finishes  # the tiny model writes "e" often: the test must exercise stopping
    for c in (c for cs in outputs for c in cs):
        if c.finish_reason == "stop" and c.token_ids[-1] != tokenizer.eos_token_id:
            assert c.text.endswith(stop) and c.text.index(stop) == len(c.text) - len(stop)
            assert stop not in tokenizer.decode(c.token_ids[:-1], skip_special_tokens=True)
        else:  # ran out of tokens, or ended with EOS, before writing the stop string
            assert stop not in c.text


# --- transformers backend --------------------------------------------------------------------


def test_auto_backend_is_hf_without_cuda(hf):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto picks vLLM")
    assert resolve_backend(SamplerConfig()) == "hf"
    assert type(hf).__name__ == "HFSampler"
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        make_sampler(SamplerConfig(backend="tgi", model="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampler.model is not set"):
        make_sampler(SamplerConfig(backend="hf"))


def test_hf_shapes_and_lengths(hf):
    outputs = hf.generate(PROMPTS, SAMPLED)
    assert_well_formed(outputs, SAMPLED, hf.tokenizer)
    assert len({tuple(ids) for ids in token_ids(outputs)[0]}) > 1  # n samples of one prompt differ


def test_hf_same_seed_same_samples(hf):
    first = hf.generate(PROMPTS, SAMPLED)
    again = hf.generate(PROMPTS, SAMPLED)
    other = hf.generate(PROMPTS, SamplingParams(**{**vars(SAMPLED), "seed": 8}))
    assert token_ids(first) == token_ids(again)
    assert [[c.logprob_sum for c in cs] for cs in first] == [[c.logprob_sum for c in cs] for cs in again]
    assert token_ids(first) != token_ids(other)


def test_hf_stop_strings(hf):
    params = SamplingParams(n=4, temperature=1.0, max_tokens=16, seed=1, stop=["e"])
    outputs = hf.generate(PROMPTS, params)
    assert_well_formed(outputs, params, hf.tokenizer)
    assert_stop_strings_honoured(outputs, "e", hf.tokenizer)


def test_hf_eos_ends_a_completion(hf):
    (greedy,) = hf.generate(PROMPTS[:1], SamplingParams(n=1, temperature=0, max_tokens=8))[0]
    eos = greedy.token_ids[3]
    cut = greedy.token_ids.index(eos) + 1
    saved = hf.eos_ids
    hf.eos_ids = [eos]  # pretend the 4th greedy token is EOS
    try:
        (stopped,) = hf.generate(PROMPTS[:1], SamplingParams(n=1, temperature=0, max_tokens=8))[0]
    finally:
        hf.eos_ids = saved
    assert stopped.token_ids == greedy.token_ids[:cut] and stopped.finish_reason == "stop"
    assert greedy.finish_reason == "length"


def test_hf_logprobs_are_those_of_the_sampling_distribution(hf):
    outputs = hf.generate(PROMPTS, SAMPLED)
    for prompt, completions in zip(PROMPTS, outputs):
        ids = [c.token_ids for c in completions]
        processed = hf.token_logprobs(prompt, ids, SAMPLED.temperature, SAMPLED.top_p)
        raw = hf.token_logprobs(prompt, ids, 1.0, 1.0)
        for c, per_token, per_token_raw in zip(completions, processed, raw):
            assert sum(per_token) == pytest.approx(c.logprob_sum, abs=1e-3)
            assert sum(per_token_raw) != pytest.approx(c.logprob_sum, abs=1e-3)  # temperature/top-p applied


def test_hf_greedy_copies_and_raw_logprobs(hf):
    outputs = hf.generate(PROMPTS, SamplingParams(n=2, temperature=0, max_tokens=10))
    for prompt, (a, b) in zip(PROMPTS, outputs):
        assert a.token_ids == b.token_ids
        (raw,) = hf.token_logprobs(prompt, [a.token_ids], 1.0, 1.0)
        assert sum(raw) == pytest.approx(a.logprob_sum, abs=1e-3)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n", 0, "n must be >= 1"),
        ("max_tokens", 0, "max_tokens must be >= 1"),
        ("temperature", -0.1, "temperature must be >= 0"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
        ("stop", [""], "empty string"),
    ],
)
def test_bad_params_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        check_params(SamplingParams(**{field: value}))


def test_prompt_that_starts_with_bos_gets_no_second_one(hf):
    tok = hf.tokenizer
    bos = tok.bos_token_id

    class AddsBos:
        bos_token = tok.bos_token

        def __call__(self, text, add_special_tokens):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            return {"input_ids": ([bos] if add_special_tokens else []) + ids}

    plain, chat = encode_prompts(AddsBos(), ["hi", f"{tok.bos_token}user\nhi"])
    assert plain[0] == bos and plain[1] != bos
    assert chat[0] == bos and chat.count(bos) == 1


# --- vLLM backend, one engine for the module -------------------------------------------------


@pytest.fixture(scope="module")
def vllm_sampler(tiny_model_dir):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sampler = make_sampler(SamplerConfig(backend="vllm", model=str(tiny_model_dir), max_model_len=512))
    yield sampler
    sampler.close()


@pytest.mark.vllm
def test_vllm_shapes_seeds_and_stop_strings(vllm_sampler):
    tokenizer = vllm_sampler.tokenizer
    first = vllm_sampler.generate(PROMPTS, SAMPLED)
    assert_well_formed(first, SAMPLED, tokenizer)
    assert token_ids(first) == token_ids(vllm_sampler.generate(PROMPTS, SAMPLED))
    assert token_ids(first) != token_ids(vllm_sampler.generate(PROMPTS, SamplingParams(**{**vars(SAMPLED), "seed": 8})))
    params = SamplingParams(n=4, temperature=1.0, max_tokens=16, seed=1, stop=["e"])
    stopped = vllm_sampler.generate(PROMPTS, params)
    assert_well_formed(stopped, params, tokenizer)
    assert_stop_strings_honoured(stopped, "e", tokenizer)


@pytest.mark.vllm
def test_vllm_logprobs_agree_with_hf_on_the_same_tokens(vllm_sampler, hf):
    outputs = vllm_sampler.generate(PROMPTS, SAMPLED)
    for prompt, completions in zip(PROMPTS, outputs):
        scored = hf.token_logprobs(prompt, [c.token_ids for c in completions], SAMPLED.temperature, SAMPLED.top_p)
        for c, per_token in zip(completions, scored):
            assert sum(per_token) == pytest.approx(c.logprob_sum, abs=1e-3)


@pytest.mark.vllm
def test_vllm_and_hf_agree_greedily(vllm_sampler, hf):
    params = SamplingParams(n=1, temperature=0, max_tokens=10)
    for (v,), (h,) in zip(vllm_sampler.generate(PROMPTS, params), hf.generate(PROMPTS, params)):
        assert v.token_ids == h.token_ids
        assert v.logprob_sum == pytest.approx(h.logprob_sum, abs=1e-3)
        assert v.text in (h.text, h.text.rstrip(PARTIAL_CHARACTER))
