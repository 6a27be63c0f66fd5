"""Closing the loop: synthetic data, corpus, LoRA trainer, adapter registry, reviewer."""
