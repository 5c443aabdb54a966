"""How long a checkpoint stalls training, and how long --resume takes to verify and load it, on
stand-ins of a chosen size (common/run.py save_checkpoint / load_checkpoint).

    python benchmarks/bench_checkpoint.py --state-gib 0.25 --replay-gib 1   # CPU-sized
    python benchmarks/bench_checkpoint.py --state-gib 2.2 --replay-gib 17   # MT50 at width 4096

MT50 at width 4096: the state is the critic ensemble and its target (136M parameters each,
float32), their two AdamW moments and the actor (about 2.2 GiB); the replay holds 50 tasks x
1M transitions of (39 + 4 + 39 + 2) float32s (about 17 GiB at the default --buffer-size).
Prints one markdown row per part; the stall is everything `save_checkpoint` does, since the
training loop waits for it.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax.numpy as jnp
import numpy as np

from common import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-gib", type=float, default=0.25)
    parser.add_argument("--replay-gib", type=float, default=1.0)
    parser.add_argument("--dir", default=None, help="where to write (default a temporary folder)")
    args = parser.parse_args()
    state = {"critic": jnp.ones((int(args.state_gib * 2**30) // 4,), jnp.float32)}
    rows = int(args.replay_gib * 2**30) // (4 * 84)  # (39 + 4 + 39 + 2) float32s per transition
    replay = {"obs": np.random.default_rng(0).random((rows, 84), np.float32), "position": np.zeros(1),
              "size": np.array([rows])}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        run_dir = Path(tmp)
        timed = {}
        original = run.checksum

        def counted(path):
            start = time.perf_counter()
            crc = original(path)
            timed["checksum"] = timed.get("checksum", 0.0) + time.perf_counter() - start
            return crc

        run.checksum = counted
        start = time.perf_counter()
        run.save_checkpoint(run_dir, 1, state, {"env_step": 1}, replay)
        timed["save (stall)"] = time.perf_counter() - start
        timed["of which the manifest's CRC-32"] = timed.pop("checksum")
        start = time.perf_counter()
        run.load_checkpoint(run_dir, state)
        with np.load(run_dir / "checkpoints" / "step_000000001" / "replay.npz") as data:
            data["obs"].sum()
        timed["resume: verify + load"] = time.perf_counter() - start
        run.checksum = original
    size = args.state_gib + args.replay_gib
    print(f"| part | seconds ({size:.2f} GiB: state {args.state_gib} + replay {args.replay_gib}) | GiB/s |")
    print("|---|---|---|")
    for name in ("save (stall)", "of which the manifest's CRC-32", "resume: verify + load"):
        print(f"| {name} | {timed[name]:.2f} | {size / timed[name]:.2f} |")


if __name__ == "__main__":
    main()
