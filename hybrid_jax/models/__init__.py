"""Flax NNX modules of hybrid_jax language models."""
