"""Multi-task environments: every task of a suite stepped in lockstep on the CPU.

envpool DMC tasks (and MetaWorld with `mw_backend="envpool"`) run one envpool instance per
task; the `metaworld` package, HumanoidBench, the custom DMC tasks of common/dmc_custom.py and
ShadowHand (common/shadowhand.py) run in worker processes, several tasks per worker, one
worker per CPU core at most. All are
driven with asynchronous send/recv so that the tasks step in parallel.
Observations are flattened to float32, zero-padded to the suite's largest observation
size; actions are produced at the suite's largest action size and task i reads its
first |A_i| entries (paper Section 3, Appendix E.1).

Resets happen within the step that ends an episode, as in the ref. code's loop: every
`step` is one real transition per env (`next_obs` is the episode's last observation), and
`StepOutput.obs` already holds the first observation of the next episode. envpool's own
auto-reset (a next step that ignores the action) is never reached.
"""

import contextlib
import importlib.util
import multiprocessing as mp
import os
import signal
import sys
import types
import warnings
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from common import shadowhand
from common.suites import SH_BUNDLED, TaskSpec, normalized_score

# envpool 1.2.5 tasks that differ from the `metaworld` package, so they run on the package
# backend even when `mw_backend="envpool"` (tests/test_envs.py re-checks each):
# - dial-turn: MetaWorld's scripted expert solves it in the package, never on envpool
#   (the dial barely turns);
# - shelf-place, hammer: envpool's goal y grows by ~0.85 at every reset (0.86 -> 1.72 ->
#   2.56 ...), off the table after the first episode; the expert's success (shelf-place)
#   or return (hammer, 1300 -> 280) collapses from the second episode on.
ENVPOOL_DIVERGENT_TASKS = frozenset({"dial-turn", "shelf-place", "hammer"})



@dataclass(kw_only=True)
class EnvArgs:
    """The environment and evaluation flags of the continuous-control scripts (sac_brc.py,
    offline_brc_bc.py, transfer_embedding.py): each one's `Args` extends this class."""

    mw_backend: Literal["metaworld", "envpool"] = "metaworld"
    """MetaWorld backend: the metaworld package, or envpool (2x faster; three tasks differ and run on the package anyway; no --mw-layouts frozen); docs/suites.md"""
    mw_layouts: Literal["per-episode", "frozen"] = "per-episode"
    """MetaWorld object/goal layouts: per-episode (a new one at every reset, training and evaluation: the protocol the published curves imply) or frozen (one per env for its lifetime, as the ref. code's train.py); docs/suites.md"""
    env_workers: int | None = None
    """worker processes for the envs that run in Python (metaworld package, HumanoidBench, custom DMC tasks, ShadowHand); default one per CPU core"""
    shadowhand_assets: str | None = None
    """ShadowHand shape assets: a clone of the authors' repository or its dex_envs/assets (README: ShadowHand); default $BRC_SHADOWHAND_ASSETS"""
    eval_protocol: Literal["published", "layouts"] = "published"
    """published (ref. code): one eval env per task, --eval-episodes episodes in a row; layouts: --eval-episodes envs per task, one episode each (with --mw-layouts frozen: that many layouts); README"""
    eval_episodes: int = 10
    """deterministic evaluation episodes per task"""

    def check_env_flags(self) -> None:
        """ValueError, in one line, for env flags that contradict each other."""
        check_mw_flags(self.mw_backend, self.mw_layouts)

    def env_kwargs(self) -> dict:
        """The keyword arguments of MultiTaskEnv that these flags set."""
        return {"mw_backend": self.mw_backend, "mw_layouts": self.mw_layouts, "num_workers": self.env_workers,
                "shadowhand_assets": self.shadowhand_assets}  # fmt: skip

    def protocol(self) -> dict:
        """What an evaluation record states of how it was measured."""
        return {"eval_protocol": self.eval_protocol, "mw_backend": self.mw_backend, "mw_layouts": self.mw_layouts}


