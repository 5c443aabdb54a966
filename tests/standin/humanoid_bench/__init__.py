"""A stand-in for the `humanoid_bench` package (HumanoidBench), for tests only.

HumanoidBench cannot be installed on our test machines, so this package registers
gymnasium envs under HB's ids with HB's interface, and none of its code:
- ids `h1-<task>-v0` (observations 51, actions 19) and a few `h1hand-<task>-v0`;
- float64 observations, float32 actions in Box[-1, 1];
- `env.unwrapped.task.success_bar`, no `info["success"]`;
- early termination on a "fall", truncation at the task's time limit (1000, push 500);
- a default `render_mode="rgb_array"` that fails without OpenGL, as HB's does;
- the two import-time problems of the published package that common/envs.py's shim
  fixes: an import of `humanoid_bench.mjx.flax_to_torch` (a module that needs torch; absent
  here) and a `dmc_deps/dmc_sizes.py` field table naming fields this MuJoCo lacks.

Dynamics (toy): reward = 1 + action[0] per step (so a 1000-step episode returns 0..2000);
the robot "falls" (terminated) when action[1] > 0.9; obs[0] is the step count / 1000,
obs[1:] are drawn from the global `np.random` at reset and then stay fixed.

Failure injection, for the tests of clean failures: with `STANDIN_FAIL=<id>:<n>` in the
environment, every env with gymnasium id <id> raises RuntimeError at its n-th step (n = 0:
when it is built).
"""

import os

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.registration import register
from gymnasium.spaces import Box

from humanoid_bench.dmc_deps import dmc_sizes
from humanoid_bench.mjx.flax_to_torch import TorchModel, TorchPolicy  # noqa: F401 (as HB does)

_MODEL_XML = "<mujoco><worldbody><body><joint type='hinge'/><geom size='.1'/></body></worldbody></mujoco>"
SUCCESS_BAR = {"stand": 800.0, "maze": 1200.0, "reach": 12000.0}  # others: 700


class _Task:
    def __init__(self, name: str):
        self.success_bar = SUCCESS_BAR.get(name, 700.0)


class StandInHumanoidEnv(gymnasium.Env):
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, robot: str, task: str, obs_dim: int, act_dim: int, render_mode="rgb_array"):
        if render_mode is not None:
            raise RuntimeError("OpenGL platform library has not been loaded (stand-in for HB's renderer)")
        model = mujoco.MjModel.from_xml_string(_MODEL_XML)
        data = mujoco.MjData(model)
        for struct, fields in dmc_sizes.array_sizes.items():  # HB reads every listed field
            for field in fields:
                getattr(model if struct == "mjmodel" else data, field)
        self.robot, self.task = robot, _Task(task)
        self.observation_space = Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.action_space = Box(-1.0, 1.0, (act_dim,), np.float32)
        self._obs = np.zeros(obs_dim)
        self._t = 0
        self._steps = 0  # over all episodes, for STANDIN_FAIL
        fail_id, _, fail_step = os.environ.get("STANDIN_FAIL", "").partition(":")
        self._fail_step = int(fail_step) if fail_id == f"{robot}-{task}-v0" else None
        if self._fail_step == 0:
            raise RuntimeError("stand-in failure at construction")

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = np.random.uniform(-1.0, 1.0, self.observation_space.shape)
        self._obs[0] = 0.0
        return self._obs.copy(), {}

    def step(self, action):
        action = np.asarray(action)
        assert action.shape == self.action_space.shape, action.shape
        self._t += 1
        self._steps += 1
        if self._steps == self._fail_step:
            raise RuntimeError(f"stand-in failure at step {self._steps}")
        self._obs[0] = self._t / 1000
        reward = 1.0 + float(np.clip(action[0], -1, 1))
        terminated = bool(action[1] > 0.9)
        return self._obs.copy(), reward, terminated, False, {"per_timestep_reward": reward}


_H1_TASKS = ("walk", "stand", "run", "stair", "crawl", "pole", "slide", "hurdle", "maze")
_ENVS = {
    **{("h1", t): (51, 19, 1000) for t in _H1_TASKS},
    ("h1hand", "walk"): (151, 61, 1000),
    ("h1hand", "reach"): (157, 61, 1000),
    ("h1hand", "push"): (163, 61, 500),
}
for (robot, task), (obs_dim, act_dim, steps) in _ENVS.items():
    register(
        id=f"{robot}-{task}-v0",
        entry_point="humanoid_bench:StandInHumanoidEnv",
        max_episode_steps=steps,
        kwargs={"robot": robot, "task": task, "obs_dim": obs_dim, "act_dim": act_dim},
    )
