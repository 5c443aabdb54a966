"""ShadowHand in-hand rotation (paper "SH", Appendix E): one object per task on the hand.

The tasks are Huang et al.'s (2021) shapes, as the BRC authors ran them (their `dex_envs`,
version "v1"): gymnasium-robotics' `MujocoManipulateEnv` with one model file per shape,
a target rotation about z, the target position ignored, randomised initial position and
rotation, sparse reward (0 at the goal rotation, -1 otherwise) and 100-step episodes.
The policy observes `observation ⊕ desired_goal` (61 + 7 = 68) and sends 20 actions.

The shape models and meshes are not part of gymnasium-robotics: they come from the
user's clone of the authors' repository (`dex_envs/assets`, found with
`--shadowhand-assets` or `$BRC_SHADOWHAND_ASSETS`). gymnasium-robotics' own objects
(block, egg, pen) run from the package's bundled files through the same code path.

Two incompatibilities with MuJoCo 3.16 are worked around here, in memory, without
touching the user's files: the models' `<option apirate>` (removed from MuJoCo) is dropped
before compiling, and gymnasium-robotics' joint accessors, whose type check
`np.int32 in (mjtJoint, mjtJoint)` is always False on this MuJoCo, are replaced for these
envs by equivalent ones that compare integers.
"""

import contextlib
import io
import os
import re
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from common.suites import SH_BUNDLED

ASSETS_ENV_VAR = "BRC_SHADOWHAND_ASSETS"
AUTHORS_REPOSITORY = "https://github.com/naumix/BiggerRegularizedCategorical"

# the authors' version "v1" (dex_envs/__init__.py) and their target position range
V1 = dict(
    target_position="ignore",
    target_rotation="z",
    reward_type="sparse",
    randomize_initial_position=True,
    randomize_initial_rotation=True,
    target_position_range=np.array([(-0.04, 0.04), (-0.06, 0.02), (0.0, 0.06)]),
)
_INCLUDES = ("shared.xml", "robot.xml", "shared_asset.xml")  # every shape's model includes these
_REMOVED_ATTRIBUTES = re.compile(r'\s+apirate="[^"]*"')  # MuJoCo 3 rejects <option apirate>

GET_ASSETS = (
    f"get them with `git clone {AUTHORS_REPOSITORY}` and pass "
    f"`--shadowhand-assets BiggerRegularizedCategorical/dex_envs/assets` (or set {ASSETS_ENV_VAR}); "
    "README.md, section ShadowHand, gives every step"
)


class AssetsError(ValueError):
    """The ShadowHand assets are not where they were said to be, or lack a file."""


def bundled_assets() -> Path:
    import gymnasium_robotics

    return Path(gymnasium_robotics.__file__).parent / "envs" / "assets"


def assets_dir(given: str | None) -> Path:
    """The folder holding `hand/manipulate_<shape>.xml`, `stls/` and `textures/`: `given`
    (the flag), else $BRC_SHADOWHAND_ASSETS. A clone's root works too (its dex_envs/assets)."""
    given = given or os.environ.get(ASSETS_ENV_VAR)
    if not given:
        raise AssetsError(f"ShadowHand tasks need the shape assets of the BRC authors' repository: {GET_ASSETS}")
    root = Path(given).expanduser()
    for candidate in (root, root / "dex_envs" / "assets"):
        if (candidate / "hand").is_dir():
            return candidate.resolve()
    raise AssetsError(
        f"--shadowhand-assets {given}: no hand/ folder there or in its dex_envs/assets/; "
        f"point it at the clone's dex_envs/assets ({GET_ASSETS})"
    )


def model_file(shape: str, assets: Path) -> Path:
    return assets / "hand" / f"manipulate_{shape}.xml"


def _rewritten(path: Path) -> str:
    return _REMOVED_ATTRIBUTES.sub("", path.read_text())


def missing_files(shape: str, assets: Path) -> list[Path]:
    """Every file the shape's model needs that is absent: its XML, the included XMLs, meshes
    and textures (resolved as MuJoCo resolves them: against the compiler's meshdir/texturedir)."""
    main = model_file(shape, assets)
    if not main.exists():
        return [main]
    hand = main.parent
    missing = [hand / name for name in _INCLUDES if not (hand / name).exists()]
    if missing:
        return missing
    compiler = ElementTree.fromstring(_rewritten(main)).find("compiler")
    folders = {
        "mesh": hand / compiler.get("meshdir", "."),
        "texture": hand / compiler.get("texturedir", "."),
    }  # fmt: skip
    for path in (main, *(hand / name for name in _INCLUDES)):
        root = ElementTree.fromstring(_rewritten(path))
        for kind, folder in folders.items():
            for element in root.iter(kind):
                if element.get("file") and not (folder / element.get("file")).exists():
                    missing.append((folder / element.get("file")).resolve())
    return missing


