"""Evaluation videos: one deterministic episode of a task, rendered headless, written as MP4.

envpool does not render MuJoCo, so a video runs the matching Python env (dm_control, the
`metaworld` package, HumanoidBench, gymnasium-robotics' ShadowHand) in a process of its own,
driven step by step by the training process's evaluation policy, and renders it with MuJoCo's
offscreen renderer on EGL (GPU machines) or OSMesa (CPU), whichever the machine has. Nothing of
this starts unless a script is given `--capture-video`.

MuJoCo and PyOpenGL choose their GL backend when they are first imported, from MUJOCO_GL and
PYOPENGL_PLATFORM; the video process is therefore a fresh interpreter started with them set,
and each backend is tried in turn until one renders.
"""

import contextlib
import os
import signal
import subprocess
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from jaxtyping import UInt8

from common import envs
from common.envs import EnvError, worker_options
from common.suites import TaskSpec

GL_BACKENDS = ("egl", "osmesa")
INSTALL_GL = (
    "no headless OpenGL found for --capture-video: MuJoCo could render with neither EGL nor OSMesa. "
    "On a GPU machine EGL comes with the NVIDIA driver; on a CPU machine install OSMesa "
    "(Debian/Ubuntu: `apt-get install libosmesa6`), or set MUJOCO_GL to a backend that works"
)
HEIGHT, WIDTH = 240, 320  # multiples of 16, as H.264 encoders like


class VideoError(EnvError):
    """A video cannot be recorded: one line saying why and what to do (scripts print it as
    they print EnvError, and stop with exit code 2)."""


# ---------------------------------------------------------------- the env side (video process)


def _dm_control_name(task: TaskSpec) -> tuple[str, str]:
    """Our DMC name (cartpole-swingup, ball-in-cup-catch) -> dm_control's (domain, task)."""
    from dm_control import suite

    by_name = {f"{d}-{t}".replace("_", "-"): (d, t) for d, t in suite.ALL_TASKS}
    return by_name[task.name]


class _Scene:
    """One task's Python env and how to film it: `reset() -> obs`, `step(a) -> (obs, reward,
    ended, success)`, `frame() -> (H, W, 3) uint8`, `fps` (real time)."""

    def __init__(self, task: TaskSpec, seed: int, options: dict[str, dict]):
        import mujoco

        self.task, self.flip, self.camera = task, False, -1
        if task.domain in ("dmc", "dmc-custom"):
            self.env = _DMCSuiteEnv(task, seed) if task.domain == "dmc" else envs._DMControlEnv(task, seed)
            physics, self.camera = self.env.env.physics, 0  # DMC's tracking camera
            model, self.data, self.fps = physics.model.ptr, physics.data.ptr, 1.0 / self.env.env.control_timestep()
        else:
            # gymnasium MuJoCo envs: the metaworld package, HumanoidBench, ShadowHand
            self.env = envs._WORKER_ENVS[task.domain](task, seed, **options.get(task.domain, {}))
            unwrapped = self.env.env.unwrapped
            model, self.data, self.fps = unwrapped.model, unwrapped.data, 1.0 / unwrapped.dt
            if task.domain == "metaworld":  # MetaWorld's corner camera is mounted upside down
                self.camera, self.flip = "corner", True
            elif model.ncam:
                self.camera = model.camera(0).name
        self.renderer = mujoco.Renderer(model, HEIGHT, WIDTH)
        if self.camera == -1:  # no camera in the model: the free camera, on the whole scene
            self.camera = mujoco.MjvCamera()
            mujoco.mjv_defaultFreeCamera(model, self.camera)
            if task.domain == "shadowhand":  # gymnasium-robotics' own view of the hand
                self.camera.lookat[:] = self.data.body("robot0:palm").xpos
                self.camera.distance, self.camera.azimuth, self.camera.elevation = 0.5, 55.0, -25.0
        self.elapsed = 0

    def reset(self) -> np.ndarray:
        self.elapsed = 0
        return self.env.reset()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, success = self.env.step(action)
        self.elapsed += 1
        ended = bool(terminated or truncated or self.elapsed >= self.task.max_episode_steps)
        return obs, float(reward), ended, bool(success)

    def frame(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.camera)
        image = self.renderer.render()
        return np.ascontiguousarray(image[::-1, ::-1]) if self.flip else image


