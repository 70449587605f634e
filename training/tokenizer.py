"""WordPiece tokenizer trained with `tokenizers`; loadable by @huggingface/transformers (JS)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from .config import TEXT_MAX_LEN, TEXT_VOCAB

PAD, UNK = "[PAD]", "[UNK]"


def train_tokenizer(texts: list[str], vocab_size: int = TEXT_VOCAB) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # WhitespaceSplit only: transformers.js implements `Whitespace` with an ASCII-only \w regex and
    # `Punctuation` with different grouping, so anything else tokenizes differently in the server.
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id(PAD) == 0 and tok.token_to_id(UNK) == 1
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": TEXT_MAX_LEN,
           "pad_token": PAD, "unk_token": UNK, "do_lower_case": True, "clean_up_tokenization_spaces": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def load_tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def encode(tok: Tokenizer, titles: list[str], max_len: int = TEXT_MAX_LEN) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=False).ids[:max_len] for t in titles]


def pad_batch(seqs: list[list[int]]):
    """Right-pad to the longest sequence; returns (input_ids, attention_mask) as int64 numpy."""
    import numpy as np

    L = max(1, max((len(s) for s in seqs), default=1))
    ids = np.zeros((len(seqs), L), dtype=np.int64)
    mask = np.zeros((len(seqs), L), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask
