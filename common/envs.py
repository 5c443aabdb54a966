"""Multi-task environments: every task of a suite stepped in lockstep on the CPU.

One backend instance per task (envpool, or the `metaworld` package in a worker
process), all driven with asynchronous send/recv so that the tasks step in parallel.
Observations are flattened to float32, zero-padded to the suite's largest observation
size; actions are produced at the suite's largest action size and task i reads its
first |A_i| entries (paper Section 3, Appendix E.1).

Auto-reset follows envpool: the step after an episode ends is a *reset step* that
ignores the action and returns the first observation of the next episode. It is
flagged in `StepOutput.reset_step`; that transition must never be stored.
"""

import multiprocessing as mp
import warnings
from typing import NamedTuple

import numpy as np

from common.suites import TaskSpec

# envpool 1.2.5 tasks that differ from the `metaworld` package, so they run on the package
# backend even when `mw_backend="envpool"` (tests/test_envs.py re-checks each):
# - dial-turn: MetaWorld's scripted expert solves it in the package, never on envpool
#   (the dial barely turns; notes/envpool-facts.md §5);
# - shelf-place, hammer: envpool's goal y grows by ~0.85 at every reset (0.86 -> 1.72 ->
#   2.56 ...), off the table after the first episode; the expert's success (shelf-place)
#   or return (hammer, 1300 -> 280) collapses from the second episode on.
ENVPOOL_DIVERGENT_TASKS = frozenset({"dial-turn", "shelf-place", "hammer"})


class StepOutput(NamedTuple):
    next_obs: np.ndarray  # (envs, obs_dim) float32: after the step (a reset obs on a reset step)
    reward: np.ndarray  # (envs,) float32
    terminated: np.ndarray  # (envs,) bool: true termination, no bootstrap
    truncated: np.ndarray  # (envs,) bool: time limit, bootstrap
    success: np.ndarray  # (envs,) bool: the env reported success at this step
    reset_step: np.ndarray  # (envs,) bool: this was an auto-reset step, do not store it


def _make_envpool(task: TaskSpec, num_envs: int, seed: int):
    import envpool

    kwargs = {}
    if task.domain == "metaworld":
        # goal-observable variant, 200-step episodes (paper Appendix E)
        kwargs = {"partially_observable": False, "max_episode_steps": task.max_episode_steps}
    return envpool.make_gymnasium(task.envpool_id, num_envs=num_envs, seed=seed, **kwargs)


def _make_metaworld_package_env(task_name: str, seed: int):
    """`metaworld`'s goal-observable constructor: one frozen goal/object layout per seed."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task_name}-v3-goal-observable"](seed=seed)


def _worker(conn, task_name: str, seeds: list[int], max_episode_steps: int) -> None:
    """Runs `len(seeds)` envs of one task and mimics envpool's next-step auto-reset."""
    envs = [_make_metaworld_package_env(task_name, s) for s in seeds]
    n = len(envs)
    elapsed = np.zeros(n, np.int32)
    done = np.zeros(n, bool)

    def reset(i):
        elapsed[i], done[i] = 0, False
        return envs[i].reset()[0]

    while True:
        command, actions = conn.recv()
        if command == "close":
            conn.close()
            return
        obs = np.zeros((n, 39))
        reward = np.zeros(n, np.float32)
        term, trunc, success = (np.zeros(n, bool) for _ in range(3))
        for i in range(n):
            if command == "reset" or done[i]:
                obs[i] = reset(i)
                continue
            obs[i], r, _, _, info = envs[i].step(actions[i])
            elapsed[i] += 1
            reward[i], success[i] = r, info["success"] > 0
            trunc[i] = elapsed[i] >= max_episode_steps
            done[i] = trunc[i]
        info = {"success": success, "elapsed_step": elapsed.copy(), "env_id": np.arange(n)}
        conn.send((obs, reward, term, trunc, info))


class _MetaWorldWorker:
    """The `metaworld` package in a worker process, behind envpool's send/recv interface.

    Workers start with the `forkserver` method so that starting them after JAX is safe.
    """

    def __init__(self, task: TaskSpec, num_envs: int, seed: int):
        ctx = mp.get_context("forkserver")
        self._conn, child = ctx.Pipe()
        seeds = [seed + i for i in range(num_envs)]
        self._process = ctx.Process(
            target=_worker, args=(child, task.name, seeds, task.max_episode_steps), daemon=True
        )
        self._process.start()
        child.close()

    def async_reset(self) -> None:
        self._conn.send(("reset", None))

    def send(self, actions: np.ndarray) -> None:
        self._conn.send(("step", actions))

    def recv(self):
        return self._conn.recv()

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(("close", None))
            self._process.join(timeout=5)


class MultiTaskEnv:
    """All `tasks` in lockstep, `envs_per_task` copies each; rows are task-major.

    Row `k * envs_per_task + j` is copy j of task k; `task_ids[row] = k`.
    """

    def __init__(
        self,
        tasks: list[TaskSpec],
        envs_per_task: int = 1,
        seed: int = 0,
        mw_backend: str = "envpool",
        min_obs_dim: int = 0,
    ):
        """`min_obs_dim`: pad observations to at least this size (a transferred network's input)."""
        if mw_backend not in ("envpool", "metaworld"):
            raise ValueError(f"mw_backend must be 'envpool' or 'metaworld', got '{mw_backend}'")
        self.tasks = tasks
        self.envs_per_task = envs_per_task
        self.num_envs = len(tasks) * envs_per_task
        self.obs_dim = max(min_obs_dim, *(t.obs_dim for t in tasks))
        self.act_dim = max(t.act_dim for t in tasks)
        self.task_ids = np.repeat(np.arange(len(tasks), dtype=np.int32), envs_per_task)
        self.backends = []
        for k, task in enumerate(tasks):
            task_seed = seed + k * envs_per_task  # distinct seeds across tasks and copies
            use_package = task.domain == "metaworld" and (
                mw_backend == "metaworld" or task.name in ENVPOOL_DIVERGENT_TASKS
            )
            if use_package:
                if mw_backend == "envpool":
                    warnings.warn(
                        f"{task.name}: envpool's version differs from the metaworld package "
                        "(see ENVPOOL_DIVERGENT_TASKS); running it on the metaworld package."
                    )
                self.backends.append(_MetaWorldWorker(task, envs_per_task, task_seed))
            else:
                self.backends.append(_make_envpool(task, envs_per_task, task_seed))

    def _flatten(self, task: TaskSpec, obs) -> np.ndarray:
        if isinstance(obs, dict):  # envpool DMC: dm_control's keys, in dm_control's order
            obs = np.concatenate(
                [np.asarray(obs[key]).reshape(self.envs_per_task, -1) for key in task.dmc_obs_keys], axis=1
            )
        padded = np.zeros((self.envs_per_task, self.obs_dim), np.float32)
        padded[:, : task.obs_dim] = obs
        return padded

    def _gather(self) -> StepOutput:
        parts = []
        for task, backend in zip(self.tasks, self.backends):
            obs, reward, term, trunc, info = backend.recv()
            order = np.argsort(info["env_id"])  # envpool may answer out of order
            obs = {k: v[order] for k, v in obs.items()} if isinstance(obs, dict) else obs[order]
            success = (
                np.asarray(info["success"])[order] > 0
                if task.has_success
                else np.zeros(self.envs_per_task, bool)
            )
            parts.append(
                (
                    self._flatten(task, obs),
                    np.asarray(reward, np.float32)[order],
                    np.asarray(term, bool)[order],
                    np.asarray(trunc, bool)[order],
                    success,
                    np.asarray(info["elapsed_step"])[order] == 0,
                )
            )
        return StepOutput(*(np.concatenate(field) for field in zip(*parts)))

    def reset(self) -> np.ndarray:
        for backend in self.backends:
            backend.async_reset()
        return self._gather().next_obs

    def step(self, actions: np.ndarray) -> StepOutput:
        """`actions`: (num_envs, act_dim) in [-1, 1]; task k uses its first |A_k| entries."""
        actions = np.asarray(actions)
        for k, (task, backend) in enumerate(zip(self.tasks, self.backends)):
            rows = slice(k * self.envs_per_task, (k + 1) * self.envs_per_task)
            task_actions = actions[rows, : task.act_dim]
            if isinstance(backend, _MetaWorldWorker):
                backend.send(task_actions.astype(np.float32))
            else:
                dtype = backend.action_space.dtype
                backend.send(task_actions.astype(dtype), np.arange(self.envs_per_task, dtype=np.int32))
        return self._gather()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
