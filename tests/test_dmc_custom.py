"""The custom DMC tasks of MT80 (common/dmc_custom.py) and the MW+DMC suite.

Each task's reward is checked on physics states set by hand: high where the state meets
the task's goal, low where it does not, and exact where the reward is piecewise linear
(the expected numbers are worked out by hand from the one-line definitions).
"""

import dataclasses

import numpy as np
import pytest

from common import dmc_custom
from common.envs import MultiTaskEnv
from common.suites import MT50, MT80_DMC, SUITES, TASKS, _DMC_CUSTOM, normalized_score


def reward_at(name: str, qpos: dict | None = None, qvel: dict | None = None, model: dict | None = None) -> float:
    """Task reward after setting the named joints (all others 0) and model fields."""
    env = dmc_custom.make(name, seed=0)
    env.reset()
    physics = env.physics
    for (field, key), value in (model or {}).items():
        getattr(physics.named.model, field)[key] = value
    with physics.reset_context():
        physics.data.qpos[:] = 0.0
        physics.data.qvel[:] = 0.0
        for joint, value in (qpos or {}).items():
            physics.named.data.qpos[joint] = value
        for joint, value in (qvel or {}).items():
            physics.named.data.qvel[joint] = value
    return float(env.task.get_reward(physics))


def test_cheetah_run_backwards():
    assert reward_at("cheetah-run-backwards", qvel={"rootx": -8.0}) == pytest.approx(1.0)
    assert reward_at("cheetah-run-backwards", qvel={"rootx": -12.0}) == pytest.approx(1.0)
    assert reward_at("cheetah-run-backwards", qvel={"rootx": -4.0}) == pytest.approx(0.5)  # linear, 0 at 0 m/s
    assert reward_at("cheetah-run-backwards", qvel={"rootx": 8.0}) == 0.0


# rooty +0.8 rears the cheetah onto its front leg (back foot 1.47 m, torso 1.3 m, front foot
# 0.66 m); -0.8 onto its back leg (front foot 1.36 m, back foot 0.58 m).
FRONT_LEG = {"rootz": 0.6, "rooty": 0.8}
BACK_LEG = {"rootz": 0.6, "rooty": -0.8}


@pytest.mark.parametrize(("name", "leg", "other_leg"), [
    ("cheetah-run-front", FRONT_LEG, BACK_LEG), ("cheetah-run-back", BACK_LEG, FRONT_LEG),
])  # fmt: skip
def test_cheetah_run_on_one_leg(name, leg, other_leg):
    assert reward_at(name, qpos=leg, qvel={"rootx": 6.0}) == pytest.approx(1.0)
    # on its leg but standing still: the speed term keeps 1/6
    assert reward_at(name, qpos=leg) == pytest.approx(1 / 6)
    # running as fast on the other leg: the raised foot is low
    assert reward_at(name, qpos=other_leg, qvel={"rootx": 6.0}) < 0.5
    # running flat on the ground: torso 0.7 m, feet near the ground
    assert reward_at(name, qvel={"rootx": 6.0}) < 0.1


def test_cheetah_jump():
    assert reward_at("cheetah-jump", qpos={"rootz": 1.0}) == pytest.approx(1.0)  # all of it >= 1.2 m, still
    assert reward_at("cheetah-jump", qpos={"rootz": 1.0}, qvel={"rootx": 3.0}) == pytest.approx(5 / 6)
    assert reward_at("cheetah-jump") < 0.25  # at rest on the ground: mostly the 1/6 of staying still
    assert reward_at("cheetah-jump", qvel={"rootx": 3.0}) < 0.1  # running along the ground


@pytest.mark.parametrize(("name", "speed"), [("walker-walk-backwards", 1.0), ("walker-run-backwards", 8.0)])
def test_walker_backwards(name, speed):
    # all joints 0: upright, torso 1.3 m (>= the 1.2 m stand height)
    assert reward_at(name, qvel={"rootx": -speed}) == pytest.approx(1.0)
    # half a margin short of the speed: move = 0.75, reward = (5 * 0.75 + 1) / 6
    assert reward_at(name, qvel={"rootx": -0.75 * speed}) == pytest.approx((5 * 0.75 + 1) / 6)
    assert reward_at(name, qvel={"rootx": speed}) == pytest.approx(1 / 6)  # forwards: stand term only
    lying = {"rootz": -1.2, "rooty": np.pi / 2}  # torso horizontal, near the ground
    assert reward_at(name, qpos=lying, qvel={"rootx": -speed}) < 0.2


