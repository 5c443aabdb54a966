"""How close sac_brc.py's update runs to the hardware: FLOPs, updates/s, fraction of peak,
compile time and memory per width; and end-to-end env steps/s with and without overlap.

    python benchmarks/bench_scale.py                                  # CPU-sized defaults
    python benchmarks/bench_scale.py --widths 1024 4096 8192 --batch 1024 --precisions f32 bf16
    python benchmarks/bench_scale.py --peak-tflops 989 495            # bf16 and f32 peaks, TFLOP/s
    python benchmarks/bench_scale.py --only e2e --tasks reach,drawer-close --width 128

FLOPs come from the shapes (`sac_brc.update_flops`); XLA's own estimate of the compiled
update is printed beside it as a check. The fraction of peak is against the device's
nominal dense matmul peak (defaults for common GPUs below, bf16 and TF32/f32; pass
--peak-tflops for others), and against the matmul rate measured here on one large product,
which is the only ceiling a CPU has. Prints markdown tables (docs/performance.md).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sac_brc import Actor, Args, Critic, count_parameters, make_agent, replay_buffer_bytes, replay_buffer_init, resolve_batch_size, update_flops

# Nominal dense matmul peaks in TFLOP/s (bf16, TF32 which XLA uses for float32 matmuls on these GPUs),
# matched as substrings of the device's name in this order: the PCIe and NVL H100s before the SXM one.
NOMINAL_PEAK_TFLOPS = {
    "H100 PCIe": (756.0, 378.0),
    "H100 NVL": (835.0, 417.5),
    "H100": (989.0, 494.7),
    "H200": (989.0, 494.7),
    "A100": (312.0, 156.0),
    "L40S": (362.0, 183.0),
    "RTX 4090": (165.0, 82.6),
}
# MT50 shapes (paper's main setting): 50 tasks, obs 39, action 4, 1e6 transitions per task
NUM_TASKS, OBS_DIM, ACT_DIM = 50, 39, 4


def nominal_peak(device_kind: str) -> tuple[float, float] | None:
    return next((peak for name, peak in NOMINAL_PEAK_TFLOPS.items() if name in device_kind), None)


def measured_matmul_tflops(dtype, size: int, repeats: int = 10) -> float:
    """Rate of one large square matmul: the practical ceiling on this device."""
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, b)
    out.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def filled_buffer(fns, capacity: int = 4096):
    buffer = fns.replicate(replay_buffer_init(NUM_TASKS, capacity, OBS_DIM, ACT_DIM))
    rng = np.random.default_rng(0)
    for _ in range(64):  # sampling cost does not depend on contents
        obs = rng.normal(size=(NUM_TASKS, OBS_DIM)).astype(np.float32)
        action = rng.uniform(-1, 1, (NUM_TASKS, ACT_DIM)).astype(np.float32)
        reward = rng.normal(size=NUM_TASKS).astype(np.float32)
        buffer = fns.insert(buffer, obs, action, reward, obs, np.zeros(NUM_TASKS, bool))
    return buffer


def bench_update(widths, batch, precisions, calls, peaks, ceilings) -> None:
    print(
        f"\n| width | precision | GFLOP per update | XLA's estimate | time to first update s | updates/s "
        f"| TFLOP/s | of nominal peak | of measured matmul rate | peak device memory GiB |"
        f"\n|---|---|---|---|---|---|---|---|---|---|"
    )
    scale = jnp.full(NUM_TASKS, 50.0)
    for width in widths:
        for precision in precisions:
            args = Args(width=width, batch_size=batch, precision=precision)
            flops = update_flops(args, NUM_TASKS, OBS_DIM, ACT_DIM, batch)
            start = time.perf_counter()
            state, fns = make_agent(args, NUM_TASKS, OBS_DIM, ACT_DIM, resolve_batch_size(args, NUM_TASKS), jax.random.key(0))
            buffer = filled_buffer(fns)
            compiled = fns.update.lower(state, buffer, scale, jax.random.key(1)).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost or {}
            # XLA counts the UTD scan's body once, and on GPU leaves out the library (cuBLAS) matmuls
            xla_flops = cost.get("flops", float("nan")) if jax.default_backend() == "cpu" else float("nan")
            state, metrics = compiled(state, buffer, scale, jax.random.key(1))
            jax.block_until_ready(metrics)
            first = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(calls):
                state, metrics = compiled(state, buffer, scale, jax.random.key(1))
            jax.block_until_ready(metrics)
            updates_per_s = calls * args.utd / (time.perf_counter() - start)
            tflops = flops * updates_per_s / 1e12
            index = 0 if precision == "bf16" else 1
            of_peak = f"{tflops / peaks[index]:.1%}" if peaks else "n/a"
            stats = jax.devices()[0].memory_stats() or {}
            memory = f"{stats['peak_bytes_in_use'] / 2**30:.1f}" if "peak_bytes_in_use" in stats else "n/a"
            print(
                f"| {width} | {precision} | {flops / 1e9:,.1f} | {xla_flops / 1e9:,.1f} | {first:.1f} "
                f"| {updates_per_s:.2f} | {tflops:.3g} | {of_peak} | {tflops / ceilings[precision]:.1%} "
                f"| {memory} |",
                flush=True,
            )
            del state, buffer, fns, compiled


def memory_plan(widths, batch) -> None:
    """Device memory each width needs for MT50 at the paper's settings (float32 master weights)."""
    print(
        "\n| width | critic params | critic + target GiB | AdamW moments GiB | actor + moments GiB "
        "| replay (MT50, 1e6 per task) GiB |\n|---|---|---|---|---|---|"
    )
    for width in widths:
        args = Args(width=width, batch_size=batch)
        key = jax.random.key(0)
        critic = count_parameters(eqx.filter_eval_shape(Critic, OBS_DIM, ACT_DIM, NUM_TASKS, args, key))
        actor = count_parameters(eqx.filter_eval_shape(Actor, OBS_DIM, ACT_DIM, NUM_TASKS, args.embedding_dim, args, key))
        gib = lambda n: f"{n / 2**30:.2f}"
        replay = replay_buffer_bytes(NUM_TASKS, 1_000_000, OBS_DIM, ACT_DIM)
        print(f"| {width} | {critic:,} | {gib(8 * critic)} | {gib(8 * critic)} | {gib(12 * actor)} | {gib(replay)} |")


