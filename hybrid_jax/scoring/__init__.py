"""Per-token scoring of token windows."""