class StepOutput(NamedTuple):
    next_obs: np.ndarray  # (envs, obs_dim) float32: the observation after the step (an episode's last one where it ended)
    reward: np.ndarray  # (envs,) float32
    terminated: np.ndarray  # (envs,) bool: true termination, no bootstrap
    truncated: np.ndarray  # (envs,) bool: time limit, bootstrap
    success: np.ndarray  # (envs,) bool: the env reported success at this step
    obs: np.ndarray  # (envs, obs_dim) float32: what to act on next: next_obs, or the first observation
    #                  of the next episode where this one ended (reset within the same step)


# Env seeds: one np.random.SeedSequence per (run seed, role, task, copy), so that no two runs
# with different seeds and no training and evaluation env of one run share an env seed (the
# ref. code builds every task's env from `seed` and the eval envs from `seed + 42`: run s's
# eval envs are then run s+42's training envs, and envpool's `seed + i` per copy made run s's
# copy j run s+1's copy j-1).
ENV_ROLES = {"train": 0, "eval": 1}


def env_seeds(seed: int, role: str, num_tasks: int, envs_per_task: int, start_step: int = 0) -> np.ndarray:
    """(num_tasks, envs_per_task) env seeds in [0, 2**31), each from its own SeedSequence.

    `start_step`: the env step a resumed run starts its envs at. Env states are not in the
    checkpoint, so a resumed run's envs start afresh; from seeds of their own, so that they do
    not replay the layouts and initial states of the episodes the run began with."""
    if role not in ENV_ROLES:
        raise ValueError(f"role must be one of {sorted(ENV_ROLES)}, got '{role}'")
    resumed = (start_step,) if start_step else ()  # step 0: the seeds fresh runs always had
    return np.array(
        [
            [np.random.SeedSequence(seed, spawn_key=(ENV_ROLES[role], k, j, *resumed)).generate_state(1)[0] >> 1
             for j in range(envs_per_task)]
            for k in range(num_tasks)
        ],
        np.int64,
    )  # fmt: skip


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _make_envpool(task: TaskSpec, seeds: np.ndarray):
    import envpool

    kwargs = {}
    if task.domain == "metaworld":
        # goal-observable variant, 200-step episodes (paper Appendix E)
        kwargs = {"partially_observable": False, "max_episode_steps": task.max_episode_steps}
    return envpool.make_gymnasium(task.envpool_id, num_envs=len(seeds), seed=[int(s) for s in seeds], **kwargs)


def _make_metaworld_package_env(task_name: str, seed: int):
    """`metaworld`'s goal-observable constructor: it draws a goal/object layout from `seed` and
    freezes it (every reset shows it again)."""
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


def with_shadowhand_assets(tasks: list[TaskSpec], assets: str | None, whole_suite: bool) -> list[TaskSpec]:
    """Check, before any env starts, that every ShadowHand task's files are in the assets
    (`--shadowhand-assets`, else $BRC_SHADOWHAND_ASSETS). A whole suite (`whole_suite`) goes on
    without the shapes whose files are missing, after a line naming them; tasks named one by
    one must all be there. Returns the tasks to run; raises ValueError saying what is missing
    and how to get it."""
    shapes = [t for t in tasks if t.domain == "shadowhand" and t.envpool_id not in SH_BUNDLED]
    if not shapes:
        return tasks
    root = shadowhand.assets_dir(assets)
    missing = {t.name: files for t in shapes if (files := shadowhand.missing_files(t.envpool_id, root))}
    lines = "; ".join(f"{name}: {', '.join(map(str, files))}" for name, files in missing.items())
    if missing and (not whole_suite or len(missing) == len(shapes)):
        raise ValueError(f"missing from the ShadowHand assets at {root}: {lines}; {shadowhand.GET_ASSETS}")
    if missing:
        print(f"ShadowHand: {len(missing)} shape(s) left out, their files are missing ({lines})", file=sys.stderr)
    return [t for t in tasks if t.name not in missing]


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
    """The `metaworld` package's env: success as the env reports it. `layouts`: "per-episode"
    draws a new goal/object layout at every reset from the env's own RNG (seeded with `seed`),
    "frozen" keeps the constructor's one layout (see EnvArgs.mw_layouts)."""

    def __init__(self, task: TaskSpec, seed: int, layouts: str = "per-episode"):
        self.env = _make_metaworld_package_env(task.name, seed)
        if layouts == "per-episode":  # as TD-MPC2's MetaWorld wrapper; draws from env.np_random
            self.env._freeze_rand_vec, self.env.seeded_rand_vec = False, True

    def reset(self) -> np.ndarray:
        return self.env.reset()[0]

    def step(self, action: np.ndarray):
        obs, reward, _, _, info = self.env.step(action)
        return obs, reward, False, False, info["success"] > 0


