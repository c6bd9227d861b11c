"""A tiny tokenizer and a tiny random Llama, built on disk in seconds with no hub.

Every test, benchmark and CPU example that needs "a model" uses this. Head size is 32 because
vLLM's CPU attention kernel needs head size >= 32.
"""

from __future__ import annotations

import json
from pathlib import Path

# Enough Lean-flavoured text for a byte-level BPE to learn a few hundred merges.
_CORPUS = [
    "Complete the following Lean 4 code:\n\n```lean4\nimport Mathlib\nimport Aesop\n\nset_option maxHeartbeats 0\n\nopen BigOperators Real Nat Topology Rat\n\n",
    "theorem mathd_algebra_478 (b h v : ℝ) (h₀ : 0 < b ∧ 0 < h ∧ 0 < v) (h₁ : v = 1 / 3 * (b * h)) : v = 65 := by\n",
    "  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b), mul_pos h₀ h₁]\n```",
    "  norm_num [h₀, h₁] at *\n  linarith\n```",
    "  intro x hx\n  simp only [Finset.sum_range_succ] at *\n  omega\n```",
    "  rcases h with ⟨x, hx⟩\n  field_simp\n  ring_nf\n```",
    "  induction n with\n  | zero => simp\n  | succ n ih => simp [pow_succ, ih]\n```",
    "  have h₂ : x = 2 := by linarith\n  calc x = 2 := h₂\n    _ = 2 := rfl\n```",
    "/-- Show that for any real number $x$, $x^2 \\geq 0$. -/\n",
    "start 12 goal 57 : +1 +1 *2 *2 +3 -1 qed\n",
]

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_tiny_tokenizer(path: str | Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer (covers any text, unicode included), saved as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(path))
    return fast


def build_tiny_model(
    path: str | Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 2, max_position_embeddings: int = 2048
) -> Path:
    """Tokenizer + random ``LlamaForCausalLM`` (2 heads of size 32) saved to ``path``; returns it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 32,
        num_key_value_heads=hidden_size // 32,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(path))
    (path / "tiny_model.json").write_text(json.dumps({"seed": seed, "hidden_size": hidden_size, "layers": num_layers}))
    return path
