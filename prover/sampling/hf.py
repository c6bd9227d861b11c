"""The transformers backend: ``model.generate`` in batches, on CPU or GPU, seeded.

Log-probs are those of the sampling distribution ("processed", as vLLM's
``logprobs_mode="processed_logprobs"``): log-softmax of the logits after temperature and top-p,
so a token's log-prob is the log of the probability it was actually drawn with. At temperature 0
(greedy) no processing applies and they are the model's raw log-probs, as in vLLM.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.sampling.common import check_params, encode_prompts
from prover.sampling.config import SamplerConfig


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, dtype) if dtype != "float" else torch.float32
    except AttributeError:
        raise ValueError(f"sampler.dtype: unknown torch dtype {dtype!r}") from None


def sampling_processors(temperature: float, top_p: float) -> LogitsProcessorList:
    """Temperature then top-p, the order vLLM applies them; nothing when greedy."""
    processors = LogitsProcessorList()
    if temperature > 0 and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if temperature > 0 and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return processors


class _SampledTokenLogprobs(LogitsProcessor):
    """Records the log-prob of each sampled token under the processed scores.

    Runs last in the processor list. ``generate`` shows a processor the token sampled at the
    previous step, so each call gathers that token from the previous step's log-softmax; only one
    step of (batch, vocab) log-probs is held, where ``output_scores`` would keep all of them
    (2048 steps x 64 rows x 150k vocab x 4 bytes = 78 GB).
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:
            self.steps.append(self._last.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def collect(self, generated: torch.Tensor) -> torch.Tensor:
        """(rows, steps) log-probs of ``generated`` (rows, steps), the tokens ``generate`` returned."""
        if self._last is not None:
            self.steps.append(self._last.gather(-1, generated[:, -1:]).squeeze(-1))
            self._last = None
        return torch.stack(self.steps, dim=1)


class HFSampler(Sampler):
    """Samples with transformers. ``batch_size`` sequences (prompts x n) are generated at once."""

    def __init__(self, config: SamplerConfig):
        if not config.model:
            raise ValueError("sampler.model is not set: give a local model path or a hub id")
        self.config = config
        self.device = resolve_device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(config.model, dtype=resolve_dtype(config.dtype, self.device))
        self.model.to(self.device).eval()
        self.eos_ids = self._eos_ids()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        # Sample exactly with the parameters we are given: drop the model's own sampling defaults
        # (top_k, repetition_penalty, ...), as the vLLM backend does with generation_config="vllm".
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.eos_ids, pad_token_id=pad
        )

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        if not ids:
            raise ValueError(f"{self.config.model}: neither the tokenizer nor the generation config names an EOS token")
        return ids

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        check_params(params)
        per_batch = max(1, self.config.batch_size // params.n)
        starts = range(0, len(prompts), per_batch)
        out: list[list[Completion]] = []
        for start in tqdm(starts, desc="sampling (hf)", unit="batch", disable=len(starts) < 2):
            # Each batch has its own seed so that a batch's samples do not depend on the ones before.
            seed = None if params.seed is None else params.seed + start
            out += self._generate_batch(prompts[start : start + per_batch], params, seed)
        return out

    def _pad_left(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, ids))
        pad = self.model.generation_config.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        return input_ids, mask

    def _generate_batch(self, prompts: list[str], params: SamplingParams, seed: int | None) -> list[list[Completion]]:
        input_ids, mask = self._pad_left(encode_prompts(self.tokenizer, prompts))
        sample = params.temperature > 0
        rows_per_prompt = params.n if sample else 1  # greedy samples are n copies of one (as in vLLM)
        recorder = _SampledTokenLogprobs()
        processors = sampling_processors(params.temperature, params.top_p)
        processors.append(recorder)
        gen_config = GenerationConfig(
            do_sample=sample,
            max_new_tokens=params.max_tokens,
            num_return_sequences=rows_per_prompt,
            # temperature and top-p are in `processors`, ahead of the recorder; generate's own
            # warpers would run after every custom processor, so they are switched off here.
            **({"temperature": 1.0, "top_p": 1.0, "top_k": 0} if sample else {}),
            stop_strings=list(params.stop) or None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.model.generation_config.pad_token_id,
        )
        devices = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=gen_config,
                logits_processor=processors,
                tokenizer=self.tokenizer if params.stop else None,
            )
        generated = sequences[:, input_ids.shape[1] :]
        logprobs = recorder.collect(generated).cpu()
        generated = generated.cpu()
        rows = [
            self._completion(generated[i].tolist(), logprobs[i].tolist(), params) for i in range(generated.shape[0])
        ]
        if not sample:
            return [[dataclasses.replace(row) for _ in range(params.n)] for row in rows]
        return [rows[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _completion(self, ids: list[int], logprobs: list[float], params: SamplingParams) -> Completion:
        """Cut a generated row where it finished: after EOS, or after the token that completes the
        first stop string (the text keeps the stop string, as vLLM's include_stop_str_in_output)."""
        length, reason = len(ids), "length"
        for i, tok in enumerate(ids):
            if tok in self.eos_ids:
                length, reason = i + 1, "stop"
                break
        text = self._decode(ids[:length])
        hits = [(text.find(s) + len(s)) for s in params.stop if s in text]
        if hits:
            end = min(hits)
            # the shortest token prefix whose text reaches the end of the stop string
            lo, hi = 1, length
            while lo < hi:
                mid = (lo + hi) // 2
                if len(self._decode(ids[:mid])) >= end:
                    hi = mid
                else:
                    lo = mid + 1
            length, reason, text = lo, "stop", text[:end]
        ids, logprobs = ids[:length], logprobs[:length]
        total = float(sum(logprobs))
        return Completion(
            text=text, token_ids=ids, logprob_sum=total, logprob_mean=total / len(ids), finish_reason=reason
        )

    def token_logprobs(
        self, prompt: str, completions: list[list[int]], temperature: float = 1.0, top_p: float = 1.0
    ) -> list[list[float]]:
        """Teacher-forced log-prob of each completion token under the same processed distribution
        ``generate`` samples from: scores given token ids from any backend."""
        (prompt_ids,) = encode_prompts(self.tokenizer, [prompt])
        processors = sampling_processors(temperature, top_p)
        out = []
        with torch.inference_mode():
            for ids in completions:
                full = torch.tensor([prompt_ids + list(ids)], device=self.device)
                logits = self.model(full).logits[0, len(prompt_ids) - 1 : -1].float()  # (T, V)
                scores = processors(full.expand(len(ids), -1), logits)  # input ids unused by these two
                logp = torch.log_softmax(scores, dim=-1).gather(-1, full[0, len(prompt_ids) :, None]).squeeze(-1)
                out.append(logp.cpu().tolist())
        return out

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
