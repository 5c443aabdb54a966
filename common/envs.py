"""Multi-task environments: every task of a suite stepped in lockstep on the CPU.

One backend instance per task: envpool, or a worker process for the `metaworld`
package, HumanoidBench and the custom DMC tasks of common/dmc_custom.py; all driven
with asynchronous send/recv so that the tasks step in parallel.
Observations are flattened to float32, zero-padded to the suite's largest observation
size; actions are produced at the suite's largest action size and task i reads its
first |A_i| entries (paper Section 3, Appendix E.1).

Auto-reset follows envpool: the step after an episode ends is a *reset step* that
ignores the action and returns the first observation of the next episode. It is
flagged in `StepOutput.reset_step`; that transition must never be stored.
"""

import importlib.util
import multiprocessing as mp
import sys
import types
import warnings
from pathlib import Path
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


class EnvError(RuntimeError):
    """An environment could not be built or stepped; the message says which task and what to do."""


HUMANOIDBENCH_INSTALL = (
    "HumanoidBench tasks need the humanoid_bench package, which is not installed (not on PyPI): "
    "git clone https://github.com/carlosferrazza/humanoid-bench && "
    "pip install --no-deps -e humanoid-bench (README.md, section HumanoidBench, gives every step)"
)


def require_packages(tasks: list[TaskSpec]) -> None:
    """Raise ValueError with install steps when a task needs a package that is missing."""
    if any(t.domain == "humanoidbench" for t in tasks) and importlib.util.find_spec("humanoid_bench") is None:
        raise ValueError(HUMANOIDBENCH_INSTALL)


def _humanoidbench_shim() -> None:
    """Lets the humanoid_bench package as published (HEAD 791405f) run beside our pins, without
    editing its files. Applied in the worker before `import humanoid_bench`:

    1. `humanoid_bench.wrappers` imports `humanoid_bench.mjx.flax_to_torch`, which imports torch
       (several GB) at import time. Only the hierarchical `policy_type=reach_*` wrappers use it,
       and we never ask for them: a stub module stands in, and using it raises.
    2. `humanoid_bench/dmc_deps/dmc_sizes.py` lists MuJoCo 3.1.6's struct fields and HB reads
       every one; later MuJoCo versions renamed or dropped some (AttributeError: 'flex_evpair'
       on ours). We load that table ourselves and drop the fields this MuJoCo lacks.
    """
    import mujoco

    def needs_torch(*args, **kwargs):
        raise EnvError("HumanoidBench's policy_type=reach_* wrappers need torch; flat policies do not")

    stub = types.ModuleType("humanoid_bench.mjx.flax_to_torch")
    stub.TorchModel = stub.TorchPolicy = needs_torch
    sys.modules.setdefault(stub.__name__, stub)

    package_dir = Path(importlib.util.find_spec("humanoid_bench").submodule_search_locations[0])
    sizes_path = package_dir / "dmc_deps" / "dmc_sizes.py"
    if sizes_path.exists() and "humanoid_bench.dmc_deps.dmc_sizes" not in sys.modules:
        spec = importlib.util.spec_from_file_location("humanoid_bench.dmc_deps.dmc_sizes", sizes_path)
        sizes = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sizes)
        for struct, cls in (("mjmodel", mujoco.MjModel), ("mjdata", mujoco.MjData)):
            fields = sizes.array_sizes[struct]
            for name in [f for f in fields if not hasattr(cls, f)]:
                del fields[name]
        sys.modules[spec.name] = sizes


def _check_spaces(task: TaskSpec, obs_shape: tuple, act_shape: tuple, low, high) -> None:
    if obs_shape != (task.obs_dim,) or act_shape != (task.act_dim,):
        raise EnvError(
            f"{task.name}: the env gives observations {obs_shape} and actions {act_shape}, but "
            f"common/suites.py expects ({task.obs_dim},) and ({task.act_dim},); your package version "
            "differs from the one the table was written for: update the table in common/suites.py"
        )
    if not (np.all(np.asarray(low) == -1) and np.all(np.asarray(high) == 1)):
        raise EnvError(f"{task.name}: actions must lie in [-1, 1], the env's bounds are {low} .. {high}")


class _MetaWorldEnv:
    """The `metaworld` package's env: success as the env reports it."""

    def __init__(self, task: TaskSpec, seed: int):
        self.env = _make_metaworld_package_env(task.name, seed)

    def reset(self) -> np.ndarray:
        return self.env.reset()[0]

    def step(self, action: np.ndarray):
        obs, reward, _, _, info = self.env.step(action)
        return obs, reward, False, False, info["success"] > 0


class _HumanoidBenchEnv:
    """A HumanoidBench gymnasium env. HB reports no success: an episode succeeds when its
    return reaches the task's `success_bar` (HB paper); reported at the episode's last step,
    so the return is final (some tasks have negative rewards) and "success at any step" holds."""

    def __init__(self, task: TaskSpec, seed: int):
        import gymnasium

        # render_mode=None: HB defaults to rgb_array, which opens a GL context in Task.__init__
        self.env = gymnasium.make(task.envpool_id, render_mode=None)
        space = self.env.action_space
        _check_spaces(task, self.env.observation_space.shape, space.shape, space.low, space.high)
        if self.env.spec.max_episode_steps != task.max_episode_steps:
            raise EnvError(
                f"{task.name}: the env's time limit is {self.env.spec.max_episode_steps} steps, "
                f"common/suites.py says {task.max_episode_steps}: update the table there"
            )
        self.success_bar = float(self.env.unwrapped.task.success_bar)
        self.seed: int | None = seed
        self.episode_return = 0.0

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed)  # seeded once; later resets continue its RNG
        self.seed, self.episode_return = None, 0.0
        return obs

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.episode_return += float(reward)
        success = (terminated or truncated) and self.episode_return >= self.success_bar
        return obs, reward, terminated, truncated, success