def test_hopper_hop_backwards():
    # all joints 0: torso 0.98 m above the foot, inside [0.6, 2]
    assert reward_at("hopper-hop-backwards", qvel={"rootx": -1.0}) == pytest.approx(1.0)
    assert reward_at("hopper-hop-backwards", qvel={"rootx": -0.75}) == pytest.approx(0.75)
    assert reward_at("hopper-hop-backwards", qvel={"rootx": 1.0}) == 0.0
    assert reward_at("hopper-hop-backwards", qpos={"knee": -2.5}, qvel={"rootx": -1.0}) < 0.2  # crouched


@pytest.mark.parametrize(("name", "target_size"), [("reacher-three-easy", 0.05), ("reacher-three-hard", 0.015)])
def test_reacher_three(name, target_size):
    env = dmc_custom.make(name, seed=0)
    env.reset()
    physics = env.physics
    assert physics.model.nu == 3 and physics.model.nq == 3
    assert physics.named.model.geom_size["target", 0] == target_size
    with physics.reset_context():
        physics.data.qpos[:] = 0.0
    # the ref. code's arm: the finger 3 x 0.09 m out, elbow and wrist limited to +-80 degrees
    np.testing.assert_allclose(physics.named.data.geom_xpos["finger", :2], [0.27, 0.0], atol=1e-9)
    np.testing.assert_allclose(np.rad2deg(physics.model.jnt_range[1:]), [[-80, 80], [-80, 80]], atol=1e-9)
    # target on the outstretched finger / 0.1 m away from it
    on = {("geom_pos", ("target", "x")): 0.27, ("geom_pos", ("target", "y")): 0.0}
    off = {("geom_pos", ("target", "x")): 0.17, ("geom_pos", ("target", "y")): 0.0}
    assert reward_at(name, model=on) == 1.0
    assert reward_at(name, model=off) < 0.05
    # a bent arm reaches a target inside the workspace: shoulder +90 deg (link 1 along +y), elbow
    # -80 deg (links 2 and 3 at +10 deg) puts the finger at (0.18 cos 10, 0.09 + 0.18 sin 10)
    x, y = 0.18 * np.cos(np.deg2rad(10)), 0.09 + 0.18 * np.sin(np.deg2rad(10))
    bent = {("geom_pos", ("target", "x")): x, ("geom_pos", ("target", "y")): y}
    assert reward_at(name, qpos={"shoulder": np.pi / 2, "elbow": -np.deg2rad(80)}, model=bent) == 1.0
    assert reward_at(name, qpos={"shoulder": np.pi / 2}, model=bent) < 0.05


def test_ball_in_cup_spin():
    # qpos 0: the ball hangs 0.35 m below the cup's target site
    assert reward_at("ball-in-cup-spin", qpos={"ball_x": 0.5}, qvel={"ball_x": 6.0}) == pytest.approx(1.0)
    assert reward_at("ball-in-cup-spin", qpos={"ball_x": 0.5}) == pytest.approx(1 / 3)  # far, at rest
    assert reward_at("ball-in-cup-spin", qpos={"ball_z": 0.35}, qvel={"ball_x": 6.0}) == 0.0  # in the cup
    assert reward_at("ball-in-cup-spin") < 0.3  # hanging still


def test_ball_in_cup_spin_starts_in_the_cup_90_percent():
    env = dmc_custom.make("ball-in-cup-spin", seed=0)
    in_cup = []
    for _ in range(60):
        env.reset()
        in_cup.append(env.physics.in_target())
    assert 0.75 <= np.mean(in_cup) < 1.0


