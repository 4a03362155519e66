"""sweeper: sweeps of full fine-tuning, adapters and LoRA for code-change models."""

__version__ = "0.1.0"
