"""Suite and task metadata: task lists (paper Appendix E), sizes and score normalisation.

A task is named as in the paper: MetaWorld tasks by their MT50 name (`reach`,
`door-open`), DeepMind Control tasks as `domain-task` (`cheetah-run`, `dog-trot`),
HumanoidBench tasks by their gymnasium id without `-v0` (`h1-walk`, `h1hand-sit_simple`),
ShadowHand shapes as `sh-<shape>` (`sh-cube`, `sh-e_toy_airplane`).
docs/suites.md lists every suite and where each task comes from.
"""

import difflib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # metaworld and dmc run on envpool; dmc-custom (common/dmc_custom.py), humanoidbench
    # (gymnasium envs of the humanoid_bench package) and shadowhand (common/shadowhand.py) run in
    # worker processes (common/envs.py); atari runs in drq_brc.py only.
    domain: Literal["metaworld", "dmc", "dmc-custom", "humanoidbench", "shadowhand", "atari"]
    envpool_id: str  # the backend's id: envpool task id, HumanoidBench's gymnasium id, or the ShadowHand shape
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


# TD-MPC2's custom DMC tasks of MT80 (Hansen et al. 2024, paper ref. [38]), defined in
# common/dmc_custom.py: (obs size, action size, dm_control observation keys in order).
_DMC_CUSTOM = {
    "cheetah-run-backwards": (17, 6, ("position", "velocity")),
    "cheetah-run-front": (17, 6, ("position", "velocity")),
    "cheetah-run-back": (17, 6, ("position", "velocity")),
    "cheetah-jump": (17, 6, ("position", "velocity")),
    "walker-walk-backwards": (24, 6, ("orientations", "height", "velocity")),
    "walker-run-backwards": (24, 6, ("orientations", "height", "velocity")),
    "hopper-hop-backwards": (15, 4, ("position", "velocity", "touch")),
    "reacher-three-easy": (8, 3, ("position", "to_target", "velocity")),
    "reacher-three-hard": (8, 3, ("position", "to_target", "velocity")),
    "ball-in-cup-spin": (8, 2, ("position", "velocity")),
    "pendulum-spin": (3, 1, ("orientation", "velocity")),
}  # fmt: skip

# HumanoidBench (Sferrazza et al. 2024, paper ref. [89]). The networks and the padding need
# the sizes before any env exists, so they are tabulated here (read from HB's task classes,
# HEAD 791405f: qpos + qvel of robot and objects, plus task extras); every worker checks them
# against the env's spaces at start-up and stops with a clear message on a mismatch.
# h1: 51 obs / 19 actions for every task; h1hand: 61 actions, obs by task.
HB_H1_TASKS = ("walk", "stand", "run", "stair", "crawl", "pole", "slide", "hurdle", "maze")
_HB_H1HAND_OBS = {
    **{task: 151 for task in HB_H1_TASKS}, "sit_simple": 151, "sit_hard": 164,
    "balance_simple": 164, "balance_hard": 177, "reach": 157, "spoon": 167, "window": 171,
    "insert_small": 190, "insert_normal": 190, "bookshelf_simple": 308, "bookshelf_hard": 308,
    "truck": 216, "powerlift": 164, "room": 229, "door": 155, "basketball": 164, "push": 163,
    "cabinet": 213,
}  # fmt: skip
# HB's episode limit is its task's `max_episode_steps` (1000 unless the task sets it).
_HB_EPISODE_STEPS = {"insert_small": 500, "insert_normal": 500, "basketball": 500, "push": 500}

