"""Scoring throughput at the 7B release shapes: hybrid_jax vs Hugging Face transformers.

Random weights, bf16, windows of `--seq_len` tokens; per-token loss of every target.
Run one implementation per process (JAX and torch each want the GPU's memory):

    python benchmarks/scoring.py --impl=jax --model=olmo3_7b --out=jax_olmo3.json
    python benchmarks/scoring.py --impl=hf --model=olmo3_7b --out=hf_olmo3.json
    python benchmarks/scoring.py --report jax_*.json hf_*.json     # ratio table

`--batch=1,2` times each batch size (windows per call) on the same weights, one
initialisation for all (a 7B random init takes a minute); so does
`--gdn_impl=pallas,pallas_unfused` for each GDN implementation (the hybrid's weights do
not depend on it), each batch size in turn, so that they are timed side by side.

The windows hold one document each (random token ids, no document boundaries), as
transformers scores them. `--segments=auto` hands the scorer what the scoring loop
does, `Batch.drop_trivial_segments()`: no document mask for such windows, so attention
takes cuDNN; `--segments=given` keeps the segment ids (attention then runs the Pallas
kernel, as packed windows with several documents do; the rows until 2026-11-23 were
taken this way).

hybrid_jax: `scoring.score.make_scorer` (hidden states, then the LM head in vocabulary
slices with float32 log-sum-exp, loss + entropy + rank). transformers: the model's
logits (bf16) and a float32 log-softmax gather of the targets, which is what scoring
with transformers means in practice. Not a test: run it on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def bench_jax(model: str, seq_len: int, batches: list[int], iters: int,
              gdn_impls: list[str], segments: str, profile: bool = False) -> list[dict]:
    from flax import nnx

    from hybrid_jax.models.lm import LM
    from hybrid_jax.models.presets import RELEASES
    from hybrid_jax.scoring.score import make_scorer
    from hybrid_jax.sharding import batch_sharding, create_sharded_params, make_mesh

    def config(gdn_impl):
        return RELEASES[model](dtype="bfloat16", param_dtype="bfloat16", gdn_impl=gdn_impl)

    cfgs = [config(impl) for impl in gdn_impls]  # (checks every name before the init)
    mesh = make_mesh({"data": -1})
    t0 = time.perf_counter()
    graphdef, params = create_sharded_params(lambda: LM(cfgs[0], rngs=nnx.Rngs(0)), mesh)
    init_s = time.perf_counter() - t0
    print(f"parameters initialised in {init_s:.1f} s", flush=True)
    # The other variants' graphdefs from abstract models: same params, other gdn_impl.
    graphdefs = [graphdef] + [
        nnx.split(nnx.eval_shape(lambda c=c: LM(c, rngs=nnx.Rngs(0))), nnx.Param)[0]
        for c in cfgs[1:]]
    scorers = [make_scorer(g, batch_sharding=batch_sharding(mesh)) for g in graphdefs]
    return [_time_jax(scorer, params, mesh, model, seq_len, batch, iters, init_s, impl,
                      segments, profile)
            for batch in batches for scorer, impl in zip(scorers, gdn_impls)]


def _time_jax(scorer, params, mesh, model, seq_len, batch, iters, init_s, gdn_impl,
              segments, profile):
    import jax
    import numpy as np

    from hybrid_jax.data.batch import Batch
    from hybrid_jax.sharding import batch_sharding

    rows = np.random.default_rng(0).integers(0, 100_000, (batch, seq_len + 1))
    data = Batch.from_rows(rows)
    if segments == "auto":
        data = data.drop_trivial_segments()
    data = jax.device_put(data, batch_sharding(mesh))
    # Compile and the first run timed apart: a slow first call is then one or the other.
    t0 = time.perf_counter()
    lowered = scorer.lower(params, data)
    lower_s = time.perf_counter() - t0
    print(f"lowered in {lower_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    print(f"compiled in {compile_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, data))
    first_run_s = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, data))
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    print(f"batch {batch}: {batch * seq_len / dt:,.0f} tokens/s", flush=True)
    row = {"impl": "hybrid_jax", "model": model, "seq_len": seq_len, "batch": batch,
           "window_s": dt, "tokens_per_s": batch * seq_len / dt, "init_s": init_s,
           "lower_s": lower_s, "compile_s": compile_s, "first_run_s": first_run_s,
           "device": jax.devices()[0].device_kind, "gdn_impl": gdn_impl,
           "segments": segments, "segment_ids_passed": data.segment_ids is not None}
    if profile:
        from op_profile import print_profile, profile_ops  # benchmarks/ is on sys.path

        row["profile"] = profile_ops(compiled, params, data)
        print_profile(row["profile"])
    return row


def hf_config(model: str):
    """The release configs of reference/olmo_architectures.md, for random-weight models."""
    if model == "olmo3_7b":
        from transformers import Olmo3Config

        layer_types = ["full_attention" if i % 4 == 3 else "sliding_attention"
                       for i in range(32)]
        return Olmo3Config(
            vocab_size=100278, hidden_size=4096, intermediate_size=11008,
            num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
            max_position_embeddings=65536, rms_norm_eps=1e-6, sliding_window=4096,
            layer_types=layer_types, pad_token_id=100277, eos_token_id=100257,
            tie_word_embeddings=False, rope_theta=500000.0,
            rope_scaling={"rope_type": "yarn", "factor": 8.0,
                          "original_max_position_embeddings": 8192, "beta_fast": 32,
                          "beta_slow": 1, "attention_factor": 1.2079441541679836})
    from transformers import OlmoHybridConfig

    return OlmoHybridConfig(
        vocab_size=100352, hidden_size=3840, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=30, num_key_value_heads=30, linear_num_key_heads=30,
        linear_num_value_heads=30, linear_key_head_dim=96, linear_value_head_dim=192,
        linear_conv_kernel_dim=4, linear_allow_neg_eigval=True,
        rope_parameters={"rope_theta": None}, max_position_embeddings=65536,
        rms_norm_eps=1e-6, pad_token_id=100277, eos_token_id=100257,
        tie_word_embeddings=False)


def bench_hf(model: str, seq_len: int, batches: list[int], iters: int,
             attn: str) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        m = AutoModelForCausalLM.from_config(hf_config(model), torch_dtype=torch.bfloat16,
                                             attn_implementation=attn)
    m.eval()
    init_s = time.perf_counter() - t0
    return [_time_hf(m, model, seq_len, batch, iters, init_s, attn) for batch in batches]


def _time_hf(m, model, seq_len, batch, iters, init_s, attn):
    import torch
    import transformers

    ids = torch.randint(0, 100_000, (batch, seq_len + 1), device="cuda")

    @torch.no_grad()
    def run():
        logits = m(ids[:, :-1]).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        return -logp.gather(-1, ids[:, 1:, None])[..., 0]

    run()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    print(f"batch {batch}: {batch * seq_len / dt:,.0f} tokens/s", flush=True)
    return {"impl": "transformers", "model": model, "seq_len": seq_len, "batch": batch,
            "window_s": dt, "tokens_per_s": batch * seq_len / dt, "init_s": init_s,
            "attn": attn, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name()}


def report(files: list[str]) -> None:
    rows = []
    for f in files:
        with open(f) as fh:
            r = json.load(fh)
        rows.extend(r if isinstance(r, list) else [r])
    print(f"{'model':<16}{'batch':>6}  {'impl':<22}{'tokens/s':>12}{'vs transformers':>18}")
    for model, batch in sorted({(r["model"], r.get("batch", 1)) for r in rows}):
        group = [r for r in rows if r["model"] == model and r.get("batch", 1) == batch]
        hf = next((r for r in group if r["impl"] == "transformers"
                   and "tokens_per_s" in r), None)
        for r in group:
            if "tokens_per_s" not in r:
                print(f"{model:<16}{batch:>6}  {r['impl']:<14} {r.get('error')}")
                continue
            ratio = f"{r['tokens_per_s'] / hf['tokens_per_s']:.2f}x" if hf else "-"
            impl = r["impl"] + (f"[{r['segments']}]" if "segments" in r else "")
            print(f"{model:<16}{batch:>6}  {impl:<22}{r['tokens_per_s']:>12,.0f}"
                  f"{ratio:>18}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=["jax", "hf"])
    p.add_argument("--model", default="olmo3_7b", choices=["olmo3_7b", "olmo_hybrid_7b"])
    p.add_argument("--seq_len", type=int, default=8192)
    p.add_argument("--batch", default="1", help="windows per call; a list times each")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--gdn_impl", default="auto", help="hybrid: a list times each")
    p.add_argument("--segments", default="auto", choices=["auto", "given"],
                   help="auto: as the scoring loop (no mask for one-document windows); "
                        "given: segment ids passed (attention through Pallas)")
    p.add_argument("--profile", action="store_true",
                   help="jax: also trace the scorer and list its device time by kernel "
                        "and category (op_profile.py)")
    p.add_argument("--attn", default="sdpa", help="transformers attn_implementation")
    p.add_argument("--out", default="scoring.json")
    p.add_argument("--report", nargs="*")
    args = p.parse_args()
    if args.report:
        report(args.report)
        return
    batches = [int(x) for x in args.batch.split(",")]
    try:
        if args.impl == "jax":
            r = bench_jax(args.model, args.seq_len, batches, args.iters,
                          args.gdn_impl.split(","), args.segments, args.profile)
        else:
            r = bench_hf(args.model, args.seq_len, batches, args.iters, args.attn)
    except Exception as e:  # keep the error in the results: a run that failed is a result
        r = [{"impl": "hybrid_jax" if args.impl == "jax" else "transformers",
              "model": args.model, "batch": batches[0],
              "error": f"{type(e).__name__}: {e}"[:400]}]
    print(json.dumps(r, indent=2))
    with open(args.out, "w") as f:
        json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
