"""GPU acceptance run of the conversion (not a pytest test): real 7B shapes, random weights.

    PYTHONPATH=. python tests/convert/gpu_release_parity.py olmo3 4500
    PYTHONPATH=. python tests/convert/gpu_release_parity.py olmo_hybrid 4096
    (TINY=1 for a CPU dry run of the script at toy width)

transformers builds the release architecture from its config (bf16, random init, 1-d
weights perturbed by 0.05 randn) and saves it; `python -m hybrid_jax.apps.convert` converts
it on the host (time and peak RSS measured); then logits and per-layer outputs of
hybrid_jax (bf16, GPU) and transformers (bf16 and fp32, eager attention) are compared on
T random tokens. The bf16 criterion: hybrid_jax's error against transformers fp32 is no
larger than transformers' own bf16 error against its fp32. Writes $OUT/gpu7b_<kind>.json.
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

kind, T = sys.argv[1], int(sys.argv[2])
OUT = os.environ.get("OUT", "/tmp/out")
work = f"/tmp/w_{kind}"
os.makedirs(work, exist_ok=True)
res = {"kind": kind, "tokens": T, "transformers": transformers.__version__,
       "torch": torch.__version__}
from tests.convert.test_hf_config import HYBRID_RELEASE, OLMO3_RELEASE  # noqa: E402

hf_cfg = dict(OLMO3_RELEASE if kind == "olmo3" else HYBRID_RELEASE)
if os.environ.get("TINY"):  # local dry run of this script
    hf_cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4,
                  layer_types=hf_cfg["layer_types"][:4])
    if kind != "olmo3":
        hf_cfg.update(linear_num_key_heads=4, linear_num_value_heads=4,
                      linear_key_head_dim=12, linear_value_head_dim=24)
cfg = transformers.AutoConfig.for_model(**hf_cfg)
dev = "cuda" if torch.cuda.is_available() else "cpu"
t = time.time()
torch.manual_seed(0)
with torch.device(dev):
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16,
                                                          attn_implementation="eager")
with torch.no_grad():
    for _, p in model.named_parameters():
        if p.ndim == 1:  # norms (init 1), A_log, dt_bias: make a misplaced one show
            p.add_(0.05 * torch.randn_like(p))
model.eval()
res["params"] = sum(p.numel() for p in model.parameters())
hf_dir = f"{work}/hf"
model.save_pretrained(hf_dir, max_shard_size="5GB")
res["hf_build_save_s"] = time.time() - t
print(res, flush=True)

# --- convert (host only), measuring time and the child's peak RSS
t = time.time()
env = dict(os.environ, JAX_PLATFORMS="cpu")
p = subprocess.run([sys.executable, "-m", "hybrid_jax.apps.convert", f"--input_dir={hf_dir}",
                    f"--output_dir={work}/ckpt", "--dtype=bfloat16", "--overwrite"],
                   env=env, capture_output=True, text=True)
print(p.stdout[-2000:], p.stderr[-3000:] if p.returncode else "", flush=True)
assert p.returncode == 0
res["convert_s"] = time.time() - t
res["convert_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
res["checkpoint_gib"] = sum(os.path.getsize(os.path.join(hf_dir, f))
                            for f in os.listdir(hf_dir)) / 2**30
print(res, flush=True)

from hybrid_jax.convert import parity  # noqa: E402

toks = np.random.default_rng(0).integers(0, 100278, (1, T))
hb = parity.hf_layer_outputs(model, toks)
model.float()
hf32 = parity.hf_layer_outputs(model, toks)
del model
if dev == "cuda":
    torch.cuda.empty_cache()

import jax  # noqa: E402

from hybrid_jax.convert.checkpoint import load_model  # noqa: E402

t = time.time()
jm = load_model(f"{work}/ckpt")
res["jax_load_s"] = time.time() - t
res["jax_device"] = str(jax.devices()[0])
jx = parity.jax_layer_outputs(jm, toks)


def stats(a, b):
    d = np.abs(a.astype(np.float64) - b)
    return {"max": float(d.max()), "mean": float(d.mean())}


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


res["logits"] = {"jax_bf16_vs_hf_bf16": stats(jx.logits, hb.logits),
                 "jax_bf16_vs_hf_fp32": stats(jx.logits, hf32.logits),
                 "hf_bf16_vs_hf_fp32": stats(hb.logits, hf32.logits),
                 "max_abs_logit_fp32": float(np.abs(hf32.logits).max()),
                 "argmax_agree_jax_vs_hf32":
                     float((jx.logits.argmax(-1) == hf32.logits.argmax(-1)).mean()),
                 "argmax_agree_hfbf16_vs_hf32":
                     float((hb.logits.argmax(-1) == hf32.logits.argmax(-1)).mean())}
res["layers_rel_max"] = {
    "jax_bf16_vs_hf_fp32": [rel(a, b) for a, b in zip(jx.outputs, hf32.outputs, strict=True)],
    "hf_bf16_vs_hf_fp32": [rel(a, b) for a, b in zip(hb.outputs, hf32.outputs, strict=True)]}
print(json.dumps(res, indent=1), flush=True)
os.makedirs(OUT, exist_ok=True)
with open(f"{OUT}/gpu7b_{kind}.json", "w") as f:
    json.dump(res, f, indent=1)