class _HumanoidBenchEnv:
    """A HumanoidBench gymnasium env. HB reports no success: an episode succeeds when its
    return reaches the task's `success_bar` (HB paper); reported at the episode's last step,
    so the return is final (some tasks have negative rewards) and "success at any step" holds.

    Several HB tasks draw their layouts from NumPy's global RNG: each env keeps its own global
    RNG state, seeded from its env seed and swapped in around every call, so that its draws do
    not depend on which other envs share its worker process."""

    def __init__(self, task: TaskSpec, seed: int):
        import gymnasium

        self.rng_state = np.random.RandomState(seed).get_state()
        with self._own_global_rng():
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

    @contextlib.contextmanager
    def _own_global_rng(self):
        outer = np.random.get_state()
        np.random.set_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = np.random.get_state()
            np.random.set_state(outer)

    def reset(self) -> np.ndarray:
        with self._own_global_rng():
            obs, _ = self.env.reset(seed=self.seed)  # seeded once; later resets continue its RNG
        self.seed, self.episode_return = None, 0.0
        return obs

    def step(self, action: np.ndarray):
        with self._own_global_rng():
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


class _ShadowHandEnv:
    """A ShadowHand shape (common/shadowhand.py): `observation ⊕ desired_goal`, as the ref.
    code's wrapper; success as the env reports it (`is_success`) at each step. The env's RNG is
    seeded at the first reset; later resets continue it."""

    def __init__(self, task: TaskSpec, seed: int, assets: Path | None = None):
        self.env = shadowhand.make(task.envpool_id, assets)
        space = self.env.observation_space
        obs_size = space["observation"].shape[0] + space["desired_goal"].shape[0]
        _check_spaces(task, (obs_size,), self.env.action_space.shape, self.env.action_space.low,
                      self.env.action_space.high)  # fmt: skip
        self.seed: int | None = seed

    @staticmethod
    def _flat(obs: dict) -> np.ndarray:
        return np.concatenate((obs["observation"], obs["desired_goal"]))

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed)
        self.seed = None
        return self._flat(obs)

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._flat(obs), reward, terminated, truncated, info["is_success"] > 0


_WORKER_ENVS = {
    "metaworld": _MetaWorldEnv, "humanoidbench": _HumanoidBenchEnv, "dmc-custom": _DMControlEnv,
    "shadowhand": _ShadowHandEnv,
}  # fmt: skip


