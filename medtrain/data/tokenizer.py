"""BERT-style WordPiece tokenizer: training on de-identified report text, saving and loading."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from medtrain.data.errors import DataError

PAD, UNK, CLS, SEP, MASK, PHI = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PHI]"
# Order fixes the ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, [PHI]=5.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK, PHI)
TOKENIZER_FILE = "tokenizer.json"


@dataclass(kw_only=True, slots=True)
class TokenizerConfig:
    """Where the tokenizer lives and how to train it."""

    path: str = ""
    vocab_size: int = 4096
    min_frequency: int = 2
    max_length: int = 256


def _wrap(tok: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        extra_special_tokens=[PHI],
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
    )


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int,
    out_dir: Path,
    min_frequency: int = 2,
    max_length: int = 256,
) -> PreTrainedTokenizerFast:
    """Train a lowercase WordPiece tokenizer on `texts` and save it to `out_dir`."""
    tok = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Added special tokens are matched on the raw text before normalization, so "[PHI]" stays
    # one token instead of being lowercased and split into "[", "phi", "]".
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if [ids[t] for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special token ids are not fixed as expected: {ids}")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, ids[CLS]), (SEP, ids[SEP])],
    )
    hf = _wrap(tok, max_length)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))
    return hf


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer` (offline); DataError if it is missing."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"tokenizer directory not found: {p} (run `medtrain tokenizer` first)")
    if not (p / TOKENIZER_FILE).is_file():
        raise DataError(f"{TOKENIZER_FILE} missing in tokenizer directory {p}")
    return PreTrainedTokenizerFast.from_pretrained(str(p), local_files_only=True)
