"""Hugging Face Olmo 3 / Olmo Hybrid checkpoints <-> hybrid_jax.

    hf_config       config.json <-> ModelConfig (olmo3, olmo_hybrid)
    key_map         HF tensor names <-> NNX parameter paths, per-leaf layout transforms
    safetensors_io  streaming / sliced reads, sharded loads onto a mesh, writes
    checkpoint      orbax parameter checkpoints + model_config.json; HF -> checkpoint
    export          hybrid_jax -> HF directory (bit-exact round trip)
    parity          logits and per-layer differences against transformers

The releases' tokenizer (tokenizer.json) is `hybrid_jax.data.hf_tokenizer`.
"""
