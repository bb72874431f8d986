"""The zoo's word-level tokenizer: the task suite's closed compact vocabulary plus four specials.

Saved as a standard `tokenizer.json` + `tokenizer_config.json`, so `AutoTokenizer.from_pretrained(dir)`
loads it with no library code; decoding joins words with spaces, which is the compact format itself.
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ..evals.tasks import compact_vocabulary

SPECIALS = {"pad_token": "<pad>", "eos_token": "<eos>", "mask_token": "<mask>", "unk_token": "<unk>"}


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = list(SPECIALS.values()) + [w for w in compact_vocabulary() if w not in SPECIALS.values()]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, clean_up_tokenization_spaces=False, **SPECIALS)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    tokenizer.save_pretrained(str(out_dir))
