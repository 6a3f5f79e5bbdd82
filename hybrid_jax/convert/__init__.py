"""Hugging Face Olmo 3 / Olmo Hybrid checkpoints <-> hybrid_jax."""
