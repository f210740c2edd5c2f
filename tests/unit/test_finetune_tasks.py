"""cls and vqa tasks: label sets, uncertain policies, blank masking, masked BCE, the classifier
learns, VQA answer vocabulary and both head paths (fused / fusion none)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medtrain.data.records import Record


def run_cfg(**finetune):
    from medtrain.config import RunConfig
    from medtrain.finetune.config import FinetuneConfig

    cfg = RunConfig()
    cfg.finetune = FinetuneConfig(**finetune)
    return cfg


def rec(i: int, labels: dict, **kw) -> Record:
    return Record(id=f"r{i}", image_path=Path("x.png"), labels=labels, subject_id=f"p{i}", **kw)


TRAIN = [
    rec(0, {"Edema": 1.0, "Fracture": 0.0, "Pneumonia": -1.0, "Cardiomegaly": None}),
    rec(1, {"Edema": 0.0, "Fracture": 0.0, "Pneumonia": 0.0, "Cardiomegaly": 1.0}),
    rec(2, {"Edema": -1.0, "Fracture": None, "Pneumonia": 1.0, "Cardiomegaly": 0.0}),
]


@pytest.mark.parametrize(
    "policy,edema,mask",
    [("ignore", 0.0, 0.0), ("ones", 1.0, 1.0), ("zeros", 0.0, 1.0)],
)
def test_uncertain_policy_and_blank_masking(policy, edema, mask):
    from medtrain.finetune.tasks.cls import ClsTask

    task = ClsTask(run_cfg(uncertain=policy), None)
    task.fit_vocab(TRAIN)
    # CheXpert order; Fracture has one class only: left out
    assert task.labels == ["Cardiomegaly", "Edema", "Pneumonia"]
    assert task.left_out == ["Fracture"]
    values, m = task.targets(TRAIN[2])  # Cardiomegaly 0, Edema -1 (uncertain), Pneumonia 1
    assert values.tolist() == [0.0, edema, 1.0] and m.tolist() == [1.0, mask, 1.0]
    values, m = task.targets(TRAIN[0])  # Cardiomegaly blank: always masked
    assert m[0] == 0.0
    refs = task.references(TRAIN)
    assert "Cardiomegaly" not in refs[0]["labels"]  # blank reference omitted
    assert ("Edema" in refs[2]["labels"]) == (policy != "ignore")


def test_uncertain_ones_can_give_a_label_both_classes():
    from medtrain.finetune.tasks.cls import ClsTask

    recs = [rec(0, {"Edema": -1.0}), rec(1, {"Edema": 0.0})]
    ignore = ClsTask(run_cfg(uncertain="ignore"), None)
    with pytest.raises(ValueError, match="no label has both classes"):
        ignore.fit_vocab(recs)
    ones = ClsTask(run_cfg(uncertain="ones"), None)
    ones.fit_vocab(recs)
    assert ones.labels == ["Edema"]


def test_explicit_labels_and_unknown_labels():
    from medtrain.finetune.tasks.cls import ClsTask

    task = ClsTask(run_cfg(labels=("Pneumonia",)), None)
    task.fit_vocab(TRAIN)
    assert task.labels == ["Pneumonia"]
    bad = ClsTask(run_cfg(labels=("Nodule",)), None)
    with pytest.raises(ValueError, match="do not occur in the training split"):
        bad.fit_vocab(TRAIN)


def test_masked_bce_matches_the_mean_over_unmasked_entries():
    import torch.nn.functional as F

    from medtrain.models.downstream.classifier import masked_bce

    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(4, 3, generator=g), (torch.rand(4, 3, generator=g) > 0.5)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]]).float()
    keep = mask.bool()
    want = F.binary_cross_entropy_with_logits(logits[keep], targets[keep].float())
    assert masked_bce(logits, targets, mask).item() == pytest.approx(want.item(), rel=1e-6)
    # a masked entry's target does not matter
    flipped = targets.clone()
    flipped[~keep] = ~flipped[~keep]
    assert masked_bce(logits, flipped, mask).item() == pytest.approx(want.item(), rel=1e-6)
    assert masked_bce(logits, targets, torch.zeros(4, 3)).item() == 0.0


def test_baseline_is_prevalence_with_auc_one_half():
    from medtrain.finetune.tasks.cls import ClsTask

    task = ClsTask(run_cfg(), None)
    task.fit_vocab(TRAIN)
    seen = {}
    task.score = lambda preds, refs: seen.setdefault("preds", preds) and {}
    task.baseline(TRAIN, task.references(TRAIN))
    scores = seen["preds"][0]["scores"]
    assert scores == {"Cardiomegaly": 0.5, "Edema": 0.5, "Pneumonia": 0.5}
    assert all(p["scores"] == scores for p in seen["preds"])  # a constant: AUC 0.5


def blob_images(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, S, S) noise images, the positive half with a bright disc; labels (n, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * 0.3
    y = (torch.arange(n) % 2).float()[:, None]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2).float()
    return x + 2.0 * y[:, :, None, None] * disc, y


def test_classifier_learns_on_a_tiny_synthetic_set(tiny_cfg, vocab_size):
    from sklearn.metrics import roc_auc_score

    from medtrain.models.downstream.classifier import Classifier
    from medtrain.models.medvlp import MedVLP

    torch.manual_seed(0)
    model = Classifier(MedVLP(tiny_cfg(), vocab_size), 1, dropout=0.0)
    x, y = blob_images(16)
    batch = {"pixel_values": x, "targets": y, "mask": torch.ones_like(y)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses
    model.eval()
    with torch.no_grad():
        scores = model({"pixel_values": x})["logits"][:, 0]
    assert roc_auc_score(y[:, 0].numpy(), scores.numpy()) > 0.9


def test_linear_probe_freezes_the_backbone(tiny_cfg, vocab_size):
    from medtrain.finetune.tasks.cls import ClsTask
    from medtrain.models.medvlp import MedVLP

    task = ClsTask(run_cfg(mode="linear"), None)
    task.fit_vocab(TRAIN)
    model = task.build_model(MedVLP(tiny_cfg(), vocab_size)).train()
    groups = task.trainable_groups(model)
    assert groups["backbone"] == [] and len(groups["head"]) == 2
    assert not model.backbone.training and model.head.training
    out = model({"pixel_values": torch.randn(2, 1, 64, 64)})
    assert out["logits"].shape == (2, 3)


QA = [
    ("is there an effusion?", "Yes", "CLOSED"),
    ("is there an effusion?", "no", "CLOSED"),
    ("is the heart enlarged?", "yes.", "CLOSED"),
    ("which side is the effusion on?", "the left", "OPEN"),
    ("which side is the effusion on?", "right", "OPEN"),
    ("where is the opacity?", "left", "OPEN"),
]


def vqa_records(split: str = "train") -> list[Record]:
    return [
        Record(
            id=f"q{i}",
            image_path=Path("x.png"),
            question=q,
            answer=a,
            answer_type=t,
            split=split,
        )
        for i, (q, a, t) in enumerate(QA)
    ]


def test_vqa_vocabulary_min_count_and_baseline():
    from medtrain.finetune.tasks.vqa import VqaTask

    task = VqaTask(run_cfg(task="vqa"), None)
    task.fit_vocab(vqa_records())
    assert task.answers == ["left", "yes", "no", "right"]  # by count, then alphabetically
    frequent = VqaTask(run_cfg(task="vqa", min_answer_count=2), None)
    frequent.fit_vocab(vqa_records())
    assert frequent.answers == ["left", "yes"]
    refs = task.references(vqa_records("test"))
    assert refs[0] == {
        "id": "q0",
        "question": "is there an effusion?",
        "answer": "Yes",
        "answer_type": "CLOSED",
    }
    seen = {}
    task.score = lambda preds, refs: seen.setdefault("preds", preds) and {}
    task.baseline(vqa_records(), refs)
    got = {p["id"]: p["answer"] for p in seen["preds"]}
    assert got["q0"] == "yes" and got["q3"] == "left"  # majority per answer type
    assert task.keep(Record(id="x", image_path=Path("x"), question="q?", answer=" ")) == (
        "no answer"
    )


class Tok:
    """Whitespace tokenizer with the HF call signature the collate uses."""

    def __call__(self, texts, *, padding, truncation, max_length, return_tensors):
        ids = [[1] + [3 + len(w) % 20 for w in t.split()][: max_length - 1] for t in texts]
        n = max(map(len, ids))
        return {
            "input_ids": torch.tensor([i + [0] * (n - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids]),
        }


@pytest.mark.parametrize("fusion", ["cross", "none"])
def test_vqa_model_paths_shapes_and_predictions(fusion, tiny_cfg, vocab_size):
    from medtrain.finetune.tasks.vqa import VqaTask
    from medtrain.models.medvlp import MedVLP

    cfg = run_cfg(task="vqa")
    cfg.model = tiny_cfg(fusion)
    task = VqaTask(cfg, Tok())
    task.fit_vocab(vqa_records())
    model = task.build_model(MedVLP(cfg.model, vocab_size))
    # fused: the question's [CLS] after fusion (Ct); none: concat(mean image token, CLS)
    c_txt, c_img = model.backbone.text.out_dim, model.backbone.vision.out_dim
    assert model.head[0].in_features == (c_txt if fusion != "none" else c_img + c_txt)
    items = [
        {"id": r.id, "pixel_values": torch.randn(1, 64, 64), "question": r.question, "answer": a}
        for r, a in zip(vqa_records()[:3], [1, 2, -100], strict=True)
    ]
    batch = task.collate(items)
    out = model(batch)
    assert out["logits"].shape == (3, 4) and math.isfinite(out["loss"].item())
    out["loss"].backward()
    preds = task.predict(model, [batch])
    assert [p["id"] for p in preds] == ["q0", "q1", "q2"]
    assert all(p["answer"] in task.answers for p in preds)


def test_blank_as_negative_when_configured():
    from types import SimpleNamespace

    from medtrain.finetune.tasks.cls import ClsTask

    task = ClsTask(run_cfg(), None)
    task.cfg = SimpleNamespace(
        finetune=SimpleNamespace(uncertain="ignore", blank="zeros", labels=())
    )
    recs = [rec(0, {"Support Devices": 1.0}), rec(1, {"Support Devices": None})]
    task.fit_vocab(recs)
    assert task.labels == ["Support Devices"]
    assert task.references(recs)[1] == {"id": "r1", "labels": {"Support Devices": 0}}


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vqa_fusion_none_reads_the_pretraining_text_pooling(pool, tiny_cfg, vocab_size):
    """fusion none: the head's text half is pool_text(question states, model.text_pool), the
    embedding pretraining contrasted, not always the [CLS] state."""
    from medtrain.models.downstream.vqa import VqaModel
    from medtrain.models.heads import pool_text
    from medtrain.models.medvlp import MedVLP

    cfg = tiny_cfg("none")
    cfg.text_pool = pool
    torch.manual_seed(0)
    model = VqaModel(MedVLP(cfg, vocab_size), 3, dropout=0.0).eval()
    pixels = torch.randn(2, 1, 64, 64)
    ids = torch.randint(5, vocab_size, (2, 6))
    ids[:, 0] = 2
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    c_img = model.backbone.vision.out_dim
    with torch.no_grad():
        feats = model.features(pixels, ids, mask)  # (2, Cv + Ct)
        hidden = model.backbone.text(ids, mask)  # (2, L, Ct)
        changed = ids.clone()
        changed[:, 2] = (changed[:, 2] + 1 - 5) % (vocab_size - 5) + 5  # a non-CLS token
        feats2 = model.features(pixels, changed, mask)
        hidden2 = model.backbone.text(changed, mask)
    want = (
        hidden[:, 0] if pool == "cls" else (hidden * mask[..., None]).sum(1) / mask.sum(1)[:, None]
    )
    torch.testing.assert_close(feats[:, c_img:], want)
    torch.testing.assert_close(feats[:, c_img:], pool_text(hidden, mask, pool))
    torch.testing.assert_close(feats2[:, c_img:], pool_text(hidden2, mask, pool))
    assert not torch.allclose(feats[:, c_img:], feats2[:, c_img:])  # the head input moved
    torch.testing.assert_close(feats[:, :c_img], feats2[:, :c_img])  # the image half did not
