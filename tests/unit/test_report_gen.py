"""Report generation: decoder initialised from the text tower, teacher forcing, transformers'
generate (greedy == step-by-step argmax, beam search per image, no-repeat n-gram), the image
reaching the decoder, and ReportTask's record handling (tiny CPU sizes)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtrain.data.records import Record
from medtrain.data.tokenizer import train_tokenizer
from medtrain.models.config import FusionConfig, ModelConfig, TextConfig, VisionConfig
from medtrain.models.downstream.report_gen import ReportGenerator, decode_reports
from medtrain.models.medvlp import MedVLP

REPORTS = [
    "the lungs are clear. no pleural effusion.",
    "small left pleural effusion. mild cardiomegaly.",
    "right lower lobe consolidation concerning for pneumonia.",
    "endotracheal tube terminates above the carina. no pneumothorax.",
]
SPECIAL = {"pad": 0, "bos": 2, "eos": 3}


def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(
        vision=VisionConfig(
            img_size=32, embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=4,
            drop_path_rate=0.0,
        ),
        text=TextConfig(
            hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=32,
            dropout=0.0,
        ),
        fusion=FusionConfig(name="cross", num_layers=1, num_heads=2),
        embed_dim=24,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer(REPORTS * 20, vocab_size=200, out_dir=out, min_frequency=1)


def build(tok, layers: int = 1, seed: int = 0) -> tuple[MedVLP, ReportGenerator]:
    torch.manual_seed(seed)
    backbone = MedVLP(tiny_model_cfg(), len(tok), pad_token_id=tok.pad_token_id)
    model = ReportGenerator(backbone, num_layers=layers, max_positions=48, special=SPECIAL)
    return backbone, model


def encode(tok, texts: list[str]) -> dict[str, torch.Tensor]:
    enc = tok(texts, padding="longest", return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def test_special_ids_match_the_tokenizer(tok):
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 2, 3)


def test_decoder_starts_from_text_tower_where_shapes_allow(tok):
    backbone, model = build(tok, layers=1)
    src, dst = backbone.text.bert, model.decoder.bert
    torch.testing.assert_close(
        dst.embeddings.word_embeddings.weight, src.embeddings.word_embeddings.weight
    )
    # decoder has 48 positions, the text tower 32: the first 32 rows are copied
    pos_d, pos_s = dst.embeddings.position_embeddings.weight, src.embeddings.position_embeddings
    assert pos_d.shape[0] == 48
    torch.testing.assert_close(pos_d[:32], pos_s.weight)
    ld, ls = dst.encoder.layer[0], src.encoder.layer[0]
    for a, b in (
        (ld.attention.self.query.weight, ls.attention.self.query.weight),
        (ld.attention.output.LayerNorm.weight, ls.attention.output.LayerNorm.weight),
        (ld.intermediate.dense.weight, ls.intermediate.dense.weight),
        (ld.output.dense.bias, ls.output.dense.bias),
    ):
        torch.testing.assert_close(a, b)
    assert len(model.decoder.bert.encoder.layer) == 1  # only the first decoder_layers
    head = model.decoder.cls.predictions
    torch.testing.assert_close(head.decoder.weight, backbone.mlm_head.decoder.weight)
    torch.testing.assert_close(head.transform.dense.weight, backbone.mlm_head.transform[0].weight)
    assert not any("crossattention" in n for n in model.copied)  # fresh
    assert "bert.encoder.layer.0.crossattention.self.query.weight" in dict(
        model.decoder.named_parameters()
    )


def test_cross_attention_reads_the_image(tok):
    _, model = build(tok)
    model.eval()
    batch = encode(tok, REPORTS[:1] * 2)
    g = torch.Generator().manual_seed(1)
    batch["pixel_values"] = torch.randn(2, 1, 32, 32, generator=g)
    logits = model(batch)["logits"]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    batch["pixel_values"] = batch["pixel_values"][:1].expand(2, -1, -1, -1)
    logits = model(batch)["logits"]
    torch.testing.assert_close(logits[0], logits[1])


def test_greedy_generate_equals_stepwise_argmax(tok):
    """transformers' generate with the cross-attention cache == recomputing the whole prefix."""
    _, model = build(tok, layers=2)
    model.eval()
    pixels = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    out = model.generate(pixels, max_new_tokens=8, num_beams=1)
    ids = torch.full((2, 1), tok.cls_token_id)
    for _ in range(8):
        logits = model({"pixel_values": pixels, "input_ids": ids,
                        "attention_mask": torch.ones_like(ids)})["logits"]  # fmt: skip
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    for row, want in zip(out.tolist(), ids.tolist(), strict=True):
        n = want.index(3) + 1 if 3 in want else len(want)
        assert row[:n] == want[:n]


def test_beam_search_expands_image_states_per_beam(tok):
    _, model = build(tok, layers=2, seed=3)
    model.eval()
    pixels = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    gen = {"max_new_tokens": 10, "num_beams": 3, "length_penalty": 1.0, "no_repeat_ngram_size": 3}
    both = model.generate(pixels, **gen)
    for i in range(2):
        alone = model.generate(pixels[i : i + 1], **gen)[0].tolist()
        row = both[i].tolist()
        assert row[: len(alone)] == alone and all(t == 0 for t in row[len(alone) :])
    texts = decode_reports(tok, both)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert not any("[CLS]" in t or "[SEP]" in t or "[PAD]" in t for t in texts)


