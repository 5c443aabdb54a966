"""One short learning test: SAC + BRC on MetaWorld reach beats anything a random policy does."""

import json

import numpy as np

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


def test_reach_learns_beyond_random(run, tmp_path):
    random_returns = random_policy_returns(50)
    out = run(
        "sac_brc.py", "--suite", "reach", "--width", "64", "--actor-width", "64", "--batch-size", "128",
        "--total-steps", "5000", "--learning-starts", "1000", "--eval-interval", "1000",
        "--eval-episodes", "5", "--log-interval", "1000", "--no-checkpoint-replay", "--run-name", "learn",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(l) for l in (tmp_path / "runs/learn/metrics.jsonl").read_text().splitlines()]
    evals = [r["tasks"]["reach"]["return"] for r in records]
    print(f"random policy: max {random_returns.max():.0f} over 50 episodes; evaluation returns {evals}")
    # the mean of 5 evaluation episodes must beat the best of 50 random episodes by 50%
    assert max(evals[-2:]) > 1.5 * random_returns.max(), (evals, random_returns.max())
