"""Downstream heads on the pretrained MedVLP backbone (fine-tuning: medtrain/finetune/)."""
