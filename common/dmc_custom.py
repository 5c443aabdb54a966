"""The 11 DeepMind Control tasks of MT80 that stock dm_control lacks (paper Appendix E.1).

MT80 (MW+DMC) is the multi-embodiment benchmark of TD-MPC2 (Hansen et al., 2024; paper
ref. [38]), which defined these tasks. The rewards below follow TD-MPC2's definitions,
written here on top of dm_control's stock models and tasks; every reward is built from
`dm_control.utils.rewards.tolerance`, so it lies in [0, 1] and an episode returns at most
1000 (scores are return / 1000, as for every DMC task). One line per reward:

- cheetah-run-backwards: speed along -x, linear from 0 to full reward at 8 m/s.
- cheetah-run-front: back foot and torso lifted to 1.2 m (3:2 weights), times a forward
  speed term (full at 6 m/s, 1/6 of the reward at standstill): running on the front leg.
- cheetah-run-back: the same with the front foot lifted: running on the back leg.
- cheetah-jump: the midpoint of torso and each foot above 1.2 m (mean over both feet,
  weight 5) plus staying in place (|speed| <= 0.5, weight 1), over 6: jumping up.
- walker-walk-backwards / walker-run-backwards: stock walker stand reward times a move term
  for speed along -x (full at 1 / 8 m/s, 1/6 of the reward standing still).
- hopper-hop-backwards: torso height in [0.6, 2] m times speed along -x (full at 1 m/s).
- reacher-three-easy / -hard: stock reacher reward (finger inside the target, target
  radius 0.05 / 0.015) on a three-link planar arm (`REACHER_THREE_XML`): the geometry of the
  ref. code's (and TD-MPC2's) model, links 0.09 / 0.09 / 0.1 m with the finger 0.27 m out,
  the second and third joints limited to +-80 degrees.
- ball-in-cup-spin: ball out of the cup, 0.5 m or more from it (weight 1) and moving at
  6 m/s or more (weight 2); episodes start with the ball in the cup 90% of the time.
- pendulum-spin: angular speed of 9 rad/s or more.

Episodes are 1000 control steps with no action repeat (BRC paper Appendix E; TD-MPC2 used
action repeat 2). TD-MPC2 (and the ref. code, dmc_envs/tasks) ships its own copies of the
domain XMLs; they differ from dm_control's stock models only in the drawn size of the ground
plane (no physics effect), so we use the stock models for every domain but the three-link
reacher. Every reward here equals the ref. code's, step for step.
"""

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

_INF = float("inf")
# cheetah
_CHEETAH_BACKWARDS_SPEED = 0.8 * cheetah._RUN_SPEED  # 8 m/s
_CHEETAH_ONE_LEG_SPEED = 0.6 * cheetah._RUN_SPEED  # 6 m/s
_CHEETAH_UP_HEIGHT = 1.2
_CHEETAH_STILL_SPEED = 0.5
# hopper: half the stock hop speed
_HOPPER_BACKWARDS_SPEED = hopper._HOP_SPEED / 2
# ball-in-cup
_SPIN_DISTANCE = 0.5
_SPIN_SPEED = 6.0
_SPIN_START_OUT_OF_CUP = 0.1
# pendulum
_PENDULUM_SPIN_SPEED = 9.0