# Paper Table 2 (from HumanoidBench): (random, success) return per task, for
# score = (return - random) / (success - random). `success` is HB's `success_bar`, except for
# h1hand-crawl: Table 2 (and the ref. code) say 800, HB's bar is 700, which its success flag uses.
HB_SCORES = {
    "h1-crawl": (272.658, 700.0), "h1-hurdle": (2.214, 700.0), "h1-maze": (106.441, 1200.0),
    "h1-pole": (20.090, 700.0), "h1-run": (2.020, 700.0), "h1-slide": (3.191, 700.0),
    "h1-stair": (3.112, 700.0), "h1-stand": (10.545, 800.0), "h1-walk": (2.377, 700.0),
    "h1hand-balance_hard": (10.032, 800.0), "h1hand-balance_simple": (10.170, 800.0),
    "h1hand-basketball": (8.979, 1200.0), "h1hand-bookshelf_hard": (14.848, 2000.0),
    "h1hand-bookshelf_simple": (16.777, 2000.0), "h1hand-crawl": (278.868, 800.0),
    "h1hand-door": (2.771, 600.0), "h1hand-hurdle": (2.371, 700.0),
    "h1hand-insert_normal": (1.673, 350.0), "h1hand-insert_small": (1.653, 350.0),
    "h1hand-maze": (106.233, 1200.0), "h1hand-package": (-10040.932, 1500.0),
    "h1hand-pole": (19.721, 700.0), "h1hand-powerlift": (17.638, 800.0),
    "h1hand-push": (-526.800, 700.0), "h1hand-reach": (-50.024, 12000.0),
    "h1hand-room": (3.018, 400.0), "h1hand-run": (1.927, 700.0), "h1hand-sit_hard": (2.477, 750.0),
    "h1hand-sit_simple": (10.768, 750.0), "h1hand-slide": (3.142, 700.0),
    "h1hand-spoon": (4.661, 650.0), "h1hand-stair": (3.161, 700.0), "h1hand-stand": (11.973, 800.0),
    "h1hand-truck": (562.419, 3000.0), "h1hand-walk": (2.505, 700.0), "h1hand-window": (2.713, 650.0),
    # Not in Table 2 (a transfer task only): the ref. code's score table (results/
    # score_normalization.py) gives random 37.733 and HB's success_bar 2500. docs/suites.md item 3.
    "h1hand-cabinet": (37.733, 2500.0),
}  # fmt: skip


# ShadowHand (paper Appendix E, after Huang et al. 2021): the 85 training shapes and the 29
# held-out transfer shapes, in the authors' order (their jaxrl/env_names.py; the columns of the
# published aggregate curve follow SH_TRAIN). obs 61 + goal 7, 20 actions, 100-step episodes.
SH_TRAIN = (
    "e_toy_airplane", "knife", "flat_screwdriver", "elephant", "apple", "scissors", "i_cups", "cup",
    "foam_brick", "pudding_box", "wristwatch", "padlock", "power_drill", "binoculars", "b_lego_duplo",
    "ps_controller", "mouse", "hammer", "f_lego_duplo", "piggy_bank", "can", "extra_large_clamp",
    "peach", "a_lego_duplo", "racquetball", "tuna_fish_can", "a_cups", "pan", "strawberry",
    "d_toy_airplane", "wood_block", "small_marker", "sugar_box", "ball", "torus", "i_toy_airplane",
    "chain", "j_cups", "c_toy_airplane", "airplane", "nine_hole_peg_test", "water_bottle", "c_cups",
    "medium_clamp", "large_marker", "h_cups", "b_colored_wood_blocks", "j_lego_duplo",
    "f_toy_airplane", "toothbrush", "tennis_ball", "mug", "sponge", "k_lego_duplo",
    "phillips_screwdriver", "f_cups", "c_lego_duplo", "d_marbles", "d_cups", "camera",
    "d_lego_duplo", "golf_ball", "k_toy_airplane", "b_cups", "softball", "wine_glass", "chips_can",
    "cube", "master_chef_can", "alarm_clock", "gelatin_box", "h_lego_duplo", "baseball",
    "light_bulb", "banana", "rubber_duck", "headphones", "i_lego_duplo", "b_toy_airplane",
    "pitcher_base", "j_toy_airplane", "g_lego_duplo", "cracker_box", "orange", "e_cups",
)  # fmt: skip
SH_TRANSFER_TEST = (
    "rubiks_cube", "dice", "bleach_cleanser", "pear", "e_lego_duplo", "pyramid", "stapler",
    "flashlight", "large_clamp", "a_toy_airplane", "tomato_soup_can", "fork", "cell_phone",
    "m_lego_duplo", "toothpaste", "flute", "stanford_bunny", "a_marbles", "potted_meat_can", "timer",
    "lemon", "utah_teapot", "train", "g_cups", "l_lego_duplo", "bowl", "door_knob", "mustard_bottle",
    "plum",
)  # fmt: skip
# gymnasium-robotics' own objects on the same task: not in the paper; they run without the
# authors' assets (tests, trying the pipeline)
SH_BUNDLED = ("block", "egg", "pen")
SH_EPISODE_STEPS = 100  # the authors' registration (dex_envs): max_episode_steps=100


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
    for name, (obs_dim, act_dim, keys) in _DMC_CUSTOM.items():
        # every DMC task: 1000 control steps per episode, no action repeat (paper Appendix E)
        registry[name] = TaskSpec(
            name, "dmc-custom", name, obs_dim, act_dim, 1000, has_success=False, dmc_obs_keys=keys
        )
    for robot, obs_dims, act_dim in (("h1", {t: 51 for t in HB_H1_TASKS}, 19), ("h1hand", _HB_H1HAND_OBS, 61)):
        for task, obs_dim in obs_dims.items():
            name = f"{robot}-{task}"
            steps = _HB_EPISODE_STEPS.get(task, 1000)
            # success: episode return >= the task's success_bar (HB reports no success)
            registry[name] = TaskSpec(
                name, "humanoidbench", f"{name}-v0", obs_dim, act_dim, steps, has_success=True
            )
    for shape in SH_TRAIN + SH_TRANSFER_TEST + SH_BUNDLED:
        registry[f"sh-{shape}"] = TaskSpec(f"sh-{shape}", "shadowhand", shape, 68, 20, SH_EPISODE_STEPS, True)
    return registry