class _DMControlEnv:
    """A dm_control task defined in common/dmc_custom.py; observations flattened in
    dm_control's key order, as envpool's DMC tasks are."""

    def __init__(self, task: TaskSpec, seed: int):
        from common import dmc_custom

        self.env = dmc_custom.make(task.name, seed)
        self.keys = task.dmc_obs_keys
        spec = self.env.action_spec()
        obs_size = sum(int(np.prod(v.shape)) for v in self.env.observation_spec().values())
        _check_spaces(task, (obs_size,), spec.shape, spec.minimum, spec.maximum)

    def _flat(self, time_step) -> np.ndarray:
        return np.concatenate([np.asarray(time_step.observation[k]).ravel() for k in self.keys])

    def reset(self) -> np.ndarray:
        return self._flat(self.env.reset())

    def step(self, action: np.ndarray):
        time_step = self.env.step(action)
        terminated = time_step.last() and time_step.discount == 0
        return self._flat(time_step), time_step.reward, terminated, time_step.last() and not terminated, False


_WORKER_ENVS = {"metaworld": _MetaWorldEnv, "humanoidbench": _HumanoidBenchEnv, "dmc-custom": _DMControlEnv}


def _worker(conn, task: TaskSpec, seeds: list[int]) -> None:
    """Runs `len(seeds)` envs of one task and mimics envpool's next-step auto-reset.

    Answers each command with ("ok", (obs, reward, terminated, truncated, info)), or once with
    ("error", message) when an env cannot be built or stepped, and then stops.
    """
    try:
        if task.domain == "humanoidbench":
            _humanoidbench_shim()
            import humanoid_bench  # noqa: F401 (registers HB's gymnasium ids)

            np.random.seed(seeds[0])  # several HB tasks draw their layouts from the global RNG
        envs = [_WORKER_ENVS[task.domain](task, s) for s in seeds]
    except Exception as error:  # noqa: BLE001 (reported to the parent, which stops with it)
        message = str(error) if isinstance(error, EnvError) else f"{task.name}: {type(error).__name__}: {error}"
        conn.send(("error", message))
        conn.close()
        return
    n = len(envs)
    elapsed = np.zeros(n, np.int32)
    done = np.zeros(n, bool)

    def reset(i):
        elapsed[i], done[i] = 0, False
        return envs[i].reset()

    while True:
        command, actions = conn.recv()
        if command == "close":
            conn.close()
            return
        obs = np.zeros((n, task.obs_dim))
        reward = np.zeros(n, np.float32)
        term, trunc, success = (np.zeros(n, bool) for _ in range(3))
        try:
            for i in range(n):
                if command == "reset" or done[i]:
                    obs[i] = reset(i)
                    continue
                obs[i], reward[i], term[i], env_truncated, success[i] = envs[i].step(actions[i])
                elapsed[i] += 1
                trunc[i] = not term[i] and (env_truncated or elapsed[i] >= task.max_episode_steps)
                done[i] = term[i] or trunc[i]
        except Exception as error:  # noqa: BLE001
            conn.send(("error", f"{task.name}: the env failed while stepping: {type(error).__name__}: {error}"))
            conn.close()
            return
        info = {"success": success, "elapsed_step": elapsed.copy(), "env_id": np.arange(n)}
        conn.send(("ok", (obs, reward, term, trunc, info)))


class _WorkerBackend:
    """A task's envs in a worker process (the `metaworld` package, HumanoidBench, the custom DMC
    tasks) behind envpool's send/recv interface.

    Workers start with the `forkserver` method so that starting them after JAX is safe; they
    inherit the environment (PYTHONPATH) and sys.path of this process.
    """

    def __init__(self, task: TaskSpec, num_envs: int, seed: int):
        ctx = mp.get_context("forkserver")
        self._task = task
        self._conn, child = ctx.Pipe()
        seeds = [seed + i for i in range(num_envs)]
        self._process = ctx.Process(target=_worker, args=(child, task, seeds), daemon=True)
        self._process.start()
        child.close()

    def async_reset(self) -> None:
        self._conn.send(("reset", None))

    def send(self, actions: np.ndarray) -> None:
        self._conn.send(("step", actions))

    def recv(self):
        try:
            status, payload = self._conn.recv()
        except EOFError:
            self._process.join(timeout=5)
            raise EnvError(
                f"{self._task.name}: its worker process stopped (exit code {self._process.exitcode})"
            ) from None
        if status == "error":
            raise EnvError(payload)
        return payload

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
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
                self.backends.append(_WorkerBackend(task, envs_per_task, task_seed))
            elif task.domain in ("humanoidbench", "dmc-custom"):
                self.backends.append(_WorkerBackend(task, envs_per_task, task_seed))
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
            try:
                obs, reward, term, trunc, info = backend.recv()
            except EnvError:
                self.close()  # no worker outlives the error
                raise
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
            if isinstance(backend, _WorkerBackend):
                backend.send(task_actions.astype(np.float32))
            else:
                dtype = backend.action_space.dtype
                backend.send(task_actions.astype(dtype), np.arange(self.envs_per_task, dtype=np.int32))
        return self._gather()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
