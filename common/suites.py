"""Suite and task metadata: task lists (paper Appendix E), sizes and score normalisation.

A task is named as in the paper: MetaWorld tasks by their MT50 name (`reach`,
`door-open`), DeepMind Control tasks as `domain-task` (`cheetah-run`, `dog-trot`).
"""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TaskSpec:
    name: str
    domain: Literal["metaworld", "dmc"]
    envpool_id: str
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    has_success: bool
    # DMC: dm_control's observation keys in dm_control's order. envpool adds always-zero
    # keys for some tasks (dog, humanoid, finger-spin) and orders fish's differently.
    dmc_obs_keys: tuple[str, ...] = ()


# MT50 in the order of paper Appendix E.1.
MT50 = (
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown",
    "button-press-topdown-wall", "button-press", "button-press-wall", "coffee-button",
    "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock",
    "door-open", "door-unlock", "hand-insert", "drawer-close", "drawer-open", "faucet-open",
    "faucet-close", "hammer", "handle-press-side", "handle-press", "handle-pull-side",
    "handle-pull", "lever-pull", "pick-place-wall", "pick-out-of-hole", "pick-place",
    "plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side",
    "peg-insert-side", "peg-unplug-side", "soccer", "stick-push", "stick-pull", "push",
    "push-wall", "push-back", "reach", "reach-wall", "shelf-place", "sweep-into", "sweep",
    "window-open", "window-close",
)  # fmt: skip

# Paper Appendix E: MetaWorld episodes are truncated at 200 steps (prior work [38, 74]).
METAWORLD_EPISODE_STEPS = 200

# DMC tasks available through envpool: (domain obs size as in dm_control, action size).
# Sizes are dm_control's; envpool adds always-zero keys for dog and humanoid.
_DMC = {
    "acrobot-swingup": (6, 1), "ball-in-cup-catch": (8, 2), "cartpole-balance": (5, 1),
    "cartpole-balance-sparse": (5, 1), "cartpole-swingup": (5, 1),
    "cartpole-swingup-sparse": (5, 1), "cheetah-run": (17, 6), "finger-spin": (9, 2),
    "finger-turn-easy": (12, 2), "finger-turn-hard": (12, 2), "fish-swim": (24, 5),
    "hopper-hop": (15, 4), "hopper-stand": (15, 4), "pendulum-swingup": (3, 1),
    "reacher-easy": (6, 2), "reacher-hard": (6, 2), "walker-run": (24, 6),
    "walker-stand": (24, 6), "walker-walk": (24, 6),
    "dog-stand": (223, 38), "dog-walk": (223, 38), "dog-trot": (223, 38), "dog-run": (223, 38),
    "humanoid-stand": (67, 21), "humanoid-walk": (67, 21), "humanoid-run": (67, 21),
}  # fmt: skip
_DMC_OBS_KEYS = {
    "acrobot": ("orientations", "velocity"),
    "ball-in-cup": ("position", "velocity"),
    "cartpole": ("position", "velocity"),
    "cheetah": ("position", "velocity"),
    "finger-spin": ("position", "velocity", "touch"),
    "finger-turn": ("position", "velocity", "touch", "target_position", "dist_to_target"),
    "fish": ("joint_angles", "upright", "target", "velocity"),
    "hopper": ("position", "velocity", "touch"),
    "pendulum": ("orientation", "velocity"),
    "reacher": ("position", "to_target", "velocity"),
    "walker": ("orientations", "height", "velocity"),
    "dog": ("joint_angles", "joint_velocites", "torso_pelvis_height", "z_projection",
            "torso_com_velocity", "inertial_sensors", "foot_forces", "touch_sensors", "actuator_state"),
    "humanoid": ("joint_angles", "head_height", "extremities", "torso_vertical", "com_velocity", "velocity"),
}  # fmt: skip


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _build_registry() -> dict[str, TaskSpec]:
    registry = {}
    for name in MT50:
        registry[name] = TaskSpec(
            name, "metaworld", f"MetaWorld/{_camel(name)}-v3", 39, 4,
            METAWORLD_EPISODE_STEPS, has_success=True,
        )  # fmt: skip
    for name, (obs_dim, act_dim) in _DMC.items():
        keys = next(v for k, v in _DMC_OBS_KEYS.items() if name.startswith(k))
        registry[name] = TaskSpec(
            name, "dmc", f"{_camel(name)}-v1", obs_dim, act_dim, 1000, has_success=False, dmc_obs_keys=keys
        )
    return registry


TASKS: dict[str, TaskSpec] = _build_registry()

DMC_DOGS = ("dog-stand", "dog-walk", "dog-trot", "dog-run")
DMC_HUMANOIDS = ("humanoid-stand", "humanoid-walk", "humanoid-run")

SUITES: dict[str, tuple[str, ...]] = {
    "mw": MT50,
    "dmc-dogs": DMC_DOGS,
    "dmc-humanoids": DMC_HUMANOIDS,
    "dmc-hard": DMC_DOGS + DMC_HUMANOIDS,
    # Small suites for quick runs on a laptop and for tests.
    "mw-easy": ("reach", "drawer-close", "button-press-topdown", "window-open"),
    "dmc-easy": ("cartpole-swingup", "cheetah-run"),
    # Single tasks under their own name, e.g. `--suite cheetah-run`.
    **{name: (name,) for name in TASKS},
}


def resolve_tasks(suite: str, tasks: tuple[str, ...] = ()) -> list[TaskSpec]:
    """Task specs for `--tasks` if given, else for `--suite`. Raises ValueError with the valid names."""
    if tasks:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}. Valid tasks: {', '.join(sorted(TASKS))}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"--tasks lists a task twice: {','.join(tasks)}")
        return [TASKS[t] for t in tasks]
    if suite not in SUITES:
        multi = [s for s in SUITES if s not in TASKS]
        raise ValueError(
            f"unknown suite '{suite}'. Valid suites: {', '.join(multi)}, "
            f"or any single task name (see --tasks)."
        )
    return [TASKS[t] for t in SUITES[suite]]


def normalized_score(task: TaskSpec, episode_return: float, success: float) -> float:
    """Paper Appendix E.3: MetaWorld reports success rate, DMC return / 1000."""
    if task.domain == "metaworld":
        return float(success)
    return float(episode_return) / 1000.0
