"""Throughput of sac_brc.py's parts on this machine: env steps/s, updates/s, end-to-end steps/s.

    python benchmarks/bench_sac_brc.py                 # everything, CPU-sized
    python benchmarks/bench_sac_brc.py --only update   # one part
    python benchmarks/bench_sac_brc.py --only envs --suites mw --env-workers 1 2   # MT50, both backends

Prints markdown tables (docs/performance.md holds the measured ones). On a GPU the
update table also covers widths 2048 and 4096.
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

import jax
import jax.numpy as jnp
import numpy as np

from common.envs import MultiTaskEnv, available_cores, runs_in_worker, with_shadowhand_assets
from common.suites import resolve_tasks
from sac_brc import Args, make_agent, replay_buffer_init, resolve_batch_size


def bench_envs(steps: int, suites: list[str], backends: list[str], workers: list[int | None]) -> None:
    """Random actions, all tasks in lockstep, resets included (a MetaWorld episode is 200 steps)."""
    print("\n| suite | tasks | MetaWorld backend | env workers | env steps/s (all tasks) | lockstep steps/s |"
          "\n|---|---|---|---|---|---|")  # fmt: skip
    for suite in suites:
        tasks = with_shadowhand_assets(resolve_tasks(suite), None, whole_suite=True)  # $BRC_SHADOWHAND_ASSETS
        has_mw = any(t.domain == "metaworld" for t in tasks)
        for backend in backends if has_mw else backends[:1]:
            in_workers = any(runs_in_worker(t, backend) for t in tasks)
            for num_workers in workers if in_workers else workers[:1]:
                env = MultiTaskEnv(tasks, mw_backend=backend, num_workers=num_workers)
                env.reset()
                rng = np.random.default_rng(0)
                actions = rng.uniform(-1, 1, (steps, env.num_envs, env.act_dim)).astype(np.float32)
                env.step(actions[0])
                start = time.perf_counter()
                for a in actions:
                    env.step(a)
                rate = steps / (time.perf_counter() - start)
                env.close()
                shown = (num_workers or available_cores()) if in_workers else "-"
                print(f"| {suite} | {len(tasks)} | {backend if has_mw else '-'} | {shown} | {rate * len(tasks):.0f} "
                      f"| {rate:.1f} |", flush=True)  # fmt: skip


def bench_update(widths: list[int], batches: list[int], calls: int) -> None:
    print("\n| width | batch | update calls/s (UTD 2) | updates/s | samples/s | first call (compile) s |"
          "\n|---|---|---|---|---|---|")  # fmt: skip
    num_tasks, obs_dim, act_dim = 2, 17, 6  # two DMC tasks, as dmc-easy
    for batch in batches:
        for width in widths:
            args = Args(width=width, batch_size=batch)
            state, fns = make_agent(args, num_tasks, obs_dim, act_dim, resolve_batch_size(args, num_tasks), jax.random.key(0))
            buffer = replay_buffer_init(num_tasks, 10_000, obs_dim, act_dim)
            rng = np.random.default_rng(0)
            for _ in range(64):  # some real data; sampling cost does not depend on contents
                obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
                act = rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32)
                buffer = fns.insert(buffer, obs, act, np.ones(num_tasks, np.float32), obs,
                                    np.zeros(num_tasks, bool))  # fmt: skip
            scale = jnp.full(num_tasks, 50.0)
            start = time.perf_counter()
            state, metrics = fns.update(state, buffer, scale, jax.random.key(1))
            jax.block_until_ready(metrics)
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(calls):
                state, metrics = fns.update(state, buffer, scale, jax.random.key(1))
            jax.block_until_ready(metrics)
            rate = calls / (time.perf_counter() - start)
            print(f"| {width} | {batch} | {rate:.2f} | {rate * args.utd:.2f} | {rate * args.utd * batch:,.0f} "
                  f"| {compile_s:.1f} |", flush=True)  # fmt: skip


def bench_end_to_end(configs: list[tuple[str, int, int]], steps: int) -> None:
    """Env steps/s while training: act + env step + insert + UTD-2 update, from sac_brc.py's own log."""
    print("\n| tasks | width | batch | env steps/s while training | ms per step |\n|---|---|---|---|---|")
    for tasks, width, batch in configs:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, str(REPO / "sac_brc.py"), "--tasks", tasks, "--width", str(width),
                 "--batch-size", str(batch), "--learning-starts", "300", "--total-steps", str(300 + steps),
                 "--log-interval", str(steps // 4), "--eval-interval", "1000000", "--checkpoint-interval",
                 "1000000", "--no-checkpoint-replay", "--run-name", "bench"],
                cwd=tmp, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"), check=False,
            )  # fmt: skip
        rates = [float(m) for m in re.findall(r"\| ([\d.]+) steps/s", out.stdout)]
        if out.returncode != 0 or len(rates) < 2:
            print(f"| {tasks} | {width} | {batch} | failed: {out.stderr[-300:]!r} | |")
            continue
        rate = float(np.median(rates[-3:]))  # skip the interval that includes compilation
        print(f"| {tasks} | {width} | {batch} | {rate:.1f} | {1000 / rate:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["envs", "update", "e2e"], default=None)
    parser.add_argument("--env-steps", type=int, default=1000)
    parser.add_argument("--suites", nargs="+", default=["dmc-easy", "mw-easy", "dmc-dogs", "mw"])
    parser.add_argument("--mw-backends", nargs="+", default=["metaworld", "envpool"])
    parser.add_argument("--env-workers", nargs="+", type=int, default=None,
                        help="worker process counts to try (default: one per CPU core)")
    parser.add_argument("--update-calls", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=400)
    cli = parser.parse_args()
    gpu = jax.default_backend() != "cpu"
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"{os.cpu_count()} CPU cores")  # fmt: skip
    if cli.only in (None, "envs"):
        bench_envs(cli.env_steps, cli.suites, cli.mw_backends, cli.env_workers or [None])
    if cli.only in (None, "update"):
        bench_update([256, 512, 1024] + ([2048, 4096] if gpu else []), [256, 1024], cli.update_calls)
    if cli.only in (None, "e2e"):
        configs = [("cartpole-swingup", 256, 256), ("cartpole-swingup,cheetah-run", 256, 1024)]
        if gpu:
            configs.append(("cartpole-swingup,cheetah-run", 4096, 1024))
        bench_end_to_end(configs, cli.train_steps)


if __name__ == "__main__":
    main()
