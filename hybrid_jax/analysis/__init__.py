"""Token-level gap analysis: which tokens does model B predict better than model A, and why.

Reads per-token score tables (parquet; `table.py`), never a model: numpy, pandas,
statsmodels, matplotlib, spaCy and NLTK only, and no jax. Modules, in data-flow order:

    table      schema, loading, validation, row-alignment checks, documents and
               their digests
    synthetic  a deterministic word-piece tokenizer and synthetic tables (tests, demos)
    families   the study's tag families and code/markup categories (int64 bit masks)
    tagging    taggers (NLTK Brown-trained, spaCy) behind one interface
    syntax     Python / HTML / LaTeX categories and brackets
    align      tokens <-> words by character-span overlap
    repeats    repeated n-gram length and previous-occurrence distance (numpy only)
    filters    the filtered losses ALL / content-not-repeated / repeated-5-gram (numpy only)
    features   the per-token feature table
    gaps       per-category gaps with cluster-bootstrap CIs (documents resampled)
    ranking    per-tag masks and the TOP-10∩NO-COPY ranking (list, report, cross-fit)
    multiple   Holm / Benjamini-Hochberg within each table, flagging thin rows
    filtered   filtered losses of every table, paired filtered gaps of every two models
    regression OLS of the gap on categories with the study's controls
    probes     synthetic probes scored through a `score_fn`
    pipeline   everything above, end to end
    figures, report, token_view   what people look at

This package imports nothing at import time, so `filters` stays light for the training
loop.
"""
