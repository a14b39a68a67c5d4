"""The sampling benchmark's measurements on a GPU, plus checks of the GPU code paths.

One command, under 5 minutes on a recent GPU::

    python benchmarks/gpu_check.py --device cuda

It runs (gibbsebm on ``--device``; Pyro NUTS on the CPU, as its users run it):

1. device placement: the draws, every per-draw statistic and the adapted parameters of an
   ``hmc`` run live on the device (nothing silently falls back to the CPU);
2. no host syncs: after warmup, ``hmc.step`` and ``mala.step`` are run under
   ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising call
   (``.item()``, ``.cpu()``, ``nonzero`` ...); a whole ``gibbsebm.sample`` call without warmup
   is run under ``"warn"`` and its sync warnings are counted (the driver's final copies are
   allowed there, but reported);
3. the benchmark rows of :mod:`sampling_benchmark` (min bulk ESS/s with warmup included, and the
   correctness checks) for ``hmc`` and ``mala`` at 1 to 65536 chains on T1-T4, ``pt`` on T3,
   Pyro NUTS (1 chain) on T2 for the speed-up ratio;
4. the fraction of wall time inside the energy and its gradient for ``hmc`` at 4096 chains.

Results go to ``benchmarks/results/gpu_check.json`` (and a short table on stdout). With
``--device cpu`` it runs the same code on the CPU with tiny budgets (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: (num_warmup, num_samples) per chain count on the GPU.
GPU_BUDGET = {1: (300, 500), 16: (300, 300), 256: (300, 200), 4096: (200, 100), 65536: (200, 50)}
#: Tiny budgets for a CPU smoke run.
SMOKE_BUDGET = {1: (60, 50), 16: (60, 30), 256: (60, 20)}


def check_placement(target, device: str, seed: int) -> dict:
    """Every tensor of an ``hmc`` run's result is on ``device``."""
    import torch

    import gibbsebm

    dist = target.torch_dist(device)
    s = gibbsebm.sample(
        dist, "hmc", num_chains=8, num_samples=5, num_warmup=20, seed=seed, progress=False
    )
    want = torch.device(device)
    bad = [k for k, v in s.stats.items() if v.device.type != want.type]
    if s.draws.device.type != want.type:
        bad.append("draws")
    return {"passed": not bad, "off_device": bad, "draws_device": str(s.draws.device)}