REACHER_THREE_XML = """
<mujoco model="three-link planar reacher">
  <include file="./common/skybox.xml"/>
  <include file="./common/visual.xml"/>
  <include file="./common/materials.xml"/>
  <option timestep="0.02">
    <flag contact="disable"/>
  </option>
  <default>
    <joint type="hinge" axis="0 0 1" damping="0.01"/>
    <motor gear=".05" ctrlrange="-1 1" ctrllimited="true"/>
  </default>
  <worldbody>
    <light name="light" pos="0 0 1"/>
    <camera name="fixed" pos="0 0 .75" quat="1 0 0 0"/>
    <geom name="ground" type="plane" pos="0 0 0" size=".3 .3 10" material="grid"/>
    <geom name="wall_x" type="plane" pos="-.3 0 .02" zaxis="1 0 0" size=".02 .3 .02" material="decoration"/>
    <geom name="wall_y" type="plane" pos="0 -.3 .02" zaxis="0 1 0" size=".3 .02 .02" material="decoration"/>
    <geom name="wall_neg_x" type="plane" pos=".3 0 .02" zaxis="-1 0 0" size=".02 .3 .02" material="decoration"/>
    <geom name="wall_neg_y" type="plane" pos="0 .3 .02" zaxis="0 -1 0" size=".3 .02 .02" material="decoration"/>
    <geom name="root" type="cylinder" fromto="0 0 0 0 0 0.02" size=".011" material="decoration"/>
    <body name="arm" pos="0 0 .01">
      <geom name="arm" type="capsule" fromto="0 0 0 0.09 0 0" size=".01" material="self"/>
      <joint name="shoulder"/>
      <body name="forearm" pos=".09 0 0">
        <geom name="forearm" type="capsule" fromto="0 0 0 0.09 0 0" size=".01" material="self"/>
        <joint name="elbow" limited="true" range="-80 80"/>
        <body name="hand" pos=".09 0 0">
          <geom name="hand" type="capsule" fromto="0 0 0 0.1 0 0" size=".01" material="self"/>
          <joint name="wrist" limited="true" range="-80 80"/>
          <body name="finger" pos=".09 0 0">
            <geom name="finger" type="sphere" size=".01" material="effector"/>
          </body>
        </body>
      </body>
    </body>
    <geom name="target" pos="0 0 .01" material="target" type="sphere" size=".05"/>
  </worldbody>
  <actuator>
    <motor name="shoulder" joint="shoulder"/>
    <motor name="elbow" joint="elbow"/>
    <motor name="wrist" joint="wrist"/>
  </actuator>
</mujoco>
"""


def _linear_at_least(x: float, bound: float, margin: float, value_at_margin: float = 0.0) -> float:
    """1 for x >= bound, falling linearly to `value_at_margin` at bound - margin."""
    return float(
        rewards.tolerance(
            x, bounds=(bound, _INF), margin=margin, value_at_margin=value_at_margin, sigmoid="linear"
        )
    )


def _cheetah_high(height: float) -> float:
    return float(rewards.tolerance(height, bounds=(_CHEETAH_UP_HEIGHT, _INF), margin=_CHEETAH_UP_HEIGHT / 2))


class CheetahRunBackwards(cheetah.Cheetah):
    def get_reward(self, physics):
        return _linear_at_least(-physics.speed(), _CHEETAH_BACKWARDS_SPEED, _CHEETAH_BACKWARDS_SPEED)


class CheetahRunOneLeg(cheetah.Cheetah):
    """Run forward with `raised_foot` ('bfoot' or 'ffoot') and the torso high."""

    def __init__(self, raised_foot: str, random=None):
        super().__init__(random)
        self._raised_foot = raised_foot

    def get_reward(self, physics):
        xpos = physics.named.data.xpos
        up = (3 * _cheetah_high(xpos[self._raised_foot, "z"]) + 2 * _cheetah_high(xpos["torso", "z"])) / 5
        run = _linear_at_least(physics.speed(), _CHEETAH_ONE_LEG_SPEED, _CHEETAH_ONE_LEG_SPEED)
        return up * (5 * run + 1) / 6


class CheetahJump(cheetah.Cheetah):
    def get_reward(self, physics):
        xpos = physics.named.data.xpos
        torso = xpos["torso", "z"]
        height = np.mean([_cheetah_high((torso + xpos[foot, "z"]) / 2) for foot in ("bfoot", "ffoot")])
        still = rewards.tolerance(
            physics.speed(), bounds=(-_CHEETAH_STILL_SPEED, _CHEETAH_STILL_SPEED),
            margin=_CHEETAH_STILL_SPEED, value_at_margin=0, sigmoid="linear",
        )  # fmt: skip
        return (5 * height + float(still)) / 6


class WalkerBackwards(walker.PlanarWalker):
    def get_reward(self, physics):
        standing = rewards.tolerance(
            physics.torso_height(), bounds=(walker._STAND_HEIGHT, _INF), margin=walker._STAND_HEIGHT / 2
        )
        upright = (1 + physics.torso_upright()) / 2
        stand_reward = (3 * standing + upright) / 4
        move = _linear_at_least(-physics.horizontal_velocity(), self._move_speed, self._move_speed / 2, 0.5)
        return stand_reward * (5 * move + 1) / 6