class _DMCSuiteEnv(envs._DMControlEnv):
    """A dm_control suite task (envpool runs these in training) with envpool's observation
    layout, as the worker's custom DMC tasks."""

    def __init__(self, task: TaskSpec, seed: int):
        from dm_control import suite

        self.env = suite.load(*_dm_control_name(task), task_kwargs={"random": seed})
        self.keys = task.dmc_obs_keys


def write_mp4(path: Path, frames: UInt8[np.ndarray, "frames height width 3"], fps: float) -> None:
    """H.264 MP4, written to a temporary file and renamed, so a crash never leaves half a video."""
    import imageio.v3 as iio

    tmp = path.with_name(path.stem + ".tmp.mp4")
    iio.imwrite(tmp, frames, plugin="pyav", codec="libx264", fps=max(1, round(fps)),
                out_pixel_format="yuv420p")  # fmt: skip
    os.replace(tmp, path)


def _serve(conn) -> None:
    """The video process: receives (backend, jobs, options), then serves commands: ("reset", k)
    -> obs; ("step", action) -> (obs, reward, ended, success); ("save", path) -> frames
    written; ("close", None). The first answer says whether `backend`
    renders. Errors are answered as ("error", one line) and end the process."""
    backend, jobs, options = conn.recv()
    try:
        import mujoco

        probe = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 16, 16)
        probe.render()
        probe.close()
    except Exception as error:  # noqa: BLE001
        conn.send(("error", f"{backend}: {type(error).__name__}: {' '.join(str(error).split())}"))
        return
    conn.send(("ok", None))
    scenes: dict[int, _Scene] = {}
    scene, frames = None, []
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if command == "close":
                return
            if command == "reset":
                if payload not in scenes:
                    task, seed = jobs[payload]
                    scenes[payload] = _Scene(task, seed, options)
                scene = scenes[payload]
                reply = scene.reset()
                frames = [scene.frame()]
            elif command == "step":
                reply = scene.step(payload)
                frames.append(scene.frame())
            else:  # save
                write_mp4(Path(payload), np.stack(frames), scene.fps)
                reply, frames = len(frames), []
        except Exception as error:  # noqa: BLE001
            name = jobs[payload][0].name if command == "reset" else scene.task.name
            conn.send(("error", f"{name}: video: {type(error).__name__}: {' '.join(str(error).split())}"))
            return
        conn.send(("ok", reply))


# ---------------------------------------------------------------- the training side