def _compile(shape: str, assets: Path):
    """The shape's MjModel, compiled from the rewritten XML text (includes served from memory,
    meshdir and texturedir made absolute so that nothing is read relative to the cwd)."""
    import mujoco

    main = model_file(shape, assets)
    hand = main.parent
    text = _rewritten(main)
    for attribute in ("meshdir", "texturedir"):
        text = re.sub(
            rf'{attribute}="([^"]*)"', lambda m, a=attribute: f'{a}="{(hand / m.group(1)).resolve()}"', text, count=1
        )
    includes = {name: _rewritten(hand / name).encode() for name in _INCLUDES}
    return mujoco.MjModel.from_xml_string(text, includes)


def _joint_safe_utils():
    """gymnasium-robotics' `mujoco_utils` with the joint-qpos/qvel readers that compare joint
    types as integers (the originals assert `np.int32 in (enum, enum)`, False on MuJoCo 3.16).
    `set_joint_qpos/qvel` are kept: the envs call them on free joints only, which pass.
    Each env gets its own copy (`robot_get_obs` caches the robot's qpos/qvel indices)."""
    import mujoco
    from gymnasium_robotics.utils import mujoco_utils

    sizes = {int(mujoco.mjtJoint.mjJNT_FREE): (7, 6), int(mujoco.mjtJoint.mjJNT_BALL): (4, 3)}  # else 1, 1

    def entries(model, name: str, velocity: bool) -> tuple[int, int]:
        """(start, stop) of the joint's entries in qvel (`velocity`) or qpos."""
        joint = model.joint(name)
        start = int((joint.dofadr if velocity else joint.qposadr)[0])
        return start, start + sizes.get(int(joint.type[0]), (1, 1))[velocity]

    def joint_entries(model, data, name: str, velocity: bool) -> np.ndarray:
        return (data.qvel if velocity else data.qpos)[slice(*entries(model, name, velocity))].copy()

    rows = {}  # robot joint names -> their qpos and qvel indices, found once per env

    def robot_get_obs(model, data, joint_names):
        names = tuple(n for n in joint_names if n.startswith("robot"))
        if data.qpos is None or not names:
            return np.zeros(0), np.zeros(0)
        if names not in rows:
            rows[names] = [np.concatenate([np.arange(*entries(model, n, velocity)) for n in names])
                           for velocity in (False, True)]  # fmt: skip
        qpos_rows, qvel_rows = rows[names]
        return np.squeeze(data.qpos[qpos_rows]), np.squeeze(data.qvel[qvel_rows])

    utils = types.SimpleNamespace(**{k: v for k, v in vars(mujoco_utils).items() if not k.startswith("__")})
    utils.get_joint_qpos = lambda model, data, name: joint_entries(model, data, name, False)
    utils.get_joint_qvel = lambda model, data, name: joint_entries(model, data, name, True)
    utils.robot_get_obs = robot_get_obs
    return utils


def make(shape: str, assets: Path | None):
    """The v1 rotation env of `shape` (a gymnasium GoalEnv without a time limit: the caller
    truncates at SH_EPISODE_STEPS). `assets`: the authors' assets folder; unused for SH_BUNDLED,
    which come from gymnasium-robotics' own files."""
    with contextlib.redirect_stderr(io.StringIO()):  # gymnasium_robotics prints a notice on import
        from gymnasium_robotics.envs.shadow_dexterous_hand import MujocoManipulateEnv
    assets = bundled_assets() if shape in SH_BUNDLED else assets
    missing = missing_files(shape, assets)
    if missing:
        raise AssetsError(
            f"sh-{shape}: {', '.join(map(str, missing))} missing from the ShadowHand assets at {assets}; "
            f"restore it from {AUTHORS_REPOSITORY} (dex_envs/assets)"
        )

    class ShapeRotateEnv(MujocoManipulateEnv):
        def _initialize_simulation(self):
            # MujocoRobotEnv._initialize_simulation (gymnasium-robotics 1.4.2), with the model
            # compiled from text and the joint-safe accessors
            self._utils = _joint_safe_utils()
            self.model = _compile(shape, assets)
            self.data = self._mujoco.MjData(self.model)
            self._model_names = self._utils.MujocoModelNames(self.model)
            self.model.vis.global_.offwidth = self.width
            self.model.vis.global_.offheight = self.height
            self._env_setup(initial_qpos=self.initial_qpos)
            self.initial_time = self.data.time
            self.initial_qpos = np.copy(self.data.qpos)
            self.initial_qvel = np.copy(self.data.qvel)

    return ShapeRotateEnv(model_path=str(model_file(shape, assets)), **V1)
