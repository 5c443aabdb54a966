"""Throughput of offline_brc_bc.py's update, and whether streaming batches from host memory stalls it.

    python benchmarks/bench_offline_brc_bc.py                       # widths 256 and 1024 (+2048, 4096 on a GPU)
    python benchmarks/bench_offline_brc_bc.py --widths 256 --calls 3

For each width: updates/s with batches sampled, gathered and copied by offline_brc_bc's
background BatchStream (what a run does), updates/s on one device-resident batch stack
reused (no host work at all: the ceiling), the stall (1 - streamed / ceiling), and the
host's own time to sample and gather one call's batches. Data: a synthetic MetaWorld-sized
dataset (2 tasks, obs 39, action 4, `--transitions` per task) in host memory.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax
import jax.numpy as jnp
import numpy as np

from common.dataset import Dataset
from offline_brc_bc import Args, BatchStream, make_agent, sample_batches


def synthetic_dataset(transitions: int, num_tasks: int = 2, obs_dim: int = 39, act_dim: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    n = transitions * num_tasks
    done = np.arange(n) % 200 == 199
    return Dataset(
        [None] * num_tasks,
        rng.normal(size=(n, obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rng.uniform(0, 1, n).astype(np.float32),
        rng.normal(size=(n, obs_dim)).astype(np.float32),
        np.zeros(n, bool),
        done,
        np.arange(num_tasks + 1, dtype=np.int64) * transitions,
        {},
    )


def bench(width: int, batch: int, updates_per_call: int, calls: int, dataset: Dataset) -> str:
    args = Args(width=width, batch_size=batch, updates_per_call=updates_per_call)
    num_tasks = len(dataset.tasks)
    state, fns = make_agent(args, [dataset.action.shape[1]] * num_tasks, dataset.obs.shape[1], jax.random.key(0))
    max_abs_return = jnp.full(num_tasks, 50.0)
    key = jax.random.key(1)

    start = time.perf_counter()
    host = [sample_batches(dataset, batch, updates_per_call, 0, c) for c in range(3)]
    host_ms = (time.perf_counter() - start) / 3 * 1000

    fixed = jax.device_put(host[0])
    start = time.perf_counter()
    state, metrics = fns.update(state, fixed, max_abs_return, key)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = fns.update(state, fixed, max_abs_return, key)
    jax.block_until_ready(metrics)
    ceiling = calls * updates_per_call / (time.perf_counter() - start)

    stream = BatchStream(dataset, batch, updates_per_call, 0, 0, prefetch=4)
    try:
        stream.get()  # let the thread start; the first stack is not timed
        start, stream.wait_s = time.perf_counter(), 0.0
        for _ in range(calls):
            state, metrics = fns.update(state, stream.get(), max_abs_return, key)
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
    finally:
        stream.close()
    streamed = calls * updates_per_call / elapsed
    return (f"| {width} | {batch} | {updates_per_call} | {streamed:.1f} | {ceiling:.1f} | "
            f"{100 * max(0.0, 1 - streamed / ceiling):.0f}% | {100 * stream.wait_s / elapsed:.0f}% | "
            f"{host_ms:.0f} | {compile_s:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--updates-per-call", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=200_000, help="per task")
    cli = parser.parse_args()
    gpu = jax.default_backend() != "cpu"
    widths = cli.widths or ([256, 1024] + ([2048, 4096] if gpu else []))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"{os.cpu_count()} CPU cores")  # fmt: skip
    dataset = synthetic_dataset(cli.transitions)
    print("\n| width | batch | updates per call | updates/s streamed | updates/s device-resident batch "
          "| stall | loop waiting on data | host sample+gather ms per call | first call (compile) s |"
          "\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for width in widths:
        print(bench(width, cli.batch, cli.updates_per_call, cli.calls, dataset), flush=True)


if __name__ == "__main__":
    main()