def _worker(conn, jobs: list[tuple[TaskSpec, list[int]]], options: dict[str, dict]) -> None:
    """Runs the envs of several tasks (`jobs`: task and its envs' seeds) and resets an env within
    the step that ends its episode. `options`: extra constructor arguments by domain.

    Commands: ("reset", None) -> ("ok", [obs per task]); ("step", [actions or None per task])
    -> ("ok", [(next_obs, reward, terminated, truncated, success, obs) or None per task]), None
    for a task that was not stepped. Answers ("error", message) once when an env cannot be built
    or stepped, and then stops. The parent alone handles Ctrl-C and SIGTERM (a scheduler sends it
    to every process of the job) and stops its workers after its last checkpoint; a worker whose
    parent has gone exits quietly.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked since the fork: see _Worker
    envs, name = [], jobs[0][0].name
    try:
        if any(task.domain == "humanoidbench" for task, _ in jobs):
            _humanoidbench_shim()
            import humanoid_bench  # noqa: F401 (registers HB's gymnasium ids)
        for task, seeds in jobs:
            name = task.name
            envs.append([_WORKER_ENVS[task.domain](task, s, **options.get(task.domain, {})) for s in seeds])
    except Exception as error:  # noqa: BLE001 (reported to the parent, which stops with it)
        message = str(error) if isinstance(error, EnvError) else f"{name}: {type(error).__name__}: {error}"
        _send_error(conn, message)
        return
    elapsed = [np.zeros(len(seeds), np.int32) for _, seeds in jobs]

    def reset(k: int, i: int) -> np.ndarray:
        elapsed[k][i] = 0
        return envs[k][i].reset()

    def step(k: int, actions: np.ndarray):
        task, n = jobs[k][0], len(envs[k])
        next_obs, obs = np.zeros((n, task.obs_dim)), np.zeros((n, task.obs_dim))
        reward = np.zeros(n, np.float32)
        term, trunc, success = (np.zeros(n, bool) for _ in range(3))
        for i in range(n):
            next_obs[i], reward[i], term[i], env_truncated, success[i] = envs[k][i].step(actions[i])
            elapsed[k][i] += 1
            trunc[i] = not term[i] and (env_truncated or elapsed[k][i] >= task.max_episode_steps)
            obs[i] = reset(k, i) if term[i] or trunc[i] else next_obs[i]
        return next_obs, reward, term, trunc, success, obs

    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        if command == "close":
            conn.close()
            return
        reply, k = [], 0
        try:
            for k in range(len(jobs)):
                if command == "reset":
                    reply.append(np.stack([reset(k, i) for i in range(len(envs[k]))]))
                else:
                    reply.append(None if payload[k] is None else step(k, payload[k]))
        except Exception as error:  # noqa: BLE001
            doing = "resetting" if command == "reset" else "stepping"
            _send_error(conn, f"{jobs[k][0].name}: the env failed while {doing}: {type(error).__name__}: {error}")
            return
        try:
            conn.send(("ok", reply))
        except (BrokenPipeError, OSError):  # the parent has gone
            return


def _send_error(conn, message: str) -> None:
    """Report an error to the parent as one line (MuJoCo's messages span several) and stop."""
    try:
        conn.send(("error", " ".join(message.split())))
        conn.close()
    except (BrokenPipeError, OSError):
        pass


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Worker:
    """Several tasks' envs in one worker process (the `metaworld` package, HumanoidBench, the
    custom DMC tasks, ShadowHand), behind a send/recv interface like envpool's.

    Workers start with the `forkserver` method so that starting them after JAX is safe; they
    inherit the environment (PYTHONPATH) and sys.path of this process. The forkserver starts
    with Ctrl-C and SIGTERM blocked and its workers inherit that, so that a signal sent to the
    whole job while a worker is still importing (seconds) cannot kill it: `_worker` then ignores
    both and unblocks them.
    """

    def __init__(self, jobs: list[tuple[TaskSpec, np.ndarray]], options: dict[str, dict]):
        ctx = mp.get_context("forkserver")
        self.names = ", ".join(task.name for task, _ in jobs)
        self._conn, child = ctx.Pipe()
        jobs = [(task, [int(s) for s in seeds]) for task, seeds in jobs]
        self._process = ctx.Process(target=_worker, args=(child, jobs, options), daemon=True)
        resource_tracker.ensure_running()  # first: launching it unblocks the two signals in this thread
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._process.start()  # the first start launches the forkserver, with this signal mask
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()

    def send(self, command: str, payload=None) -> None:
        try:
            self._conn.send((command, payload))
        except (BrokenPipeError, OSError):
            pass  # the worker has stopped: recv() reports why

    def recv(self):
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError):  # OSError: a worker killed with an action unread resets the pipe
            self._process.join(timeout=5)
            code = self._process.exitcode
            raise EnvError(f"{self.names}: their worker process stopped (exit code {code}"
                           f"{': SIGKILL, often the out-of-memory killer' if code == -signal.SIGKILL else ''})") from None  # fmt: skip
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
            if self._process.is_alive():  # stuck in an env: it ignores SIGTERM, so SIGKILL
                self._process.kill()
                self._process.join()


def check_mw_flags(mw_backend: str, mw_layouts: str) -> None:
    if mw_backend not in ("envpool", "metaworld"):
        raise ValueError(f"mw_backend must be 'envpool' or 'metaworld', got '{mw_backend}'")
    if mw_layouts not in ("per-episode", "frozen"):
        raise ValueError(f"mw_layouts must be 'per-episode' or 'frozen', got '{mw_layouts}'")
    if mw_backend == "envpool" and mw_layouts == "frozen":
        raise ValueError("--mw-layouts frozen needs --mw-backend metaworld: envpool draws a new layout at every reset")