TASKS: dict[str, TaskSpec] = _build_registry()


# ---------------------------------------------------------------- Atari (drq_brc.py)
# Games are named by their lowercased envpool/ALE name (`pong`, `bankheist`, `upndown`); the
# paper's Appendix E.1 lists the same games (its "sequest" is seaquest, "updown" UpNDown).

# (ALE name, random score, human score): paper Appendix E.3 normalises by Agarwal et al.
# (2021)'s values, the table of rliable and Dopamine's Atari-100k code.
_ATARI_100K = (
    ("Alien", 227.8, 7127.7), ("Amidar", 5.8, 1719.5), ("Assault", 222.4, 742.0),
    ("Asterix", 210.0, 8503.3), ("BankHeist", 14.2, 753.1), ("BattleZone", 2360.0, 37187.5),
    ("Boxing", 0.1, 12.1), ("Breakout", 1.7, 30.5), ("ChopperCommand", 811.0, 7387.8),
    ("CrazyClimber", 10780.5, 35829.4), ("DemonAttack", 152.1, 1971.0), ("Freeway", 0.0, 29.6),
    ("Frostbite", 65.2, 4334.7), ("Gopher", 257.6, 2412.5), ("Hero", 1027.0, 30826.4),
    ("Jamesbond", 29.0, 302.8), ("Kangaroo", 52.0, 3035.0), ("Krull", 1598.0, 2665.5),
    ("KungFuMaster", 258.5, 22736.3), ("MsPacman", 307.3, 6951.6), ("Pong", -20.7, 14.6),
    ("PrivateEye", 24.9, 69571.3), ("Qbert", 163.9, 13455.0), ("RoadRunner", 11.5, 7845.0),
    ("Seaquest", 68.4, 42054.7), ("UpNDown", 533.4, 11693.2),
)  # fmt: skip
# Paper Appendix E.2: the 20 Atari games held out for transfer.
_ATARI_TRANSFER = (
    ("Asteroids", 719.1, 47388.7), ("Atlantis", 12850.0, 29028.1), ("BeamRider", 363.9, 16926.5),
    ("Berzerk", 123.7, 2630.4), ("Bowling", 23.1, 160.7), ("Centipede", 2090.9, 12017.0),
    ("DoubleDunk", -18.6, -16.4), ("FishingDerby", -91.7, -38.7), ("Gravitar", 173.0, 3351.4),
    ("IceHockey", -11.2, 0.9), ("NameThisGame", 2292.3, 8049.0), ("Pitfall", -229.4, 6463.7),
    ("Riverraid", 1338.5, 17118.0), ("StarGunner", 664.0, 10250.0), ("TimePilot", 3568.0, 5229.2),
    ("Tutankham", 11.4, 167.6), ("Venture", 0.0, 1187.5), ("VideoPinball", 0.0, 17667.9),
    ("WizardOfWor", 563.5, 4756.5), ("YarsRevenge", 3092.9, 54576.9),
)  # fmt: skip
ATARI_100K = tuple(game.lower() for game, _, _ in _ATARI_100K)
ATARI_TRANSFER = tuple(game.lower() for game, _, _ in _ATARI_TRANSFER)
# (random, human) episode returns per game, for the human-normalised score (paper eq. 5)
ATARI_RANDOM_HUMAN = {game.lower(): (random, human) for game, random, human in _ATARI_100K + _ATARI_TRANSFER}
for _game, _, _ in _ATARI_100K + _ATARI_TRANSFER:
    # observation 4 x 84 x 84 uint8, full action space, 27k agent steps = 108k frames
    TASKS[_game.lower()] = TaskSpec(_game.lower(), "atari", f"{_game}-v5", 4 * 84 * 84, 18, 27_000, False)

