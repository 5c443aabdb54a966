"""Throughput of drq_brc.py's parts: env steps/s, act, insert and update calls/s, and the
wall-clock they imply for the Atari-100k protocol (100k lockstep steps, UTD 2).

    python benchmarks/bench_drq_brc.py                            # CPU: 2 games, a few calls
    python benchmarks/bench_drq_brc.py --games 26 --calls 20      # GPU: the paper's setting

Prints markdown tables (docs/drq_brc.md holds the measured ones). The encoders are the
paper's (128, 256, 256) ("default") and Impala's original (16, 32, 32) ("tiny"); pass
--encoders to choose. The estimate is 100k x (env step + act + insert + update call): it
assumes no overlap of env stepping and learning, as drq_brc.py --no-overlap runs them.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from common.bronet import count_parameters
from common.suites import ATARI_100K, resolve_tasks
from drq_brc import Args, AtariGames, QNetwork, make_agent, replay_buffer_init

ENCODERS = {"default": (128, 256, 256), "tiny": (16, 32, 32)}


def bench_envs(games: int, steps: int) -> float:
    """Seconds per lockstep step of `games` games (one env each, random actions)."""
    tasks = resolve_tasks("atari")[:games]
    env = AtariGames(tasks, 1, seed=0, role="train", episodic_life=True, max_episode_steps=27_000)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 18, (steps, games)).astype(np.int32)
    env.step(actions[0])
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    seconds = (time.perf_counter() - start) / steps
    env.close()
    print(f"\n| games | lockstep steps/s | env steps/s (all games) |\n|---|---|---|\n"
          f"| {games} | {1 / seconds:.0f} | {games / seconds:.0f} |", flush=True)  # fmt: skip
    return seconds


def timed(fn, calls: int) -> tuple[float, float]:
    """(first call seconds, seconds per later call); `fn` returns something to block on."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return first, (time.perf_counter() - start) / calls


def bench_learner(games: int, encoders: list[str], batch: int, calls: int, env_seconds: float | None) -> None:
    print("\n| encoder | games | batch | params | update calls/s (UTD 2) | updates/s | act ms | insert ms "
          "| update compile s | est. steps/s | est. 100k-step wall-clock |\n"
          + "|---" * 11 + "|")  # fmt: skip
    for name in encoders:
        bench_encoder(name, games, batch, calls, env_seconds)


def bench_encoder(name: str, games: int, batch: int, calls: int, env_seconds: float | None) -> None:
    """One table row: act, insert and update timings of one encoder."""
    args = Args(channels=ENCODERS[name], batch_size=batch)
    params = count_parameters(eqx.filter_eval_shape(lambda k: QNetwork(games, args, k), jax.random.key(0)))
    state, fns = make_agent(args, games, jax.random.key(0))
    buffer = replay_buffer_init(games, 1_000)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (games, 84, 84)).astype(np.uint8)
    action, reward, no, yes = (
        np.zeros(games, np.int32),
        np.ones(games, np.float32),
        np.zeros(games, bool),
        np.ones(games, bool),
    )
    for step in range(64):  # sampling cost does not depend on the contents
        buffer = fns.insert(buffer, frame, action, reward, no, no, yes if step == 0 else no, yes)
    obs = jnp.asarray(rng.integers(0, 256, (games, 4, 84, 84)), jnp.uint8)
    task_ids, scale, eps = jnp.arange(games), jnp.ones(games), jnp.float32(0.01)
    _, act_s = timed(lambda: fns.act(state, obs, task_ids, eps, jax.random.key(0)), max(calls, 5))

    def insert_once():
        nonlocal buffer
        buffer = fns.insert(buffer, frame, action, reward, no, no, no, yes)
        return buffer.position

    _, insert_s = timed(insert_once, max(calls, 5))

    def update_once():
        nonlocal state
        state, metrics = fns.update(state, buffer, scale, jax.random.key(1))
        return metrics

    compile_s, update_s = timed(update_once, calls)
    step_s = update_s + act_s + insert_s + (env_seconds or 0.0)
    estimate = f"{100_000 * step_s / 3600:.1f} h" + ("" if env_seconds else " (no env time)")
    print(f"| {name} {ENCODERS[name]} | {games} | {batch} | {params / 1e6:.1f}M | {1 / update_s:.3g} "
          f"| {args.utd / update_s:.3g} | {1000 * act_s:.1f} | {1000 * insert_s:.2f} | {compile_s:.0f} "
          f"| {1 / step_s:.3g} | {estimate} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--games", type=int, default=2, help=f"games stepped in lockstep (max {len(ATARI_100K)})"
    )
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODERS), default=["tiny", "default"])
    parser.add_argument("--batch", type=int, default=256, help="minibatch size (paper: 256)")
    parser.add_argument(
        "--calls", type=int, default=3, help="timed update calls per encoder (after one compile call)"
    )
    parser.add_argument("--env-steps", type=int, default=500, help="timed lockstep env steps")
    parser.add_argument("--only", choices=["envs", "learner"], default=None)
    cli = parser.parse_args()
    if not 1 <= cli.games <= len(ATARI_100K):
        parser.error(f"--games must be in [1, {len(ATARI_100K)}]")
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"{os.cpu_count()} CPU cores")  # fmt: skip
    env_seconds = bench_envs(cli.games, cli.env_steps) if cli.only in (None, "envs") else None
    if cli.only in (None, "learner"):
        bench_learner(cli.games, cli.encoders, cli.batch, cli.calls, env_seconds)


if __name__ == "__main__":
    main()