class VideoRecorder:
    """Records one episode of task k of `tasks` into an MP4, acting with the caller's policy.

    `seeds[k]`: the env seed of task k's video env (its first episode; later ones continue the
    env's RNG, as evaluation envs do). `obs_dim`: the width the policy reads (observations are
    zero-padded to it, as in MultiTaskEnv). `shadowhand_assets`, `mw_layouts`: as for MultiTaskEnv."""

    def __init__(self, tasks: list[TaskSpec], seeds: list[int], obs_dim: int, shadowhand_assets: str | None = None,
                 mw_layouts: str = "per-episode"):  # fmt: skip
        if any(t.domain == "atari" for t in tasks):
            raise VideoError("Atari games are filmed from their own frames (drq_brc.py), not with VideoRecorder")
        self.tasks, self.obs_dim = tasks, obs_dim
        jobs = [(t, int(s)) for t, s in zip(tasks, seeds)]
        chosen = os.environ.get("MUJOCO_GL")
        failures = []
        for backend in (chosen,) if chosen else GL_BACKENDS:
            self._process, self._conn = _start(backend, jobs, worker_options(tasks, shadowhand_assets, mw_layouts))
            try:
                status, message = self._conn.recv()
            except (EOFError, OSError):
                status, message = "error", f"{backend}: the video process stopped (exit code {self._process.wait()})"
            if status == "ok":
                self.backend = backend
                return
            failures.append(message)
            self._process.wait(timeout=10)
        raise VideoError(f"{INSTALL_GL} ({'; '.join(failures)})")

    @classmethod
    def of_evaluation(cls, tasks: list[TaskSpec], args, eval_copies: int, obs_dim: int) -> "VideoRecorder":
        """--capture-video: the first --video-tasks of `tasks`, each from its first eval env's seed
        (`args`: the script's flags), started before training (a machine without headless GL
        stops here)."""
        filmed = tasks[: args.video_tasks]
        seeds = envs.env_seeds(args.seed, "eval", len(tasks), eval_copies)[: len(filmed), 0]
        return cls(filmed, seeds.tolist(), obs_dim, args.shadowhand_assets, args.mw_layouts)

    def _ask(self, command: str, payload=None):
        try:
            self._conn.send((command, payload))
            status, reply = self._conn.recv()
        except (EOFError, OSError):  # closed or reset: the process has gone
            raise VideoError(f"the video process stopped (exit code {self._process.wait()})") from None
        if status == "error":
            raise VideoError(reply)
        return reply

    def record(self, k: int, policy, path: Path, max_steps: int | None = None) -> dict:
        """One episode of task k with `policy(obs (1, obs_dim)) -> action (1, >= |A_k|)`, written
        to `path`; at most `max_steps` steps (default: the whole episode). Returns the frames
        written (steps + 1), the episode's return and whether it succeeded at any step."""
        task = self.tasks[k]
        obs, episode_return, success, steps = self._ask("reset", k), 0.0, False, 0
        padded = np.zeros((1, self.obs_dim), np.float32)
        while True:
            padded[0, : task.obs_dim] = obs
            action = np.asarray(policy(padded))[0, : task.act_dim].astype(np.float64)
            obs, reward, ended, step_success = self._ask("step", action)
            episode_return, success, steps = episode_return + reward, success or step_success, steps + 1
            if ended or (max_steps is not None and steps >= max_steps):
                break
        path = path.resolve()  # the video process runs in another directory
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = self._ask("save", str(path))
        return {"frames": frames, "return": episode_return, "success": success}

    def film(self, eval_env, folder: Path, step: int, act) -> dict[str, str]:
        """One deterministic episode of each filmed task, acted as an evaluation acts: by
        `act(obs (eval envs, obs_dim)) -> actions` on a batch shaped like `eval_env`'s (so a
        jitted policy keeps its one trace), the task's row filled. Returns task -> file name
        under `folder`."""
        files = {}
        for k, task in enumerate(self.tasks):
            row = int(np.flatnonzero(eval_env.task_ids == k)[0])
            batch = np.zeros((eval_env.num_envs, eval_env.obs_dim), np.float32)

            def policy(obs: np.ndarray) -> np.ndarray:
                batch[row] = obs[0]
                return act(batch)[row : row + 1]

            files[task.name] = f"{task.name}_step{step}.mp4"
            self.record(k, policy, folder / files[task.name])
        return files

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(("close", None))
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _start(backend: str, jobs: list[tuple[TaskSpec, int]], options: dict[str, dict]):
    """A fresh interpreter with MUJOCO_GL and PYOPENGL_PLATFORM set before anything imports
    MuJoCo, holding one end of a socket pair (so its exit is an EOFError here, never a hang);
    its output is discarded (errors come back as answers)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    conn, child = Pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "common.video", str(child.fileno())], env=env, cwd=root,
        pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    child.close()
    conn.send((backend, jobs, options))
    return process, conn


def read_mp4(path: Path) -> UInt8[np.ndarray, "frames height width 3"]:
    """All frames of an MP4 (for tests and checks), with the library that wrote it."""
    import imageio.v3 as iio

    return iio.imread(path, plugin="pyav")


if __name__ == "__main__":  # the video process (VideoRecorder starts it)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes it
    _serve(Connection(int(sys.argv[1])))
