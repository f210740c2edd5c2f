"""BERT-style WordPiece tokenizer: training on de-identified text, vocabulary PHI audit, fertility.

Provenance (enforced by `medtrain tokenizer train`, cli/tokenizer.py): only de-identified text
is trained on.
- Reports read through a source reader (--root/--source) become training text through the one
  text path (medtrain.data.text.record_text: de-identification, then sectioning); the
  directory's provenance.json records that path's id.
- Corpus files (--corpus, one document per line) count as de-identified only when their name
  carries a `.deid` part (`notes.deid.txt`, `pubmed.deid`): rename a file after it went
  through de-identification. `--scrub` runs the de-id pass over unmarked files instead; anything
  else is refused unless `--force`.
Vocabulary audit (every training run): tokens that look like PHI are REMOVED from the
vocabulary (ids renumbered, special ids unchanged) and listed in `vocab_audit.json`:
- 5 or more digits in a row (MRN, accession, phone fragments);
- a name: one the de-id pass found in the training input (`phi_names`), or a gazetteer
  first/last name (deid.FIRST_NAMES / LAST_NAMES); whole-word tokens, and ## pieces of 5+
  letters.
Removing (not refusing) keeps training usable when a few leaked names reach the vocabulary;
the audit file says what was removed, and a large count is the sign to revisit de-id.
Length: `load_tokenizer(path, max_length=N)` (a run uses model.text.max_length) sets
model_max_length and truncation to N, so the copy a run saves carries the model's length.
The saved files need transformers>=5 (tokenizer_class TokenizersBackend).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
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

from medtrain.data.deid import FIRST_NAMES, LAST_NAMES
from medtrain.data.errors import DataError

PAD, UNK, CLS, SEP, MASK, PHI = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PHI]"
# Order fixes the ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, [PHI]=5.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK, PHI)
TOKENIZER_FILE = "tokenizer.json"
AUDIT_FILE = "vocab_audit.json"
DEID_MARKER = ".deid"
_LONG_DIGITS = re.compile(r"\d{5,}")


def is_marked_deidentified(path: str | Path) -> bool:
    """Whether a corpus file's name says it was de-identified (`x.deid.txt`, `x.deid`)."""
    return DEID_MARKER in Path(path).suffixes


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


def audit_vocabulary(tokens: Iterable[str], *, phi_names: Collection[str] = ()) -> dict[str, str]:
    """Token -> reason for every token that looks like PHI (see module docstring)."""
    found = {n.lower() for n in phi_names}
    names = found | FIRST_NAMES | LAST_NAMES
    rejected = {}
    for token in tokens:
        if token in SPECIAL_TOKENS:
            continue
        piece = token[2:] if token.startswith("##") else token
        if _LONG_DIGITS.search(piece):
            rejected[token] = "5+ digits"
        elif piece in names and (piece == token or len(piece) >= 5):
            rejected[token] = "name found by de-id" if piece in found else "gazetteer name"
    return rejected


def _drop_tokens(tok: Tokenizer, drop: Collection[str]) -> None:
    """Remove tokens from the WordPiece vocabulary in place; remaining ids stay in order."""
    vocab = tok.get_vocab()
    kept = [t for t in sorted(vocab, key=vocab.get) if t not in drop]
    tok.model = models.WordPiece(
        {t: i for i, t in enumerate(kept)}, unk_token=UNK, continuing_subword_prefix="##"
    )


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int,
    out_dir: Path | None,
    min_frequency: int = 2,
    max_length: int = 256,
    phi_names: Collection[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a lowercase WordPiece tokenizer on `texts`, audit its vocabulary, save to `out_dir`.

    PHI-like tokens are removed (module docstring); out_dir None trains without saving.
    """
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
    rejected = audit_vocabulary(tok.get_vocab(), phi_names=phi_names)
    if rejected:
        _drop_tokens(tok, rejected)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if [ids[t] for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special token ids are not fixed as expected: {ids}")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, ids[CLS]), (SEP, ids[SEP])],
    )
    hf = _wrap(tok, max_length)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(str(out_dir))
        audit = {"vocab_size": len(hf), "removed": sorted(rejected.items())}
        (out_dir / AUDIT_FILE).write_text(json.dumps(audit, indent=1) + "\n")
    return hf


def fertility(tok: PreTrainedTokenizerFast, texts: Iterable[str]) -> float:
    """Tokens per word: word pieces (no [CLS]/[SEP]) / whitespace-separated words."""
    texts = list(texts)
    backend = tok.backend_tokenizer
    truncation = backend.truncation  # a length-limited tokenizer must not cut the texts here
    backend.no_truncation()
    try:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
    pieces = sum(len(e.ids) for e in encodings)
    words = sum(len(t.split()) for t in texts)
    if words == 0:
        raise DataError("fertility needs at least one word of text")
    return pieces / words


def set_max_length(tok: PreTrainedTokenizerFast, max_length: int) -> None:
    """Make `tok` carry `max_length`: model_max_length (what `truncation=True` cuts to and
    what save_pretrained writes) and the backend's truncation (written into tokenizer.json)."""
    if max_length < 2:
        raise DataError(f"tokenizer max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
    tok.model_max_length = max_length
    tok.backend_tokenizer.enable_truncation(max_length)


def load_tokenizer(path: str | Path, max_length: int | None = None) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer` (offline); DataError if it is missing.

    `max_length` (a run passes model.text.max_length) replaces the saved length (set_max_length).
    """
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"tokenizer directory not found: {p} (run `medtrain tokenizer` first)")
    if not (p / TOKENIZER_FILE).is_file():
        raise DataError(f"{TOKENIZER_FILE} missing in tokenizer directory {p}")
    tok = PreTrainedTokenizerFast.from_pretrained(str(p), local_files_only=True)
    if max_length is not None:
        set_max_length(tok, max_length)
    return tok