def test_no_repeat_ngram_size(tok):
    _, model = build(tok)
    model.eval()
    word = tok.convert_tokens_to_ids("lungs")
    with torch.no_grad():  # the head strongly prefers one word: it would repeat forever
        model.decoder.cls.predictions.decoder.bias[word] += 50.0
    pixels = torch.randn(1, 1, 32, 32)
    free = model.generate(pixels, max_new_tokens=12, num_beams=1)[0, 1:].tolist()
    assert free == [word] * 12
    for beams in (1, 3):
        ids = model.generate(pixels, max_new_tokens=12, num_beams=beams, no_repeat_ngram_size=3)
        ids = ids[0].tolist()
        grams = [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]
        assert len(grams) == len(set(grams)) and len(ids) > 4


def test_overfit_four_reports_then_greedy_reproduces_them(tok):
    _, model = build(tok, layers=1)
    batch = encode(tok, REPORTS)
    batch["pixel_values"] = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(45):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    out = model.generate(batch["pixel_values"], max_new_tokens=24, num_beams=1)
    texts = decode_reports(tok, out)
    assert texts == [tok.decode(tok(r)["input_ids"], skip_special_tokens=True) for r in REPORTS]


def test_decode_reports_cuts_at_sep_and_joins_wordpieces(tok):
    ids = tok("no pleural effusion.")["input_ids"] + [7, 8]  # junk after [SEP] is dropped
    ids = torch.tensor([ids + [0] * 3])
    assert decode_reports(tok, ids) == ["no pleural effusion."]


# --- ReportTask --------------------------------------------------------------------------------


def run_cfg(tmp_path: Path, **finetune):
    from medtrain.config import RunConfig
    from medtrain.finetune.config import FinetuneConfig

    cfg = RunConfig()
    cfg.model = tiny_model_cfg()
    cfg.finetune = FinetuneConfig(task="report", **finetune)
    return cfg


def image(path: Path, seed: int) -> Path:
    arr = np.random.default_rng(seed).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_report_task_keep_collate_references_baseline(tmp_path, tok, monkeypatch):
    from medtrain.finetune.tasks.report import ReportTask

    recs = [
        Record(id=f"r{i}", image_path=image(tmp_path / f"{i}.png", i), report=text,
               labels={"Pleural Effusion": 1.0, "Cardiomegaly": None, "Foo": 1.0})
        for i, text in enumerate([REPORTS[1], REPORTS[0], REPORTS[1]])
    ]  # fmt: skip
    task = ReportTask(run_cfg(tmp_path, max_target_length=16, num_beams=2, max_new_tokens=5), tok)
    assert task.keep(Record(id="x", image_path=Path("x.png"))) == "no report"
    assert task.keep(Record(id="y", image_path=Path("x.png"), report="   ")) is not None
    assert all(task.keep(r) is None for r in recs)
    task.fit_vocab(recs)
    assert task.state()["most_common_report"] == task.text(recs[0])
    items = [task.dataset(recs, "train")[i] for i in range(3)]
    task.cfg.finetune.max_target_length = 8  # truncated, still ending in [SEP]
    cut = task.collate(items)["input_ids"]
    assert cut.shape == (3, 8) and (cut[:, -1] == tok.sep_token_id).all()
    task.cfg.finetune.max_target_length = 16
    batch = task.collate(items)
    assert batch["input_ids"].shape == (3, 11) and batch["pixel_values"].shape == (3, 1, 32, 32)
    assert batch["ids"] == ["r0", "r1", "r2"]
    pad = batch["attention_mask"] == 0  # r0's report (10 tokens) is shorter than r1's (11)
    assert pad[0].sum() == 1 and not pad[1].any()
    assert (batch["labels"][pad] == -100).all()
    assert torch.equal(batch["labels"][~pad], batch["input_ids"][~pad])
    assert batch["input_ids"][1, 0] == tok.cls_token_id and batch["input_ids"][1, -1] == 3
    refs = task.references(recs)
    assert refs[0] == {"id": "r0", "text": task.text(recs[0]),
                       "labels": {"Cardiomegaly": None, "Pleural Effusion": 1.0}}  # fmt: skip

    torch.manual_seed(0)
    model = task.build_model(MedVLP(tiny_model_cfg(), len(tok)))
    assert model(batch)["loss"].ndim == 0
    groups = task.trainable_groups(model)
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.vision.parameters()}
    preds = task.predict(model, [batch])
    assert [p["id"] for p in preds] == ["r0", "r1", "r2"]
    assert all(isinstance(p["text"], str) for p in preds)

    seen = {}

    def score_task(name, preds, refs, **kw):
        seen.update(name=name, preds=preds)
        return {"bleu1": 0.0}

    mod = types.ModuleType("medtrain.eval.metrics.score")
    mod.score_task = score_task
    monkeypatch.setitem(sys.modules, "medtrain.eval.metrics.score", mod)
    assert task.baseline(recs, refs) == {"bleu1": 0.0}
    assert seen["name"] == "report"
    assert [p["text"] for p in seen["preds"]] == [task.text(recs[0])] * 3


def test_linear_mode_freezes_the_vision_tower(tmp_path, tok):
    from medtrain.finetune.tasks.report import ReportTask

    task = ReportTask(run_cfg(tmp_path, mode="linear"), tok)
    model = task.build_model(MedVLP(tiny_model_cfg(), len(tok)))
    groups = task.trainable_groups(model)
    assert groups["backbone"] == [] and groups["head"]
    assert not any(p.requires_grad for p in model.vision.parameters())
    model.train()
    assert not model.vision.training and model.decoder.training