def bench_overlap(tasks: str, width: int, batch: int, steps: int) -> None:
    """End-to-end env steps/s while training, --overlap vs --no-overlap, from sac_brc.py's own log."""
    print("\n| tasks | width | batch | overlap | env steps/s while training |\n|---|---|---|---|---|")
    for overlap in ("--overlap", "--no-overlap"):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, str(REPO / "sac_brc.py"), "--tasks", tasks, "--width", str(width),
                 "--batch-size", str(batch), "--learning-starts", "300", "--total-steps", str(300 + steps),
                 "--log-interval", str(steps // 5), "--eval-interval", "10000000", "--checkpoint-interval",
                 "10000000", "--no-checkpoint-replay", "--run-name", "bench", overlap],
                cwd=tmp, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"), check=False,
            )  # fmt: skip
        rates = [float(m) for m in re.findall(r"\| ([\d.]+) steps/s", out.stdout)]
        if out.returncode != 0 or len(rates) < 3:
            print(f"| {tasks} | {width} | {batch} | {overlap} | failed: {out.stderr[-300:]!r} |")
            continue
        rate = float(np.median(rates[-4:]))  # skip the interval that includes compilation
        print(f"| {tasks} | {width} | {batch} | {overlap[2:]} | {rate:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["update", "memory", "e2e"], default=None)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--precisions", nargs="+", default=["f32", "bf16"], choices=["f32", "bf16"])
    parser.add_argument("--calls", type=int, default=5, help="timed update calls (UTD 2 updates each)")
    parser.add_argument("--peak-tflops", type=float, nargs=2, metavar=("BF16", "F32"), default=None)
    parser.add_argument("--matmul-size", type=int, default=None, help="default 8192 on GPU, 2048 on CPU")
    parser.add_argument("--tasks", default="reach,drawer-close", help="end-to-end overlap benchmark tasks")
    parser.add_argument("--width", type=int, default=128, help="end-to-end overlap benchmark critic width")
    parser.add_argument("--train-steps", type=int, default=500)
    cli = parser.parse_args()
    device = jax.devices()[0]
    gpu = jax.default_backend() != "cpu"
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} CPU cores")
    if cli.only in (None, "memory"):
        memory_plan(cli.widths, cli.batch)
    if cli.only in (None, "update"):
        size = cli.matmul_size or (8192 if gpu else 2048)
        ceilings = {p: measured_matmul_tflops(jnp.bfloat16 if p == "bf16" else jnp.float32, size) for p in cli.precisions}
        peaks = tuple(cli.peak_tflops) if cli.peak_tflops else nominal_peak(device.device_kind)
        print("measured matmul rate (" + f"{size}^3): " + ", ".join(f"{p} {r:.2f} TFLOP/s" for p, r in ceilings.items())
              + (f"; nominal peak bf16 {peaks[0]}, f32 (TF32) {peaks[1]} TFLOP/s" if peaks else ""))  # fmt: skip
        bench_update(cli.widths, cli.batch, cli.precisions, cli.calls, peaks, ceilings)
    if cli.only in (None, "e2e"):
        bench_overlap(cli.tasks, cli.width, 256, cli.train_steps)


if __name__ == "__main__":
    main()
