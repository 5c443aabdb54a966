"""Run the authors' BRC code (naumix/BiggerRegularizedCategorical) exactly as its train.py
does, and write what benchmarks/side_by_side.py compares as JSON lines.

Runs in the authors' own virtual environment (docs/side-by-side.md), never in ours:

    /path/to/authors-venv/bin/python benchmarks/authors_driver.py --authors-dir ~/BiggerRegularizedCategorical \
        --env-names cartpole-swingup --seed 0 --max-steps 20000 --width-critic 256 --out run.jsonl

Their train.py prints only the mean online return per eval interval and sends the deterministic
evaluation to wandb; this driver imports their modules from `--authors-dir` and runs train.py's
loop line for line (act, step, normaliser update, insert, reset where done, sample UTD batches,
normalise, update, and their `EpisodeRecorder.log` at each eval interval, which evaluates
`--eval-episodes` episodes at temperature 0 on envs seeded seed + 42). What it adds is only
logging: each finished online episode, each evaluation, and the time spent outside evaluation.
Nothing of the authors' code is copied here.
"""

import argparse
import json
import sys
import time
import types
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-dir", type=Path, required=True, help="a clone of naumix/BiggerRegularizedCategorical")
    parser.add_argument("--env-names", default="cartpole-swingup", help="as their --env_names: one task or a key of EnvironmentsDict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=20_000)
    parser.add_argument("--start-training", type=int, default=5_000)
    parser.add_argument("--eval-interval", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--updates-per-step", type=int, default=2)
    parser.add_argument("--width-critic", type=int, default=256)
    parser.add_argument("--replay-buffer-size", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines log to write")
    parser.add_argument("--time-update", type=int, metavar="CALLS", default=0,
                        help="instead of training: time CALLS calls of agent.update on random transitions, 3 rounds")  # fmt: skip
    args = parser.parse_args()

    if not (args.authors_dir / "jaxrl" / "agent" / "brc_learner.py").exists():
        sys.exit(f"error: --authors-dir {args.authors_dir}: no jaxrl/agent/brc_learner.py there; "
                 "clone https://github.com/naumix/BiggerRegularizedCategorical and pass its path")  # fmt: skip
    sys.path.insert(0, str(args.authors_dir.resolve()))
    from jaxrl.agent.brc_learner import BRC
    from jaxrl.env_names import get_environment_list
    from jaxrl.envs import ParallelEnv
    from jaxrl.logger import EpisodeRecorder
    from jaxrl.normalizer import RewardNormalizer
    from jaxrl.replay_buffer import ParallelReplayBuffer
    import numpy as np

    # train.py's main(), with its FLAGS as arguments
    env_names = get_environment_list(args.env_names)
    env = ParallelEnv(env_names, seed=args.seed)
    eval_env = ParallelEnv(env_names, seed=args.seed + 42)
    num_tasks = len(env.envs)
    agent = BRC(
        args.seed,
        env.observation_space.sample()[:1],
        env.action_space.sample()[:1],
        num_tasks=num_tasks,
        updates_per_step=args.updates_per_step,
        width_critic=args.width_critic,
    )
    batch_size = 1024 if agent.multitask else 256  # train.py ignores its --batch_size
    replay_buffer = ParallelReplayBuffer(env.observation_space, env.action_space.shape[-1], args.replay_buffer_size, num_tasks=num_tasks)  # fmt: skip
    reward_normalizer = RewardNormalizer(num_tasks, target_entropy=agent.target_entropy, discount=agent.discount)
    statistics_recorder = EpisodeRecorder(num_tasks)
    flags = types.SimpleNamespace(offline_evaluation=True, eval_episodes=args.eval_episodes, log_to_wandb=False)

    out = open(args.out, "w")
    write = lambda record: (out.write(json.dumps(record) + "\n"), out.flush())
    if args.time_update:
        write(time_update(agent, replay_buffer, reward_normalizer, batch_size, args))
        return
    write({"kind": "config", "implementation": "authors", **{k: str(v) for k, v in vars(args).items()},
           "tasks": env_names, "batch_size": batch_size})  # fmt: skip
    episode_return = np.zeros(num_tasks)
    train_seconds, eval_seconds, tic = 0.0, 0.0, time.perf_counter()
    observations = env.reset()
    for i in range(1, args.max_steps + 1):
        actions = env.action_space.sample() if i < args.start_training else agent.sample_actions(observations, temperature=1.0)
        next_observations, rewards, terms, truns, goals = env.step(actions)
        reward_normalizer.update(rewards, terms, truns)
        statistics_recorder.update(rewards, goals, terms, truns)
        masks = env.generate_masks(terms, truns)
        replay_buffer.insert(observations, actions, rewards, masks, next_observations)
        episode_return += rewards
        for t in np.flatnonzero(np.logical_or(terms, truns)):
            write({"kind": "episode", "step": i, "task": env_names[t], "return": float(episode_return[t])})
            episode_return[t] = 0.0
        observations = next_observations
        observations, terms, truns = env.reset_where_done(observations, terms, truns)
        if i >= args.start_training:
            batches = replay_buffer.sample(batch_size, args.updates_per_step)
            batches = reward_normalizer.normalize(batches, agent.get_temperature())
            _ = agent.update(batches, args.updates_per_step, i)
            if i % args.eval_interval == 0 and i >= args.start_training:
                train_seconds += time.perf_counter() - tic
                tic = time.perf_counter()
                infos = statistics_recorder.log(flags, agent, replay_buffer, reward_normalizer, i, eval_env)
                took = time.perf_counter() - tic
                eval_seconds += took
                write({"kind": "eval", "step": i, "updates": int(agent.step) - 1, "eval_seconds": took,
                       "train_seconds": train_seconds, "time": time.time(),
                       "tasks": {name: {"return": float(infos["return"][t]), "success": float(infos["goal"][t])}
                                 for t, name in enumerate(env_names)}})  # fmt: skip
                tic = time.perf_counter()
    out.close()


def time_update(agent, replay_buffer, reward_normalizer, batch_size: int, args) -> dict:
    """ms per call of their `agent.update` (UTD updates on a batch handed from the host), after
    warm-up, in 3 rounds of `args.time_update` calls; and of the sampling and normalisation that
    their loop does before each call, timed apart."""
    import jax
    import numpy as np

    rng = np.random.default_rng(args.seed)
    num_tasks, obs_dim = replay_buffer.num_tasks, replay_buffer.observations.shape[-1]
    act_dim = replay_buffer.actions.shape[-1]
    for _ in range(2_000):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        replay_buffer.insert(obs, rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
                             rng.normal(size=num_tasks).astype(np.float32), np.ones(num_tasks, np.float32), obs)  # fmt: skip
    reward_normalizer.update(np.ones(num_tasks), np.ones(num_tasks, bool), np.zeros(num_tasks, bool))
    draw = lambda: reward_normalizer.normalize(replay_buffer.sample(batch_size, args.updates_per_step), agent.get_temperature())
    step = 1
    for _ in range(5):  # compiles (twice: their temperature starts weak-typed), then warm
        agent.update(draw(), args.updates_per_step, step)
        step += 1
    jax.block_until_ready(agent.critic.params)
    update_ms, sample_ms = [], []
    for _ in range(3):
        tic = time.perf_counter()
        batches = [draw() for _ in range(args.time_update)]
        sample_ms.append((time.perf_counter() - tic) / args.time_update * 1e3)
        tic = time.perf_counter()
        for batch in batches:
            agent.update(batch, args.updates_per_step, step)
            step += 1
        jax.block_until_ready(agent.critic.params)
        update_ms.append((time.perf_counter() - tic) / args.time_update * 1e3)
    return {"kind": "update_timing", "implementation": "authors", "batch_size": batch_size, "obs_dim": obs_dim,
            "act_dim": act_dim, "update_ms": update_ms, "sample_ms": sample_ms}  # fmt: skip


if __name__ == "__main__":
    main()