def worker_options(
    tasks: list[TaskSpec], shadowhand_assets: str | None, mw_layouts: str = "per-episode"
) -> dict[str, dict]:
    """Extra constructor arguments of the Python envs, by domain."""
    options = {"metaworld": {"layouts": mw_layouts}}
    if any(t.domain == "shadowhand" and t.envpool_id not in SH_BUNDLED for t in tasks):
        options["shadowhand"] = {"assets": shadowhand.assets_dir(shadowhand_assets)}
    return options


def runs_in_worker(task: TaskSpec, mw_backend: str) -> bool:
    """MetaWorld on the package backend (and envpool's divergent tasks), HumanoidBench, the
    custom DMC tasks and ShadowHand run in worker processes; the rest on envpool."""
    if task.domain == "metaworld":
        return mw_backend == "metaworld" or task.name in ENVPOOL_DIVERGENT_TASKS
    return task.domain in ("humanoidbench", "dmc-custom", "shadowhand")


class MultiTaskEnv:
    """All `tasks` in lockstep, `envs_per_task` copies each; rows are task-major.

    Row `k * envs_per_task + j` is copy j of task k; `task_ids[row] = k`; its env seed is
    `seeds[k, j]` (`env_seeds(seed, role, ...)`). MetaWorld runs the `metaworld` package's
    goal-observable envs (`mw_backend="metaworld"`, default) or envpool's; with
    `mw_layouts="per-episode"` (default) every reset draws a new object/goal layout, with
    "frozen" (package only) each env keeps the one layout its seed gives (EnvArgs.mw_layouts).
    """

    def __init__(
        self,
        tasks: list[TaskSpec],
        envs_per_task: int = 1,
        seed: int = 0,
        role: str = "train",
        mw_backend: str = "metaworld",
        mw_layouts: str = "per-episode",
        min_obs_dim: int = 0,
        num_workers: int | None = None,
        shadowhand_assets: str | None = None,
        start_step: int = 0,
    ):
        """`min_obs_dim`: pad observations to at least this size (a transferred network's input).
        `num_workers`: worker processes for the tasks that run in workers (default: one per CPU
        core, at most one per task); tasks are dealt to them in turn.
        `shadowhand_assets`: the authors' ShadowHand assets (default $BRC_SHADOWHAND_ASSETS).
        `start_step`: a resumed run's step; its envs get fresh seeds (`env_seeds`)."""
        check_mw_flags(mw_backend, mw_layouts)
        self.tasks = tasks
        self.envs_per_task = envs_per_task
        self.num_envs = len(tasks) * envs_per_task
        self.obs_dim = max(min_obs_dim, *(t.obs_dim for t in tasks))
        self.act_dim = max(t.act_dim for t in tasks)
        self.task_ids = np.repeat(np.arange(len(tasks), dtype=np.int32), envs_per_task)
        self.seeds = env_seeds(seed, role, len(tasks), envs_per_task, start_step)
        in_worker = [k for k, task in enumerate(tasks) if runs_in_worker(task, mw_backend)]
        if mw_backend == "envpool":
            for k in in_worker:
                if tasks[k].domain == "metaworld":
                    warnings.warn(
                        f"{tasks[k].name}: envpool's version differs from the metaworld package "
                        "(see ENVPOOL_DIVERGENT_TASKS); running it on the metaworld package."
                    )
        # route[k] = ("envpool", instance) or ("worker", worker index, slot in that worker)
        self._route: list[tuple] = [None] * len(tasks)
        self._envpool, self._workers = [], []
        options = worker_options(tasks, shadowhand_assets, mw_layouts)
        count = min(num_workers or available_cores(), len(in_worker))
        groups = [in_worker[w::count] for w in range(count)]  # tasks dealt to the workers in turn
        try:
            for w, group in enumerate(groups):
                for slot, k in enumerate(group):
                    self._route[k] = ("worker", w, slot)
                self._workers.append(_Worker([(tasks[k], self.seeds[k]) for k in group], options))
            for k, task in enumerate(tasks):
                if self._route[k] is None:
                    self._route[k] = ("envpool", _make_envpool(task, self.seeds[k]))
                    self._envpool.append(k)
        except BaseException:
            self.close()
            raise
        self._tasks_per_worker = [len(group) for group in groups]
        self._obs = np.zeros((self.num_envs, self.obs_dim), np.float32)

    def _rows(self, k: int) -> slice:
        return slice(k * self.envs_per_task, (k + 1) * self.envs_per_task)

    def _flatten(self, task: TaskSpec, obs) -> np.ndarray:
        if isinstance(obs, dict):  # envpool DMC: dm_control's keys, in dm_control's order
            obs = np.concatenate(
                [np.asarray(obs[key]).reshape(len(obs[key]), -1) for key in task.dmc_obs_keys], axis=1
            )
        padded = np.zeros((len(obs), self.obs_dim), np.float32)
        padded[:, : task.obs_dim] = obs
        return padded

    @staticmethod
    def _in_env_order(obs, info: dict):
        """envpool may answer out of order: its observations sorted by env id, and the order."""
        order = np.argsort(info["env_id"])
        return ({k: v[order] for k, v in obs.items()} if isinstance(obs, dict) else obs[order]), order

    def _recv_all(self, envpool_tasks: list[int], worker_ids: list[int], reset: bool) -> tuple[dict, list]:
        """Answers of the given envpool instances (by task) and workers; on any error every
        backend is closed first, so that no worker outlives it."""
        try:
            answers = {k: self._route[k][1].recv(reset=reset, return_info=True) if reset
                       else self._route[k][1].recv() for k in envpool_tasks}  # fmt: skip
            replies = [self._workers[w].recv() if w in worker_ids else None for w in range(len(self._workers))]
        except EnvError:
            self.close()
            raise
        return answers, replies

    def reset(self) -> np.ndarray:
        for k in self._envpool:
            self._route[k][1].async_reset()
        for worker in self._workers:
            worker.send("reset")
        answers, replies = self._recv_all(self._envpool, list(range(len(self._workers))), reset=True)
        for k, task in enumerate(self.tasks):
            if self._route[k][0] == "envpool":
                obs, _ = self._in_env_order(*answers[k])
            else:
                obs = replies[self._route[k][1]][self._route[k][2]]
            self._obs[self._rows(k)] = self._flatten(task, obs)
        return self._obs.copy()

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepOutput:
        """`actions`: (num_envs, act_dim) in [-1, 1]; task k uses its first |A_k| entries.
        `active`: (num_tasks,) bool, the tasks to step (default all); the others' rows come
        back with zero reward, no episode end, and their current observation."""
        actions = np.asarray(actions)
        active = np.ones(len(self.tasks), bool) if active is None else np.asarray(active, bool)
        n = self.envs_per_task
        worker_actions = [[None] * count for count in self._tasks_per_worker]
        stepped = [k for k in self._envpool if active[k]]
        for k, task in enumerate(self.tasks):
            if not active[k]:
                continue
            task_actions = actions[self._rows(k), : task.act_dim]
            if self._route[k][0] == "envpool":
                backend = self._route[k][1]
                backend.send(task_actions.astype(backend.action_space.dtype), np.arange(n, dtype=np.int32))
            else:
                worker_actions[self._route[k][1]][self._route[k][2]] = task_actions.astype(np.float32)
        busy = [w for w, a in enumerate(worker_actions) if any(x is not None for x in a)]
        for w in busy:
            self._workers[w].send("step", worker_actions[w])
        answers, replies = self._recv_all(stepped, busy, reset=False)

        out = StepOutput(
            np.zeros((self.num_envs, self.obs_dim), np.float32), np.zeros(self.num_envs, np.float32),
            np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool),
            self._obs.copy(),
        )  # fmt: skip
        ended = {}  # envpool task -> ids of its envs whose episode ended: reset them now
        for k, task in enumerate(self.tasks):
            if not active[k]:
                continue
            rows = self._rows(k)
            if self._route[k][0] == "envpool":
                obs, reward, term, trunc, info = answers[k]
                obs, order = self._in_env_order(obs, info)
                out.next_obs[rows] = out.obs[rows] = self._flatten(task, obs)
                out.reward[rows], out.terminated[rows] = np.asarray(reward)[order], np.asarray(term)[order]
                out.truncated[rows] = np.asarray(trunc)[order]
                if task.has_success:
                    out.success[rows] = np.asarray(info["success"])[order] > 0
                done = np.flatnonzero(out.terminated[rows] | out.truncated[rows])
                if len(done):
                    ended[k] = done.astype(np.int32)
            else:
                next_obs, reward, term, trunc, success, obs = replies[self._route[k][1]][self._route[k][2]]
                out.next_obs[rows], out.obs[rows] = self._flatten(task, next_obs), self._flatten(task, obs)
                out.reward[rows], out.terminated[rows], out.truncated[rows] = reward, term, trunc
                out.success[rows] = success if task.has_success else False
        for k, ids in ended.items():
            backend = self._route[k][1]
            if len(ids) == n:
                backend.async_reset()  # envpool exposes an asynchronous reset of all ids only
        for k, ids in ended.items():
            backend = self._route[k][1]
            obs, info = backend.recv(reset=True, return_info=True) if len(ids) == n else backend.reset(env_id=ids)
            obs, order = self._in_env_order(obs, info)
            out.obs[k * n + np.asarray(info["env_id"])[order]] = self._flatten(self.tasks[k], obs)
        self._obs = out.obs.copy()
        return out

    def close(self) -> None:
        """Close every backend; safe to call again (an error path closes before the caller does)."""
        for route in self._route:
            if route is not None and route[0] == "envpool":
                route[1].close()
        for worker in self._workers:
            worker.close()
        self._route, self._workers = [], []