def check_no_sync(target, device: str, seed: int) -> dict:
    """Kernel steps raise under ``set_sync_debug_mode("error")`` if they synchronise."""
    import torch

    import gibbsebm
    from gibbsebm.run import flat_logdensity
    from gibbsebm.samplers import hmc, mala

    out: dict = {}
    if not device.startswith("cuda"):
        return {"skipped": "sync debug mode needs CUDA"}
    dist = target.torch_dist(device)
    ld = flat_logdensity(dist)
    s = gibbsebm.sample(
        dist, "hmc", num_chains=256, num_samples=2, num_warmup=100, seed=seed, progress=False
    )
    y = s.draws[:, -1].contiguous()
    g = torch.Generator(device=device).manual_seed(seed)
    for name, mod, params in (
        ("hmc", hmc, {"step_size": float(s.adaptation["step_size"]), "num_steps": 8}),
        ("mala", mala, {"step_size": 0.01}),
    ):
        state = mod.init(y, ld)
        torch.cuda.synchronize()
        try:
            torch.cuda.set_sync_debug_mode("error")
            for _ in range(5):
                state, info = mod.step(g, state, ld, **params)
            out[name] = {"passed": True}
        except RuntimeError as exc:
            out[name] = {"passed": False, "error": str(exc)[:300]}
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # the whole driver without warmup: count the sync warnings it emits
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            gibbsebm.sample(
                dist,
                "hmc",
                num_chains=256,
                num_samples=20,
                num_warmup=0,
                seed=seed,
                progress=False,
                step_size=0.1,
                num_steps=8,
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    msgs = [str(w.message)[:160] for w in caught if "synchroniz" in str(w.message).lower()]
    out["driver_no_warmup"] = {
        "sync_warnings": len(msgs),
        "examples": msgs[:3],
        "num_transitions": 20,
    }
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=20260128)
    p.add_argument("--targets", default="T1,T2,T3,T4")
    p.add_argument("--chains", default="", help="comma-separated subset of the chain counts")
    p.add_argument("--out", default=str(HERE / "results" / "gpu_check.json"))
    args = p.parse_args(argv)

    import sampling_benchmark as sb
    import torch
    from _targets import TARGETS

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: run with --device cpu for a smoke test")
    torch.set_num_threads(1)
    budget = GPU_BUDGET if args.device.startswith("cuda") else SMOKE_BUDGET
    chains = sorted(budget)
    if args.chains:
        chains = [int(c) for c in args.chains.split(",") if c]
        budget = {c: budget.get(c, GPU_BUDGET.get(c, (100, 50))) for c in chains}
    keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    t_start = time.perf_counter()
    result: dict = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "budget": {str(k): v for k, v in budget.items()},
    }
    result["placement"] = check_placement(TARGETS["T2"], args.device, args.seed)
    sb._log(f"placement: {result['placement']}")
    result["no_sync"] = check_no_sync(TARGETS["T4"], args.device, args.seed)
    sb._log(f"no host sync: {result['no_sync']}")

    # reference for T4 without JAX: a long gibbsebm hmc run on the device (1024 chains)
    reference = None
    if "T4" in keys:
        from _targets import reference_summary

        import gibbsebm

        t4 = TARGETS["T4"]
        n_ref = 1024 if args.device.startswith("cuda") else 16
        init = torch.as_tensor(
            t4.init(n_ref, np.random.default_rng(args.seed + 7)), device=args.device
        )
        s = gibbsebm.sample(
            t4.torch_dist(args.device),
            "hmc",
            num_chains=n_ref,
            num_samples=400 if n_ref > 16 else 100,
            num_warmup=400,
            seed=args.seed + 7,
            init=init,
            progress=False,
        )
        reference = reference_summary(s.draws.double().cpu().numpy())
        reference["sampler"] = f"gibbsebm hmc, {n_ref} chains (independent seed)"
        result["reference"] = reference

    rows = []
    for key in keys:
        target = TARGETS[key]
        ref = reference if target.needs_reference else None
        methods = [("hmc", {}), ("mala", {})] + ([("pt", {"kernel": "hmc"})] if key == "T3" else [])
        for method, opts in methods:
            for c in chains:
                if method == "pt" and c > 4096:
                    continue
                sb._log(f"{key} {method} x{c}")
                try:
                    row = sb.run_gibbsebm(
                        target, method, c, budget[c], args.seed, args.device, ref, **opts
                    )
                    sb._log(
                        f"  -> wall {row['wall_s']:.1f}s ESS/s {row['ess_per_s']:.3g} "
                        f"check {row['check'].get('passed')}"
                    )
                except Exception as exc:
                    traceback.print_exc()
                    row = {"target": key, "method": method, "chains": c, "error": repr(exc)}
                rows.append(row)
    if "T2" in keys:
        sb._log("T2 pyro nuts x1 (CPU)")
        pyro_budget = budget.get(1, GPU_BUDGET[1] if args.device.startswith("cuda") else (60, 50))
        rows.append(sb.run_pyro_nuts(TARGETS["T2"], pyro_budget, args.seed))
    result["rows"] = rows
    fractions = []
    big = 4096 if args.device.startswith("cuda") else max(chains)
    for key in [k for k in keys if k != "T1"]:
        sb._log(f"{key} energy fraction x{big}")
        fractions.append(sb.energy_fraction(TARGETS[key], big, budget[big], args.seed, args.device))
    result["energy_fraction"] = fractions
    ok = [r for r in rows if "error" not in r]
    result["goals"] = sb.evaluate_goals(ok, fractions, max(chains))
    result["total_s"] = time.perf_counter() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"\n{'target':6} {'method':6} {'chains':>7} {'wall s':>8} {'ESS/s':>10}  check")
    for r in ok:
        print(
            f"{r['target']:6} {r['method']:6} {r['chains']:>7} {r['wall_s']:>8.2f} "
            f"{r['ess_per_s']:>10.4g}  {r['check'].get('passed')}"
        )
    for f in fractions:
        print(f"energy+grad fraction {f['target']} x{f['chains']}: {f['fraction']:.0%}")
    print(f"wrote {args.out} in {result['total_s']:.0f}s")
    return result


if __name__ == "__main__":
    main()
