"""Downstream fine-tuning on the pretraining engine: classification, VQA, report generation.

`medtrain finetune cls|vqa|report --init RUN_DIR --preset P --set ...`; the task registry is
tasks/__init__.py, the loop is loop.py (DeepSpeed, checkpoints, guard, tensorboard as
pretraining), the metrics are medtrain.eval.metrics (the same scorers as `medtrain score`).
"""
