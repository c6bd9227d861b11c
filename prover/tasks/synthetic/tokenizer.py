"""A word-level tokenizer over the synthetic task's vocabulary: one token per word, number or operation.

One token per value keeps completions short (a 6-step proof is 13 tokens) and makes the model's
job arithmetic over symbols rather than spelling, which a tiny model learns in minutes.
"""

from __future__ import annotations

from pathlib import Path

from prover.tasks.synthetic.generator import END, OPS

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
WORDS = ("start", "goal", "steps", ":")


def vocabulary(max_value: int) -> list[str]:
    """Special tokens, statement words, operations, the end marker, then 0..max_value."""
    return [PAD, EOS, UNK, *WORDS, *OPS, END, *(str(v) for v in range(max_value + 1))]


def build_tokenizer(max_value: int, path: str | Path | None = None):
    """A ``PreTrainedTokenizerFast`` (saved to ``path`` when given). Text splits on whitespace;
    decoding joins tokens with spaces. No BOS: prompts are used as they are by every caller."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary(max_value))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=128,
    )
    if path is not None:
        fast.save_pretrained(str(path))
    return fast
