"""Documents, tokenizers and packed token windows."""
