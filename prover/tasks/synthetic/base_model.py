"""The synthetic task's base model: a tiny Llama trained by supervised learning on skewed proofs,
saved in Hugging Face format and cached so that every later run reuses it.

The corpus is where the skew comes from, as pretraining data is for a real prover: its theorems
are easy ones (by default none is rare), proved the common (additive) way except for a small
share of multiplicative proofs. The base model therefore solves easy theorems at pass@1, and a
rare theorem only when it happens to start a multiplication within its small budget: at large N.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prover.config import to_dict
from prover.tasks.synthetic.generator import END, all_theorems, count_proofs, sample_proof, split_theorems

if TYPE_CHECKING:
    from prover.tasks.synthetic.task import SyntheticOptions

logger = logging.getLogger(__name__)

# Bump when the corpus or training code changes what a cached model would be.
FORMAT_VERSION = 1
DONE = "synthetic.json"  # written last: a directory without it is an interrupted build


@dataclass
class BaseModelConfig:
    seed: int = field(default=0, metadata={"help": "seed of the corpus and of the model's initialisation"})
    examples: int = field(
        default=20000,
        metadata={"help": "(theorem, proof) pairs in the supervised corpus, drawn from theorems outside the test set"},
    )
    rare_theorem_fraction: float = field(
        default=0.0,
        metadata={
            "help": "share of corpus theorems that need a multiplication (the train/test share is task.options.rare_fraction)"
        },
    )
    multiplicative_style_prob: float = field(
        default=0.15,
        metadata={
            "help": "probability that an easy corpus theorem with a multiplicative proof gets one instead of an additive proof"
        },
    )
    hidden_size: int = field(
        default=128, metadata={"help": "model width; heads are 32 wide (vLLM's CPU kernel needs >= 32)"}
    )
    layers: int = field(default=4, metadata={"help": "transformer blocks"})
    steps: int = field(
        default=500,
        metadata={
            "help": "optimizer steps (~1 min on 2 idle cores); more makes a sharper base that GRPO has less to teach"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "sequences per step"})
    lr: float = field(
        default=3e-3,
        metadata={"help": "peak AdamW learning rate (linear warmup over 5% of steps, cosine decay to 10%)"},
    )
    threads: int = field(
        default=1, metadata={"help": "torch threads while training (1 is fastest for this size on a shared CPU)"}
    )

    def __post_init__(self):
        for name in ("rare_theorem_fraction", "multiplicative_style_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if self.hidden_size % 32:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of 32 (the head size)")


def cache_root() -> Path:
    """$PROVER_CACHE_DIR/synthetic, else ~/.cache/prover/synthetic."""
    base = os.environ.get("PROVER_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "prover") / "synthetic"


def cache_key(options: SyntheticOptions) -> str:
    """Hash of every setting the model depends on (train_size and probe_size do not: the corpus
    comes from all non-test theorems)."""
    settings = to_dict(options)
    settings.pop("train_size")
    settings.pop("probe_size")
    blob = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_corpus(options: SyntheticOptions) -> list[tuple[str, str]]:
    """(prompt, completion) pairs: the skewed supervised data. Never uses a test theorem."""
    cfg = options.base_model
    theorems = all_theorems(
        options.max_value, options.start_max, options.min_budget, options.max_budget, options.min_gap
    )
    pool = split_theorems(theorems, options.seed, options.test_size, 0, options.rare_fraction)["pool"]
    easy = [t for t in pool if t.kind == "easy"]
    rare = [t for t in pool if t.kind == "rare"]
    rng = random.Random(cfg.seed)
    pairs = []
    for _ in range(cfg.examples):
        theorem = rng.choice(rare if rare and rng.random() < cfg.rare_theorem_fraction else easy)
        counts = count_proofs(theorem)
        if counts["additive"] == 0 or (counts["multiplicative"] and rng.random() < cfg.multiplicative_style_prob):
            style = "multiplicative"
        else:
            style = "additive"
        proof = sample_proof(theorem, style, rng)
        pairs.append((f"{theorem.statement} : ", " ".join([*proof, END])))
    return pairs


def _tensors(pairs: list[tuple[str, str]], tokenizer) -> tuple[Any, Any, Any]:
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False).input_ids
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False).input_ids
    rows = [(p, c + [tokenizer.eos_token_id]) for p, c in zip(prompts, completions)]
    width = max(len(p) + len(c) for p, c in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([p + c + [pad] * (width - len(p) - len(c)) for p, c in rows])
    labels = torch.tensor([[-100] * len(p) + c + [-100] * (width - len(p) - len(c)) for p, c in rows])
    mask = torch.tensor([[1] * (len(p) + len(c)) + [0] * (width - len(p) - len(c)) for p, c in rows])
    return ids, mask, labels


def build_model(options: SyntheticOptions, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = options.base_model
    heads = cfg.hidden_size // 32
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=2 * cfg.hidden_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def train_base_model(options: SyntheticOptions, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Supervised training on ``build_corpus``; saves model + tokenizer to ``out_dir``; returns stats."""
    import torch
    from tqdm.auto import tqdm

    from prover.tasks.synthetic.tokenizer import build_tokenizer

    cfg = options.base_model
    t0 = time.perf_counter()
    tokenizer = build_tokenizer(options.max_value)
    ids, mask, labels = _tensors(build_corpus(options), tokenizer)
    model = build_model(options, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, cfg.steps // 20)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(ids), generator=generator)
    cursor, ema = 0, None
    bar = tqdm(range(cfg.steps), desc="synthetic base model (SFT)", disable=not progress)
    for step in bar:
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(ids), generator=generator), 0
        batch = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        width = int(mask[batch].sum(1).max())  # trim the padding every row of this batch shares
        loss = model(
            input_ids=ids[batch, :width], attention_mask=mask[batch, :width], labels=labels[batch, :width]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{ema:.3f}")
            logger.debug("sft step %d loss %.4f", step, ema)
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {
        "final_loss": ema,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "examples": len(ids),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run with ``n`` intra-op threads: a model this small gains nothing from more, and on a
    shared CPU extra threads spin-wait for each other (10x slower steps measured on 2 busy cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock so that concurrent runs build a missing model once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_base_model(
    options: SyntheticOptions | dict | None = None, cache_dir: str | Path | None = None, progress: bool = True
) -> Path:
    """Path of the base model for ``options`` (task.options: a SyntheticOptions or its mapping).

    Trained on first use (a few minutes on 2 CPU cores) under ``cache_dir`` (default:
    ``cache_root()``) in a directory named by ``cache_key``; later calls return it at once.
    """
    from prover.config import from_dict
    from prover.tasks.synthetic.task import SyntheticOptions

    if options is None or isinstance(options, dict):
        options = from_dict(SyntheticOptions, options or {}, "task.options")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    key = cache_key(options)
    target = root / key
    if (target / DONE).is_file():
        return target
    with _locked(root / f"{key}.lock"):
        if (target / DONE).is_file():  # another process built it while we waited
            return target
        logger.info("training the synthetic base model into %s (cached for later runs)", target)
        tmp = root / f"{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with _torch_threads(options.base_model.threads):
            stats = train_base_model(options, tmp, progress=progress)
        (tmp / DONE).write_text(
            json.dumps({"format": FORMAT_VERSION, "key": key, "options": to_dict(options), **stats}, indent=2)
        )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        logger.info("base model ready: %s (loss %.3f, %.0f s)", target, stats["final_loss"], stats["train_seconds"])
    return target
