"""One short learning test: SAC + BRC on MetaWorld reach beats anything a random policy does."""

import json

import numpy as np
import pytest

from common.envs import MultiTaskEnv
from common.suites import resolve_tasks


def random_policy_returns(episodes: int, seed: int = 123) -> np.ndarray:
    env = MultiTaskEnv(resolve_tasks("reach"), envs_per_task=episodes, seed=seed)
    rng = np.random.default_rng(seed)
    try:
        env.reset()
        returns = np.zeros(episodes)
        for _ in range(200):  # one 200-step episode per env
            out = env.step(rng.uniform(-1, 1, (episodes, env.act_dim)))
            returns += out.reward
    finally:
        env.close()
    return returns


@pytest.mark.slow
def test_reach_learns_beyond_random(run, tmp_path):
    """About 2.5 minutes on 2 cores. Measured (seed 0, --overlap, metaworld backend, a new
    layout per episode; 2026-12-05): evaluation returns 260, 309, 399, 380, 580, 1,087 at
    2k..12k steps on 10 layouts; random episodes reach at most 589 of 50 (50 layouts)."""
    random_returns = random_policy_returns(50)
    out = run(
        "sac_brc.py", "--suite", "reach", "--width", "128", "--actor-width", "64", "--batch-size", "128",
        "--total-steps", "12000", "--learning-starts", "1000", "--eval-interval", "2000",
        "--eval-episodes", "10", "--eval-protocol", "layouts", "--log-interval", "2000", "--no-checkpoint-replay",
        "--run-name", "learn",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(l) for l in (tmp_path / "runs/learn/metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["tasks"]["reach"]["return"] for r in records}
    print(f"random policy: max {random_returns.max():.0f} over 50 episodes; evaluation returns {evals}")
    # the mean of 10 deterministic evaluation episodes (10 layouts) beats the best single
    # random episode (50 layouts)
    late = [ret for step, ret in evals.items() if step >= 10_000]
    assert max(late) > random_returns.max(), (evals, random_returns.max())