DMC_DOGS = ("dog-stand", "dog-walk", "dog-trot", "dog-run")
DMC_HUMANOIDS = ("humanoid-stand", "humanoid-walk", "humanoid-run")
HB_MEDIUM = tuple(f"h1-{t}" for t in HB_H1_TASKS)
HB_HARD = tuple(
    f"h1hand-{t}" for t in (*HB_H1_TASKS, "sit_simple", "sit_hard", "balance_simple", "balance_hard",
                            "reach", "spoon", "window", "insert_small", "insert_normal",
                            "bookshelf_simple", "bookshelf_hard")
)  # fmt: skip
HB_MEDIUM_SUBSET6 = tuple(f"h1-{t}" for t in ("walk", "stand", "stair", "crawl", "pole", "slide"))
# The 30 DMC tasks of MT80 (TD-MPC2), in the order of paper Appendix E.1.
MT80_DMC = (
    "walker-stand", "walker-walk", "walker-run", "cheetah-run", "reacher-easy", "reacher-hard",
    "acrobot-swingup", "pendulum-swingup", "cartpole-balance", "cartpole-balance-sparse",
    "cartpole-swingup", "cartpole-swingup-sparse", "ball-in-cup-catch", "finger-spin",
    "finger-turn-easy", "finger-turn-hard", "fish-swim", "hopper-stand", "hopper-hop",
    *_DMC_CUSTOM,
)  # fmt: skip
# Paper Appendix E.2: the 5 hardest MT50 tasks (after TD-MPC2) are held out for transfer.
MW_TRANSFER_TEST = ("assembly", "disassemble", "dial-turn", "lever-pull", "push-back")

SUITES: dict[str, tuple[str, ...]] = {
    "mw": MT50,
    "dmc-dogs": DMC_DOGS,
    "dmc-humanoids": DMC_HUMANOIDS,
    "dmc-hard": DMC_DOGS + DMC_HUMANOIDS,
    # Paper Appendix E.1
    "hb-medium": HB_MEDIUM,
    "hb-hard": HB_HARD,
    "mw-dmc": MT50 + MT80_DMC,  # paper E.1's order; the ref. code puts DMC first (docs/suites.md item 10)
    # Paper Appendix E.2 transfer splits (HB-HARD's training split is `hb-hard` itself)
    "mw-transfer-train": tuple(t for t in MT50 if t not in MW_TRANSFER_TEST),
    "mw-transfer-test": MW_TRANSFER_TEST,
    "hb-medium-transfer-train": HB_MEDIUM_SUBSET6,
    "hb-medium-transfer-test": tuple(f"h1-{t}" for t in ("run", "hurdle", "maze")),
    "hb-hard-transfer-test": tuple(
        f"h1hand-{t}" for t in ("truck", "powerlift", "room", "door", "basketball", "push", "cabinet")
    ),
    # Paper Figure 10 / Appendix D: HB-MEDIUM pretrained on 3 or 6 of its 9 tasks
    "hb-medium-subset3": tuple(f"h1-{t}" for t in ("walk", "stair", "slide")),
    "hb-medium-subset6": HB_MEDIUM_SUBSET6,
    # Paper Appendix E: ShadowHand's 85 training shapes and its 29 transfer shapes (E.2)
    "sh": tuple(f"sh-{shape}" for shape in SH_TRAIN),
    "sh-transfer-test": tuple(f"sh-{shape}" for shape in SH_TRANSFER_TEST),
    # Small suites for quick runs on a laptop and for tests.
    "mw-easy": ("reach", "drawer-close", "button-press-topdown", "window-open"),
    "dmc-easy": ("cartpole-swingup", "cheetah-run"),
    # Single tasks under their own name, e.g. `--suite cheetah-run`.
    **{name: (name,) for name in TASKS},
}
SUITES.update({"atari": ATARI_100K, "atari-transfer": ATARI_TRANSFER})  # paper Appendix E.1, E.2