def eval_envs_and_episodes(protocol: str, episodes: int) -> tuple[int, int]:
    """(envs per task, episodes per env) of an evaluation protocol. "published" (ref. code): one
    eval env per task, `episodes` episodes one after another on it; "layouts": one episode on
    each of `episodes` envs per task (MetaWorld: that many layouts)."""
    if protocol not in ("published", "layouts"):
        raise ValueError(f"the evaluation protocol must be 'published' or 'layouts', got '{protocol}'")
    return (1, episodes) if protocol == "published" else (episodes, 1)


def run_episodes(
    env: MultiTaskEnv, policy, episodes: int
) -> tuple[np.ndarray, np.ndarray]:
    """`episodes` whole episodes on every env of `env`, one after another (each env's next
    episode starts within the step its last one ended), acting with `policy(obs) -> actions`.

    Returns (return, success) per env and episode, each (num_envs, episodes); success is
    whether the env reported success at any step of the episode. A task whose envs have all
    finished is no longer stepped.
    """
    returns = np.zeros((env.num_envs, episodes))
    success = np.zeros((env.num_envs, episodes), bool)
    finished = np.zeros(env.num_envs, np.int32)  # episodes completed per env
    episode_return, episode_success = np.zeros(env.num_envs), np.zeros(env.num_envs, bool)
    obs = env.reset()
    while (finished < episodes).any():
        live = finished < episodes
        active = np.array([live[env.task_ids == k].any() for k in range(len(env.tasks))])
        out = env.step(policy(obs), active)
        episode_return += np.where(live, out.reward, 0.0)
        episode_success |= live & out.success
        for i in np.flatnonzero(live & (out.terminated | out.truncated)):
            returns[i, finished[i]], success[i, finished[i]] = episode_return[i], episode_success[i]
            finished[i] += 1
            episode_return[i], episode_success[i] = 0.0, False
        obs = out.obs
    return returns, success


def evaluate_policy(env: MultiTaskEnv, policy, episodes: int) -> dict[str, dict[str, float]]:
    """An evaluation: `episodes` episodes one after another on every env of `env`, acting with
    `policy(obs) -> actions` (the scripts pass their deterministic policy, `tanh(mean)`); per
    task the mean return, success rate (success at any step of an episode) and normalised score."""
    returns, success = run_episodes(env, policy, episodes)
    results = {}
    for k, task in enumerate(env.tasks):
        rows = env.task_ids == k
        mean_return, success_rate = float(returns[rows].mean()), float(success[rows].mean())
        results[task.name] = {
            "return": mean_return,
            "success": success_rate if task.has_success else None,
            "score": normalized_score(task, mean_return, success_rate),
        }
    return results
