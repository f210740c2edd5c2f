"""`medtrain tokenizer train`: WordPiece vocabulary on de-identified text only.

Inputs: reports from data set roots (--root DIR --source KIND), whose training text comes from
the one text path (medtrain.data.text.record_text: de-identified, then sectioned), and corpus
files (--corpus FILE..., one document per line), which must be marked de-identified by name
(`*.deid.txt`) or scrubbed here (--scrub, medtrain.data.text.scrub_text); --force trains on
unmarked files anyway and says so. PHI-like vocabulary tokens are removed (vocab_audit.json).
Fertility (tokens per word) on held-out reports is printed for the new vocabulary and for a
general-English vocabulary trained the same way (same size and settings) on a procedural
corpus of the same size, or on --baseline-corpus files.
provenance.json = {"text_path": medtrain.data.text.text_path_id(...), "inputs": [...]}.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from medtrain.data.errors import DataError

log = logging.getLogger(__name__)
HOLDOUT_EVERY = 20  # without a held-out split, every 20th document is held out
PROVENANCE_FILE = "provenance.json"


def _reader_reports(
    source: str,
    root: str,
    splits: list[str],
    names: set[str],
    skipped: list[tuple[str, str]] | None = None,
    **options: Any,
) -> list[str]:
    """Training text (record_text under DeidConfig()) of each study's report, one per study,
    in `splits`; `names` receives the words the de-identifier took for names. `options` are
    reader options (views, reports_root, images_root, text_fallback_encoding; see
    open_source). What the reader or the text path could not use goes to `skipped`."""
    from medtrain.data.config import DeidConfig
    from medtrain.data.sources import open_source
    from medtrain.data.text import record_text

    if not Path(root).exists():
        raise DataError(f"corpus root {root} does not exist")
    deid, texts, seen = DeidConfig(), [], set()
    skipped = [] if skipped is None else skipped
    for rec in open_source(source, root, splits=splits, skipped=skipped, **options):
        key = rec.study_id or rec.id
        if key in seen:
            continue
        seen.add(key)
        try:
            texts.append(record_text(rec, deid, found_names=names))
        except DataError as e:
            skipped.append((rec.id, str(e)))
    return texts


def _corpus_file(path: Path, args: argparse.Namespace, names: set[str]) -> tuple[list[str], str]:
    """(documents, provenance) of one corpus file; refuses unmarked files (see module doc)."""
    from medtrain.data.config import DeidConfig
    from medtrain.data.text import scrub_text
    from medtrain.data.tokenizer import is_marked_deidentified

    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")
    docs = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if is_marked_deidentified(path):
        return docs, "marked .deid"
    if args.scrub:
        deid = DeidConfig()
        return [scrub_text(doc, deid, found_names=names) for doc in docs], "scrubbed by --scrub"
    if args.force:
        log.warning("training on %s although it is not marked de-identified (--force)", path)
        return docs, "NOT de-identified (--force)"
    raise DataError(
        f"{path}: not marked as de-identified. De-identify it and name it "
        f"{path.stem}.deid{path.suffix or '.txt'}, pass --scrub to de-identify it now, "
        "or --force to train on it as it is"
    )


def _baseline_texts(args: argparse.Namespace, n_chars: int) -> list[str]:
    from medtrain.synth.text import general_text

    if args.baseline_corpus:
        docs = []
        for f in args.baseline_corpus:
            docs += [x for x in Path(f).read_text(encoding="utf-8").splitlines() if x.strip()]
        return docs
    docs: list[str] = []
    seed = 0
    while sum(map(len, docs)) < n_chars:
        docs += general_text(500, seed=seed)
        seed += 1
    return docs


def _train(args: argparse.Namespace) -> None:
    from medtrain.data.config import DeidConfig
    from medtrain.data.text import text_path_id
    from medtrain.data.tokenizer import fertility, train_tokenizer

    names: set[str] = set()
    texts: list[str] = []
    held: list[str] = []
    provenance = []
    options = {
        "reports_root": args.reports_root,
        "images_root": args.images_root,
        "text_fallback_encoding": args.text_fallback_encoding,
    }
    skipped: list[tuple[str, str]] = []
    for root in args.root:
        texts += _reader_reports(args.source, root, [args.split], names, skipped, **options)
        held += _reader_reports(args.source, root, [args.heldout_split], set(), [], **options)
        provenance.append({"root": root, "source": args.source, "deid": "run by this command"})
    if skipped:  # never silent: the reader's and the text path's skips, with examples
        print(f"tokenizer train: {len(skipped)} report(s) skipped, e.g. {skipped[:3]}")
    for f in args.corpus:
        docs, how = _corpus_file(Path(f), args, names)
        texts += docs
        provenance.append({"corpus": f, "deid": how})
    if not texts:
        raise DataError("no text to train the tokenizer on (give --root and/or --corpus)")
    if not held:  # hold out every HOLDOUT_EVERY-th document
        held = texts[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
        texts = [t for i, t in enumerate(texts) if (i + 1) % HOLDOUT_EVERY]
    out = Path(args.out)
    tok = train_tokenizer(texts, vocab_size=args.vocab_size, out_dir=out, phi_names=names)
    removed = json.loads((out / "vocab_audit.json").read_text())["removed"]
    record = {"text_path": text_path_id(DeidConfig()), "inputs": provenance}
    (out / PROVENANCE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    print(f"trained WordPiece vocab of {len(tok)} on {len(texts)} documents -> {out}")
    print(f"vocabulary audit: {len(removed)} PHI-like tokens removed (see {out}/vocab_audit.json)")
    if not held:
        return
    print(f"fertility (tokens per word) on {len(held)} held-out reports:")
    print(f"  domain vocabulary   {fertility(tok, held):.3f}")
    if not args.no_baseline:
        base_docs = _baseline_texts(args, sum(map(len, texts)))
        base = train_tokenizer(base_docs, vocab_size=args.vocab_size, out_dir=None)
        what = "--baseline-corpus" if args.baseline_corpus else "procedural general English"
        print(f"  general vocabulary  {fertility(base, held):.3f}  ({len(base)} tokens, {what})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenizer", help="tokenizer")
    cmds = tok.add_subparsers(dest="tok_cmd", required=True)
    t = cmds.add_parser(
        "train",
        help="train a WordPiece vocabulary on de-identified report text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--source", default="mimic-cxr-jpg", help="reader for --root directories")
    t.add_argument("--root", nargs="*", default=[], help="data set roots (de-identified here)")
    t.add_argument("--reports-root", default="", help="MIMIC-CXR reports tree kept apart")
    t.add_argument("--images-root", default="", help="Open-I PNG folder kept apart")
    splits = ["train", "validate", "test"]
    t.add_argument(
        "--split", default="train", choices=splits, help="split of --root read for training"
    )
    t.add_argument(
        "--heldout-split", default="validate", choices=splits, help="split for the fertility report"
    )
    t.add_argument(
        "--text-fallback-encoding",
        default="",
        choices=["", "cp1252", "latin-1"],
        help="decode --root reports that are not valid UTF-8 with this (before de-identification)",
    )
    t.add_argument("--corpus", nargs="*", default=[], help="text files, one document per line")
    t.add_argument("--scrub", action="store_true", help="de-identify unmarked --corpus files")
    t.add_argument("--force", action="store_true", help="accept unmarked --corpus files as is")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--baseline-corpus", nargs="*", default=[], help="general text for baseline")
    t.add_argument("--no-baseline", action="store_true", help="skip the general vocabulary")
    t.add_argument("--out", required=True)
    t.set_defaults(fn=_train)