class HopperHopBackwards(hopper.Hopper):
    def __init__(self, random=None):
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics):
        standing = rewards.tolerance(physics.height(), (hopper._STAND_HEIGHT, 2))
        hopping = _linear_at_least(-physics.speed(), _HOPPER_BACKWARDS_SPEED, _HOPPER_BACKWARDS_SPEED / 2, 0.5)
        return standing * hopping


class BallInCupSpin(ball_in_cup.BallInCup):
    def initialize_episode(self, physics):
        # ref. TD-MPC2: the ball starts in the cup unless a 10% draw says otherwise
        start_out = self.random.uniform() < _SPIN_START_OUT_OF_CUP
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (start_out or physics.in_target()):
                break
        super(ball_in_cup.BallInCup, self).initialize_episode(physics)

    def get_reward(self, physics):
        distance = np.linalg.norm(physics.ball_to_target())
        speed = np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]])
        far = _linear_at_least(distance, _SPIN_DISTANCE, _SPIN_DISTANCE / 2, 0.5)
        fast = _linear_at_least(speed, _SPIN_SPEED, _SPIN_SPEED / 2, 0.5)
        return (1 - physics.in_target()) * (far + 2 * fast) / 3


class PendulumSpin(pendulum.SwingUp):
    def get_reward(self, physics):
        speed = np.linalg.norm(physics.angular_velocity())
        return _linear_at_least(speed, _PENDULUM_SPIN_SPEED, _PENDULUM_SPIN_SPEED / 2, 0.5)


def make(name: str, seed: int) -> control.Environment:
    """A dm_control environment for custom task `name`; `seed` seeds its initial states."""
    random = np.random.RandomState(seed)
    env_kwargs = {}
    if name.startswith("cheetah-"):
        physics = cheetah.Physics.from_xml_string(*cheetah.get_model_and_assets())
        task = {
            "cheetah-run-backwards": lambda: CheetahRunBackwards(random),
            "cheetah-run-front": lambda: CheetahRunOneLeg("bfoot", random),
            "cheetah-run-back": lambda: CheetahRunOneLeg("ffoot", random),
            "cheetah-jump": lambda: CheetahJump(random),
        }[name]()
        time_limit = cheetah._DEFAULT_TIME_LIMIT
    elif name.startswith("walker-"):
        physics = walker.Physics.from_xml_string(*walker.get_model_and_assets())
        speed = float(walker._WALK_SPEED if name == "walker-walk-backwards" else walker._RUN_SPEED)
        task = WalkerBackwards(move_speed=speed, random=random)
        time_limit, env_kwargs = walker._DEFAULT_TIME_LIMIT, {"control_timestep": walker._CONTROL_TIMESTEP}
    elif name == "hopper-hop-backwards":
        physics = hopper.Physics.from_xml_string(*hopper.get_model_and_assets())
        task = HopperHopBackwards(random)
        time_limit, env_kwargs = hopper._DEFAULT_TIME_LIMIT, {"control_timestep": hopper._CONTROL_TIMESTEP}
    elif name.startswith("reacher-three-"):
        physics = reacher.Physics.from_xml_string(REACHER_THREE_XML, common.ASSETS)
        size = reacher._BIG_TARGET if name == "reacher-three-easy" else reacher._SMALL_TARGET
        task = reacher.Reacher(target_size=size, random=random)
        time_limit = reacher._DEFAULT_TIME_LIMIT
    elif name == "ball-in-cup-spin":
        physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
        task = BallInCupSpin(random)
        time_limit = ball_in_cup._DEFAULT_TIME_LIMIT
        env_kwargs = {"control_timestep": ball_in_cup._CONTROL_TIMESTEP}
    elif name == "pendulum-spin":
        physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
        task = PendulumSpin(random)
        time_limit = pendulum._DEFAULT_TIME_LIMIT
    else:
        raise ValueError(f"unknown custom DMC task '{name}'")
    return control.Environment(physics, task, time_limit=time_limit, **env_kwargs)