# The paper's other names for its suites: --suite MT50 is --suite mw (any capitalisation).
SUITE_ALIASES = {"mt50": "mw", "mt80": "mw-dmc"}

CONTINUOUS = frozenset({"metaworld", "dmc", "dmc-custom", "humanoidbench", "shadowhand"})  # sac_brc.py's domains


def resolve_tasks(suite: str, tasks: tuple[str, ...] = (), domains: frozenset[str] | None = None) -> list[TaskSpec]:
    """Task specs for `--tasks` if given, else for `--suite` (in any capitalisation, as the paper
    writes them, or one of SUITE_ALIASES). Raises ValueError with the valid names: the suites whose tasks
    are all in `domains` (the ones the calling script runs; default all)."""
    suite = SUITE_ALIASES.get(suite.lower(), suite.lower())
    runnable_tasks = sorted(t for t in TASKS if domains is None or TASKS[t].domain in domains)
    if tasks:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            named = ", ".join(t + _did_you_mean(t, runnable_tasks) for t in unknown)
            raise ValueError(f"unknown task(s) {named}. Valid tasks: {', '.join(runnable_tasks)}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"--tasks lists a task twice: {','.join(tasks)}")
        return [TASKS[t] for t in tasks]
    if suite not in SUITES:
        runnable = lambda s: domains is None or {TASKS[t].domain for t in SUITES[s]} <= domains
        multi = [s for s in SUITES if s not in TASKS and runnable(s)]
        aliases = ", ".join(f"{a} = {s}" for a, s in SUITE_ALIASES.items() if s in multi)
        raise ValueError(
            f"unknown suite '{suite}'{_did_you_mean(suite, multi + runnable_tasks)}. Valid suites: {', '.join(multi)}"
            + (f" (the paper's names: {aliases})" if aliases else "")
            + ", or any single task name (see --tasks)."
        )
    return [TASKS[t] for t in SUITES[suite]]


def _did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean x or y?)' for the valid names closest to a typo, '' when none is close."""
    close = difflib.get_close_matches(name.lower(), valid, n=3)
    return f" (did you mean {' or '.join([', '.join(close[:-1]), close[-1]] if close[:-1] else close)}?)" if close else ""


def score_meaning(tasks: list[TaskSpec]) -> str:
    """What `normalized_score` is for these tasks, in words (console lines and plot axes)."""
    domains = {t.domain for t in tasks}
    if domains <= {"metaworld", "shadowhand"}:
        return "success rate"
    if domains <= {"dmc", "dmc-custom"}:
        return "return / 1000"
    if domains == {"atari"}:
        return "human-normalised"
    return "paper App. E.3"


def normalized_score(task: TaskSpec, episode_return: float, success: float) -> float:
    """Paper Appendix E.3: MetaWorld and ShadowHand report success rate, DMC return / 1000, HumanoidBench
    (return - random) / (success - random) with the scores of paper Table 2 (`HB_SCORES`),
    Atari (return - random) / (human - random) (`ATARI_RANDOM_HUMAN`)."""
    if task.domain == "atari":  # human-normalised: (return - random) / (human - random), eq. 5
        random, human = ATARI_RANDOM_HUMAN[task.name]
        return (float(episode_return) - random) / (human - random)
    if task.domain in ("metaworld", "shadowhand"):
        return float(success)
    if task.domain == "humanoidbench":
        random_return, success_return = HB_SCORES[task.name]
        return (float(episode_return) - random_return) / (success_return - random_return)
    return float(episode_return) / 1000.0