def test_pendulum_spin():
    assert reward_at("pendulum-spin", qvel={"hinge": 9.0}) == 1.0
    assert reward_at("pendulum-spin", qvel={"hinge": -12.0}) == 1.0  # either direction
    assert reward_at("pendulum-spin", qvel={"hinge": 6.75}) == pytest.approx(0.75)
    assert reward_at("pendulum-spin") == 0.0


def test_custom_task_registry_and_mw_dmc_suite():
    assert set(_DMC_CUSTOM) == {
        "cheetah-run-backwards", "cheetah-run-front", "cheetah-run-back", "cheetah-jump",
        "walker-walk-backwards", "walker-run-backwards", "hopper-hop-backwards",
        "reacher-three-easy", "reacher-three-hard", "ball-in-cup-spin", "pendulum-spin",
    }  # fmt: skip
    suite = SUITES["mw-dmc"]
    assert len(suite) == len(set(suite)) == 80 and suite[:50] == MT50 and suite[50:] == MT80_DMC
    tasks = [TASKS[n] for n in suite]
    assert (max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)) == (39, 6)  # paper App. E.1
    # 12 embodiments: the Sawyer arm and 11 DMC bodies (the 3-link reacher is its own)
    bodies = {"sawyer" if t.domain == "metaworld" else t.name.rsplit("-", 1)[0] for t in tasks}
    bodies = {b.replace("-run", "").replace("-walk", "").replace("-hop", "") for b in bodies}
    bodies = {b.split("-")[0] if not b.startswith(("ball-in-cup", "reacher-three")) else b for b in bodies}
    assert len(bodies) == 12, sorted(bodies)
    for name in _DMC_CUSTOM:
        task = TASKS[name]
        assert (task.domain, task.max_episode_steps, task.has_success) == ("dmc-custom", 1000, False)
        assert normalized_score(task, 640.0, 0.0) == 0.64
        env = dmc_custom.make(name, seed=0)
        time_step = env.reset()
        assert tuple(time_step.observation) == task.dmc_obs_keys, name
        assert sum(v.size for v in time_step.observation.values()) == task.obs_dim, name
        assert env.action_spec().shape == (task.act_dim,), name


def test_worker_matches_direct_dm_control_and_truncates():
    """In MultiTaskEnv (worker processes) a custom task returns what stepping dm_control
    directly returns, padded to the suite's obs size; episodes end at the time limit."""
    names = ["pendulum-spin", "reacher-three-easy"]
    tasks = [dataclasses.replace(TASKS[n], max_episode_steps=5) for n in names]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (7, 2, 3)).astype(np.float32)
    env = MultiTaskEnv(tasks, seed=10)
    try:
        outs = [env.reset()] + [env.step(a) for a in actions]
    finally:
        env.close()
    assert outs[0].shape == (2, 8) and outs[0].dtype == np.float32
    for k, task in enumerate(tasks):
        ref = dmc_custom.make(task.name, seed=int(env.seeds[k, 0]))  # task k's env seed

        def flat(time_step, keys=task.dmc_obs_keys):
            return np.concatenate([np.asarray(time_step.observation[key]).ravel() for key in keys])

        expected_obs = flat(ref.reset())
        np.testing.assert_allclose(outs[0][k, : task.obs_dim], expected_obs, rtol=1e-6)
        assert not outs[0][k, task.obs_dim :].any()
        for step in range(5):
            ts = ref.step(actions[step, k, : task.act_dim])
            out = outs[step + 1]
            np.testing.assert_allclose(out.next_obs[k, : task.obs_dim], flat(ts), rtol=1e-5, atol=1e-6)
            assert out.reward[k] == pytest.approx(ts.reward, abs=1e-6)
            assert out.truncated[k] == (step == 4) and not out.terminated[k]
        # the episode ended at step 5 and was reset within it: step 6 is the next episode's first
        np.testing.assert_allclose(outs[5].obs[k, : task.obs_dim], flat(ref.reset()), rtol=1e-6)
        ts = ref.step(actions[5, k, : task.act_dim])
        np.testing.assert_allclose(outs[6].next_obs[k, : task.obs_dim], flat(ts), rtol=1e-5, atol=1e-6)
        assert not outs[6].truncated[k] and not outs[7].truncated[k]
