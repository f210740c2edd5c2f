"""Downstream metrics: AUC (auc.py), VQA accuracy/score (vqa.py), BLEU/ROUGE-L/CIDEr-D
(captions.py), the rule-based CheXpert-style labeler and clinical efficacy (labeler.py), and
`score_task` over JSONL predictions/references (score.py). Import the submodules directly; this
package imports nothing heavy."""
