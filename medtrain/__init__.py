"""medtrain: medical vision-language pretraining (Swin + BERT + cross-modal fusion) on DeepSpeed."""

__version__ = "0.1.0"
