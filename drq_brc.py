"""DrQ-epsilon + BRC: multi-task Atari from pixels with a categorical Q-network.

Implements the discrete-action variant of "Bigger, Regularized, Categorical:
High-Capacity Value Functions are Efficient Multi-Task Learners" (Nauman et al., 2025),
Section 3, Appendix C.1, C.3 (Figure 14), C.4 (Figure 15 right) and Table 4: DrQ-epsilon
(Yarats et al., 2021; Agarwal et al., 2021) with a scaled Impala encoder, a LayerNorm
before the Q-network, a learned task embedding concatenated to the (task-agnostic)
encoder output, a categorical Q-network trained by cross-entropy on n-step targets,
per-task return normalisation, Polyak target updates and random-shift augmentation.
Defaults are paper Table 4 and the Atari-100k protocol (100k agent steps per game).

    python drq_brc.py --suite atari                    # 26 games, the paper's setting (GPU)
    python drq_brc.py --tasks pong,breakout --channels 16 32 32 --total-steps 20000   # CPU

Choices the paper leaves open follow DrQ-epsilon's Atari-100k setup (Dopamine) and are
marked "DrQ-eps" next to the line; see docs/drq_brc.md for the full list.

The file, in reading order (section headers `# ---- name`); the method is the first six:
    Args                   the flags: method (Table 4) first, then environments and logging, speed
    networks               scaled Impala encoder, QNetwork (LayerNorm, task embedding, categorical
                           head), bf16 compute view, DrQ's random shift
    replay buffer          per-game frame timelines on the device; 4-frame stacks and n-step
                           targets rebuilt by indexing at sampling
    return normalisation   G_i per game (paper eq. 2) and the reward scale v_max / G_i (eq. 3)
    agent                  TrainState, the jitted entry points, the device mesh
    the update             epsilon-greedy acting, the categorical double-Q target, td_target,
                           critic_loss, update_once, update; then make_agent, which only jits
                           and shards them
    environments           envpool Atari games in lockstep (Atari-100k protocol)
    evaluation, main       epsilon-greedy whole games, IQM, videos; the training loop
    run harness            not needed to learn the method: validation and memory plan, run
                           directory, checkpoints and resume, metrics
"""

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, UInt8

from common.bronet import LayerNorm, Linear, count_parameters, orthogonal_linear
from common.categorical import categorical_projection, cross_entropy, make_support
from common.cli import own_flags_first, parse_args
from common.envs import env_seeds
from common.run import (
    ConfigError, EpisodeReturns, RunArgs, RunDir, check_batch_split, check_discount_and_tau, check_memory,
    check_nonnegative, check_positive, check_run_args, make_mesh, restore_ring, ring_arrays, run_main,
)  # fmt: skip
from common.suites import TaskSpec, normalized_score, resolve_tasks
from common.video import write_mp4


@own_flags_first
@dataclass
class Args(RunArgs):
    suite: str = "atari"
    """suite to train on: atari (the 26 Atari-100k games), atari-transfer (20 games), or one game name"""
    tasks: tuple[str, ...] = ()
    """explicit game list (comma- or space-separated, e.g. `pong,breakout`); overrides --suite"""
    seed: int = 0
    """seed of the network, the replay sampling, exploration and the environments"""
    total_steps: int = 100_000
    """agent steps per game (Atari-100k: 100k steps = 400k frames); all games step in lockstep"""
    learning_starts: int = 1_600
    """steps of uniformly random actions before the first update (DrQ-eps)"""

    # networks (paper Table 4)
    channels: tuple[int, ...] = (128, 256, 256)
    """output channels of the Impala encoder's stages (scaled Impala)"""
    width: int = 512
    """width of the dense Q-network's hidden layers"""
    depth: int = 2
    """hidden layers of the dense Q-network"""
    embedding_dim: int = 32
    """task embedding size (multi-task runs)"""
    num_atoms: int = 101
    """atoms of the categorical Q-distribution"""
    v_max: float = 10.0
    """support is [-v_max, v_max]"""

    # learning (paper Table 4)
    utd: int = 2
    """gradient updates per environment step (one step = every game stepped once)"""
    batch_size: int = 256
    """minibatch size"""
    buffer_size: int = 100_000
    """replay capacity per game, in stored observations"""
    learning_rate: float = 1e-4
    """AdamW learning rate"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    adam_eps: float = 1.5e-4
    """AdamW epsilon (DrQ-eps)"""
    gamma: float = 0.99
    """discount"""
    tau: float = 5e-3
    """Polyak rate of the target network, applied after every update"""
    n_step: int = 3
    """length of the multi-step return"""
    start_epsilon: float = 1.0
    """exploration epsilon when learning starts"""
    end_epsilon: float = 0.01
    """exploration epsilon after the decay"""
    epsilon_decay_steps: int = 5_000
    """steps over which epsilon decays linearly, counted from --learning-starts (DrQ-eps)"""
    shift_pad: int = 4
    """random-shift augmentation: pad by this many pixels (edge values), then crop back at random"""

    # environments (Atari-100k protocol)
    max_episode_steps: int = 27_000
    """agent steps per game before truncation (27k steps = 108k frames)"""
    terminal_on_life_loss: bool = True
    """training episodes end at every lost life (DrQ-eps); evaluation always plays whole games"""
    clip_rewards: bool = True
    """clip training rewards to [-1, 1] before return normalisation (DrQ-eps); logged returns are raw"""

    # evaluation, logging
    eval_interval: int = 50_000
    """steps between evaluations (one is also run at the end)"""
    eval_episodes: int = 10
    """evaluation games per game (the Atari-100k papers report 100 at the end)"""
    eval_epsilon: float = 0.001
    """epsilon of the evaluation policy (DrQ-eps)"""
    checkpoint_interval: int = 50_000
    """steps between checkpoints (one is also written at the end)"""
    checkpoint_replay: bool = True
    """save the replay buffer with each checkpoint so that --resume continues exactly"""
    capture_video: bool = False
    """at each evaluation, save the first evaluation game of each of the first --video-tasks games as runs/<run>/videos/<game>_step<N>.mp4 (the agent's own 84x84 frames, shown 2x)"""
    video_tasks: int = 3
    """how many games --capture-video films, in the suite's order"""

    # speed and scale, as sac_brc.py (do not change the method; docs/drq_brc.md)
    precision: Literal["f32", "bf16"] = "f32"
    """encoder convolutions and Q-network matmuls in float32 or bfloat16 (float32 master weights, LayerNorm statistics, softmax and loss)"""
    overlap: bool = True
    """step the environments while the device runs the update; the update then samples from the buffer, and uses G_i, as they were before the newest transition"""


# Fields that may change when resuming (besides RunArgs'); every other field must match the checkpoint.
RESUMABLE_FIELDS = {"total_steps", "eval_interval", "eval_episodes", "checkpoint_replay", "overlap", "capture_video",
                    "video_tasks"}  # fmt: skip

NUM_ACTIONS = 18  # the full ALE action space for every game (paper Appendix E.1)
FRAME = 84  # 84 x 84 grey frames
STACK = 4  # frames per observation


# ---------------------------------------------------------------- networks


def xavier_conv(in_channels: int, out_channels: int, key: PRNGKeyArray) -> eqx.nn.Conv2d:
    """3x3 'SAME' convolution, Xavier-uniform weights and zero bias (Impala in Dopamine/BBF)."""
    conv = eqx.nn.Conv2d(in_channels, out_channels, 3, padding="SAME", key=key)
    init = jax.nn.initializers.xavier_uniform(in_axis=1, out_axis=0)
    return eqx.tree_at(
        lambda c: (c.weight, c.bias), conv, (init(key, conv.weight.shape), jnp.zeros_like(conv.bias))
    )


def max_pool(x: Float[Array, "c h w"]) -> Float[Array, "c h2 w2"]:
    """3x3 max-pool with stride 2 and padding 1: 84 -> 42 -> 21 -> 11."""
    padding = ((0, 0), (1, 1), (1, 1))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3), (1, 2, 2), padding)


class ImpalaBlock(eqx.Module):
    """Residual block `x + conv(relu(conv(relu(x))))` (Espeholt et al., 2018)."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d

    def __init__(self, channels: int, key: PRNGKeyArray):
        key1, key2 = jax.random.split(key)
        self.conv1 = xavier_conv(channels, channels, key1)
        self.conv2 = xavier_conv(channels, channels, key2)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c h w"]:
        return x + self.conv2(jax.nn.relu(self.conv1(jax.nn.relu(x))))


class ImpalaEncoder(eqx.Module):
    """Scaled Impala CNN (paper Figure 14): per stage a conv, a 3x3 stride-2 max-pool and two
    residual blocks; 84 -> 42 -> 21 -> 11 pixels. Task-agnostic: it never sees the task."""

    convs: tuple[eqx.nn.Conv2d, ...]
    blocks: tuple[tuple[ImpalaBlock, ImpalaBlock], ...]

    def __init__(self, channels: tuple[int, ...], key: PRNGKeyArray):
        keys = jax.random.split(key, 3 * len(channels))
        in_channels = (STACK, *channels[:-1])
        self.convs = tuple(
            xavier_conv(i, o, keys[3 * s]) for s, (i, o) in enumerate(zip(in_channels, channels))
        )
        self.blocks = tuple(
            (ImpalaBlock(c, keys[3 * s + 1]), ImpalaBlock(c, keys[3 * s + 2])) for s, c in enumerate(channels)
        )

    def __call__(self, obs: UInt8[Array, "stack 84 84"]) -> Float[Array, " features"]:
        # in the convolutions' dtype: bfloat16 under `precision_view(..., "bf16")`
        x = obs.astype(self.convs[0].weight.dtype) / 255.0
        for conv, (block1, block2) in zip(self.convs, self.blocks):
            x = block2(block1(max_pool(conv(x))))
        return jax.nn.relu(x).reshape(-1)


def encoder_feature_dim(channels: tuple[int, ...]) -> int:
    size = FRAME
    for _ in channels:
        size = (size + 1) // 2  # stride-2 pooling with padding 1
    return channels[-1] * size * size


class QNetwork(eqx.Module):
    """Impala encoder -> LayerNorm -> concat(task embedding) -> dense MLP -> 18 x num_atoms logits.

    The Q-network is a plain dense MLP (paper Table 4: "Critic: Dense, depth 2, width 512",
    where SAC+BRC's Table 3 says "BroNet"): `depth` Linear+ReLU layers, then a linear head.
    The embedding table lives here and is trained by the TD loss; each row is divided by its
    L2 norm (ref. code, as in sac_brc.py; the paper says L1).
    """

    encoder: ImpalaEncoder
    norm: LayerNorm
    task_embedding: Float[Array, "tasks embedding"] | None
    hidden: tuple[Linear, ...]
    head: Linear
    num_atoms: int = eqx.field(static=True)

    def __init__(self, num_tasks: int, args: Args, key: PRNGKeyArray):
        encoder_key, embedding_key, head_key, *hidden_keys = jax.random.split(key, 3 + args.depth)
        self.encoder = ImpalaEncoder(args.channels, encoder_key)
        features = encoder_feature_dim(args.channels)
        self.norm = LayerNorm(features)  # paper C.3: LayerNorm before the Q-network
        # flax nn.Embed's default init, N(0, 1/embedding_dim) (ref. code); none for one game
        self.task_embedding = (
            jax.random.normal(embedding_key, (num_tasks, args.embedding_dim)) / math.sqrt(args.embedding_dim)
            if num_tasks > 1
            else None
        )
        sizes = [features + (args.embedding_dim if num_tasks > 1 else 0)] + [args.width] * args.depth
        self.hidden = tuple(
            orthogonal_linear(i, o, math.sqrt(2), k) for i, o, k in zip(sizes[:-1], sizes[1:], hidden_keys)
        )
        self.head = orthogonal_linear(sizes[-1], NUM_ACTIONS * args.num_atoms, math.sqrt(2), head_key)
        self.num_atoms = args.num_atoms

    def embed(self, task_id: Int[Array, ""]) -> Float[Array, " embedding"]:
        if self.task_embedding is None:
            return jnp.zeros((0,))
        embedding = self.task_embedding[task_id]
        return embedding / jnp.linalg.norm(embedding)

    def __call__(self, obs: UInt8[Array, "stack 84 84"], task_id: Int[Array, ""]) -> Float[Array, "18 atoms"]:
        # paper Figure 15 (right): the embedding joins after the encoder and its LayerNorm.
        # Layers cast to bfloat16 by `precision_view` (--precision bf16) run in bfloat16; the
        # LayerNorm computes its statistics in float32 and the logits leave in float32 for the
        # softmax and the loss
        x = jnp.concatenate([self.norm(self.encoder(obs)).astype(jnp.float32), self.embed(task_id)])
        x = x.astype(self.head.weight.dtype)
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.head(x).astype(jnp.float32).reshape(NUM_ACTIONS, self.num_atoms)


def precision_view(q: QNetwork, precision: str) -> QNetwork:
    """The Q-network as its convolutions and matmuls see it: with `bf16`, the encoder's and
    the dense layers' parameters cast to bfloat16 (the LayerNorm and the task embedding stay
    float32). The cast is differentiable, so gradients reach the float32 master weights."""
    if precision == "f32":
        return q
    to_bf16 = lambda p: p.astype(jnp.bfloat16) if eqx.is_inexact_array(p) else p
    layers = lambda q: (q.encoder, q.hidden, q.head)
    return eqx.tree_at(layers, q, jax.tree.map(to_bf16, layers(q)))


def random_shift(
    obs: UInt8[Array, "batch stack h w"], pad: int, key: PRNGKeyArray
) -> UInt8[Array, "batch stack h w"]:
    """DrQ's augmentation: pad each image by `pad` edge pixels and crop a random h x w window,
    i.e. shift by an integer in [-pad, pad] in both directions (one shift per stack)."""
    batch, stack, height, width = obs.shape
    padded = jnp.pad(obs, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * pad + 1)
    crop = lambda image, o: jax.lax.dynamic_slice(image, (0, o[0], o[1]), (stack, height, width))
    return jax.vmap(crop)(padded, offsets)


# ---------------------------------------------------------------- replay buffer


class ReplayBuffer(NamedTuple):
    """Per game a ring buffer of the observation timeline: slot i holds the newest frame of
    the observation o_i, the action taken from it, the reward and whether the episode ended
    after it. Every observation the env returns gets a slot, episode-final ones included
    (`valid = False`: no action was taken from them), so that 4-frame stacks and n-step
    bootstraps are rebuilt by indexing; frames are stored once, as uint8."""

    frames: UInt8[Array, "tasks capacity 84 84"]
    action: Int[Array, "tasks capacity"]
    reward: Float[Array, "tasks capacity"]
    terminated: Bool[Array, "tasks capacity"]  # the episode ended after this slot, no bootstrap
    truncated: Bool[Array, "tasks capacity"]  # the episode was cut after this slot, bootstrap
    game_start: Bool[Array, "tasks capacity"]  # o_i is a fresh game: its stack repeats its frame
    valid: Bool[Array, "tasks capacity"]  # o_i starts a transition (it is not a final observation)
    position: Int[Array, " tasks"]
    size: Int[Array, " tasks"]


def replay_buffer_init(num_tasks: int, capacity: int) -> ReplayBuffer:
    zeros = lambda dtype, *shape: jnp.zeros((num_tasks, capacity, *shape), dtype)
    return ReplayBuffer(
        zeros(jnp.uint8, FRAME, FRAME), zeros(jnp.int32), zeros(jnp.float32), zeros(bool), zeros(bool),
        zeros(bool), zeros(bool), jnp.zeros(num_tasks, jnp.int32), jnp.zeros(num_tasks, jnp.int32),
    )  # fmt: skip


def replay_buffer_bytes(num_tasks: int, capacity: int) -> int:
    return num_tasks * capacity * (FRAME * FRAME + 4 + 4 + 4)


def insert(
    buffer: ReplayBuffer,
    frame: UInt8[Array, "tasks 84 84"],
    action: Int[Array, " tasks"],
    reward: Float[Array, " tasks"],
    terminated: Bool[Array, " tasks"],
    truncated: Bool[Array, " tasks"],
    game_start: Bool[Array, " tasks"],
    valid: Bool[Array, " tasks"],
) -> ReplayBuffer:
    """Write one slot per game (every env step writes, also the auto-reset step)."""
    tasks, slot = jnp.arange(frame.shape[0]), buffer.position
    capacity = buffer.frames.shape[1]
    put = lambda storage, value: storage.at[tasks, slot].set(value)
    return ReplayBuffer(
        put(buffer.frames, frame), put(buffer.action, action), put(buffer.reward, reward),
        put(buffer.terminated, terminated), put(buffer.truncated, truncated),
        put(buffer.game_start, game_start), put(buffer.valid, valid),
        (slot + 1) % capacity, jnp.minimum(buffer.size + 1, capacity),
    )  # fmt: skip


def stack_indices(buffer: ReplayBuffer, task: Int[Array, ""], index: Int[Array, ""]) -> Int[Array, " stack"]:
    """Slots of the 4 frames of observation `index`, oldest first. Walking back stops at a
    game start, whose frame is repeated (what envpool's stack holds after a reset). A lost
    life does not reset envpool's stack, so the walk goes on across life-loss episodes."""
    capacity = buffer.frames.shape[1]
    indices = [index]
    for _ in range(STACK - 1):
        previous = indices[-1]
        indices.append(jnp.where(buffer.game_start[task, previous], previous, (previous - 1) % capacity))
    return jnp.stack(indices[::-1])


def n_step_target(
    buffer: ReplayBuffer, task: Int[Array, ""], index: Int[Array, ""], n_step: int, gamma: float
) -> tuple[Float[Array, ""], Float[Array, ""], Int[Array, ""]]:
    """(sum_k gamma^k r_{t+k}, bootstrap discount, bootstrap slot) of the transition at `index`.

    The sum stops after the first slot whose episode ended: m = min(n, steps to the end).
    A termination (life loss or game over) gives discount 0; a truncation bootstraps from
    the stored final observation with gamma^m, as does a window without an episode end."""
    capacity = buffer.frames.shape[1]
    total, steps = jnp.zeros(()), jnp.zeros((), jnp.int32)
    ended, terminated = jnp.zeros((), bool), jnp.zeros((), bool)
    for k in range(n_step):
        slot = (index + k) % capacity
        live = ~ended
        total = total + jnp.where(live, gamma**k * buffer.reward[task, slot], 0.0)
        steps = steps + live.astype(jnp.int32)
        terminated = terminated | (live & buffer.terminated[task, slot])
        ended = ended | buffer.terminated[task, slot] | buffer.truncated[task, slot]
    discount = jnp.where(terminated, 0.0, jnp.asarray(gamma, jnp.float32) ** steps)
    return total, discount, (index + steps) % capacity


def sampleable(
    buffer: ReplayBuffer, task: Int[Array, " batch"], index: Int[Array, " batch"], n_step: int
) -> Bool[Array, " batch"]:
    """Slots a transition can be sampled from: not a final observation, its stack's history
    not yet overwritten (age >= 3) and its next n slots written (DrQ-eps/Dopamine's rule)."""
    capacity = buffer.frames.shape[1]
    size = buffer.size[task]
    oldest = jnp.where(size == capacity, buffer.position[task], 0)
    age = (index - oldest) % capacity  # 0 = the oldest stored slot
    return buffer.valid[task, index] & (age >= STACK - 1) & (age <= size - 1 - n_step)


class Batch(NamedTuple):
    task: Int[Array, " batch"]
    obs: UInt8[Array, "batch stack 84 84"]
    action: Int[Array, " batch"]
    reward: Float[Array, " batch"]  # n-step discounted reward sum (not yet normalised)
    discount: Float[Array, " batch"]  # gamma^m, or 0 after a termination
    next_obs: UInt8[Array, "batch stack 84 84"]


def sample_indices(
    buffer: ReplayBuffer, batch_size: int, n_step: int, key: PRNGKeyArray
) -> tuple[Int[Array, " batch"], Int[Array, " batch"]]:
    """(task, slot) uniformly over games, then uniformly over each game's sampleable slots
    (rejection: redraw the entries that are not sampleable until none is left)."""
    task_key, index_key = jax.random.split(key)
    task = jax.random.randint(task_key, (batch_size,), 0, buffer.frames.shape[0])

    def draw(key):
        return jnp.floor(jax.random.uniform(key, (batch_size,)) * buffer.size[task]).astype(jnp.int32)

    def redraw(carry):
        index, key = carry
        key, draw_key = jax.random.split(key)
        return jnp.where(sampleable(buffer, task, index, n_step), index, draw(draw_key)), key

    first_key, loop_key = jax.random.split(index_key)
    index, _ = jax.lax.while_loop(
        lambda carry: ~jnp.all(sampleable(buffer, task, carry[0], n_step)),
        redraw,
        (draw(first_key), loop_key),
    )
    return task, index


def sample(buffer: ReplayBuffer, batch_size: int, n_step: int, gamma: float, key: PRNGKeyArray) -> Batch:
    task, index = sample_indices(buffer, batch_size, n_step, key)
    reward, discount, next_index = jax.vmap(n_step_target, in_axes=(None, 0, 0, None, None))(
        buffer, task, index, n_step, gamma
    )
    frames = lambda t, i: buffer.frames[t, stack_indices(buffer, t, i)]
    return Batch(
        task,
        jax.vmap(frames)(task, index),
        buffer.action[task, index],
        reward,
        discount,
        jax.vmap(frames)(task, next_index),
    )


# ---------------------------------------------------------------- return normalisation


def discounted_returns(rewards: np.ndarray, gamma: float, truncated: bool) -> np.ndarray:
    """Monte-Carlo return of every state of one episode; a truncated episode bootstraps
    its tail with `mean(rewards) / (1 - gamma)` (ref. code; the paper says "with the
    critic output")."""
    tail = float(np.mean(rewards)) / (1.0 - gamma) if truncated else 0.0
    returns = np.empty(len(rewards))
    for t in reversed(range(len(rewards))):
        tail = rewards[t] + gamma * tail
        returns[t] = tail
    return returns


class ReturnNormalizer:
    """Per-game G_i: the largest absolute discounted return seen so far (paper eq. 2), over
    training episodes (life-loss episodes with --terminal-on-life-loss) of clipped rewards.

    Rewards are scaled by `v_max / G_i` (eq. 3 with lambda_i = 0: DrQ has no entropy term).
    Start-up: before game i's first episode ends, its episode so far counts as truncated;
    while G_i is 0 every reward of game i so far was 0, so the scale is 1 (never inf or NaN).
    """

    def __init__(self, num_tasks: int, gamma: float):
        self.gamma = gamma
        self.max_abs_return = np.zeros(num_tasks)
        self.episode_ended = np.zeros(num_tasks, bool)
        self.current_rewards: list[list[float]] = [[] for _ in range(num_tasks)]

    def add(self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray):
        for i in np.flatnonzero(valid):
            self.current_rewards[i].append(float(reward[i]))
            if terminated[i] or truncated[i]:
                self._end_episode(int(i), truncated=not bool(terminated[i]))

    def _end_episode(self, i: int, truncated: bool) -> None:
        returns = discounted_returns(np.array(self.current_rewards[i]), self.gamma, truncated)
        self.max_abs_return[i] = max(self.max_abs_return[i], np.abs(returns).max())
        self.episode_ended[i] = True
        self.current_rewards[i] = []

    def truncate_all(self) -> None:
        """End every running episode as truncated (on resume, where the envs start afresh)."""
        for i, rewards in enumerate(self.current_rewards):
            if rewards:
                self._end_episode(i, truncated=True)

    def reward_scale(self, v_max: float) -> np.ndarray:
        """The reward scale `v_max / G_i` per game, float32, for the update."""
        g = self.max_abs_return.copy()
        for i in np.flatnonzero(~self.episode_ended):
            if self.current_rewards[i]:
                g[i] = np.abs(discounted_returns(np.array(self.current_rewards[i]), self.gamma, True)).max()
        return np.where(g > 0, v_max / np.maximum(g, 1e-12), 1.0).astype(np.float32)

    def state_dict(self) -> dict:
        return {
            "max_abs_return": self.max_abs_return.tolist(),
            "episode_ended": self.episode_ended.tolist(),
            "current_rewards": self.current_rewards,
        }

    def load_state_dict(self, state: dict) -> None:
        self.max_abs_return = np.array(state["max_abs_return"])
        self.episode_ended = np.array(state["episode_ended"], bool)
        self.current_rewards = [list(r) for r in state["current_rewards"]]


# ---------------------------------------------------------------- agent


class TrainState(eqx.Module):
    q: QNetwork
    target_q: QNetwork
    opt_state: optax.OptState
    step: Int[Array, ""]  # updates done so far (keys are folded with it)


class AgentFns(NamedTuple):
    """The jitted entry points, each traced once per run (a retrace is a silent slowdown), and
    `replicate`, which puts a pytree (the replay buffer, a restored state) on the devices,
    replicated."""

    act: callable
    act_eval: callable
    insert: callable
    update: callable
    replicate: callable


# ---------------------------------------------------------------- the update (paper Appendix C)
# Pure functions of the state, the replay buffer and keys; `args`, `support`, `optimizer` and
# `batch_sharding` are constants of the run. make_agent below only jits and shards them.


def expected_q(logits: Float[Array, "... atoms"], support: Float[Array, " atoms"]) -> Float[Array, "..."]:
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * support, axis=-1)


def epsilon_at(step: int, args: Args) -> float:
    """Linear decay from --start-epsilon to --end-epsilon over --epsilon-decay-steps after
    --learning-starts; 1 before learning starts (DrQ-eps / Dopamine's linearly_decaying_epsilon)."""
    if step < args.learning_starts:
        return 1.0
    fraction = min(1.0, (step - args.learning_starts) / max(args.epsilon_decay_steps, 1))
    return args.start_epsilon + fraction * (args.end_epsilon - args.start_epsilon)


def epsilon_greedy(
    state: TrainState,
    obs: UInt8[Array, "envs stack 84 84"],
    task_ids: Int[Array, " envs"],
    epsilon: Float[Array, ""],
    key: PRNGKeyArray,
    *,
    args: Args,
    support: Float[Array, " atoms"],
) -> Int[Array, " envs"]:
    """With probability epsilon a uniformly random action, else the one of highest expected Q."""
    q = precision_view(state.q, args.precision)  # act with the numerics the update trains
    greedy = jnp.argmax(expected_q(jax.vmap(q)(obs, task_ids), support), axis=-1)
    explore_key, action_key = jax.random.split(key)
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, jax.random.randint(action_key, greedy.shape, 0, NUM_ACTIONS), greedy)


def categorical_double_q_target(
    reward: Float[Array, " batch"],
    discount: Float[Array, " batch"],
    online_next_logits: Float[Array, "batch actions atoms"],
    target_next_logits: Float[Array, "batch actions atoms"],
    support: Float[Array, " atoms"],
) -> Float[Array, "batch atoms"]:
    """n-step categorical target with double-Q action selection: the online network picks
    `a* = argmax_a E[Z(s', a)]`, the target network's distribution at a* is shifted to
    `r + discount * z` and projected onto the support (paper C.2). Double Q as DrQ-eps's
    Dopamine configuration (double_dqn = True); it also keeps the target network's own
    over-estimation out of the action choice."""
    best = jnp.argmax(expected_q(online_next_logits, support), axis=-1)
    target_probs = jax.nn.softmax(target_next_logits[jnp.arange(len(best)), best], axis=-1)
    target_atoms = reward[:, None] + discount[:, None] * support[None, :]
    return jax.vmap(categorical_projection, in_axes=(0, 0, None))(target_atoms, target_probs, support)


def td_target(
    state: TrainState,
    next_obs: UInt8[Array, "batch stack 84 84"],
    task: Int[Array, " batch"],
    reward: Float[Array, " batch"],
    discount: Float[Array, " batch"],
    *,
    args: Args,
    support: Float[Array, " atoms"],
) -> tuple[Float[Array, "batch atoms"], Float[Array, "batch actions atoms"]]:
    """The target probabilities for (already scaled) n-step rewards, with no gradient; and the
    online network's logits at s', whose mean max Q the update logs."""
    online_next = jax.vmap(precision_view(state.q, args.precision))(next_obs, task)
    target_next = jax.vmap(precision_view(state.target_q, args.precision))(next_obs, task)
    target = categorical_double_q_target(reward, discount, online_next, target_next, support)
    return jax.lax.stop_gradient(target), online_next


def critic_loss(
    q: QNetwork,
    obs: UInt8[Array, "batch stack 84 84"],
    task: Int[Array, " batch"],
    action: Int[Array, " batch"],
    target: Float[Array, "batch atoms"],
    *,
    args: Args,
) -> Float[Array, ""]:
    """Cross-entropy from the target probabilities to the taken action's logits, batch mean."""
    logits = jax.vmap(precision_view(q, args.precision))(obs, task)[jnp.arange(len(action)), action]
    return jax.vmap(cross_entropy)(target, logits).mean()


def update_once(
    state: TrainState,
    scale: Float[Array, " tasks"],
    buffer: ReplayBuffer,
    key: PRNGKeyArray,
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizer: optax.GradientTransformation,
    batch_sharding: jax.sharding.Sharding,
) -> tuple[TrainState, dict]:
    """One gradient step of the Q-network on its own sampled minibatch, then the target's."""
    sample_key, obs_key, next_key = jax.random.split(key, 3)
    batch = sample(buffer, args.batch_size, args.n_step, args.gamma, sample_key)
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    # DrQ: s and s' each get their own random shift, inside the jitted update
    obs = random_shift(batch.obs, args.shift_pad, obs_key)
    next_obs = random_shift(batch.next_obs, args.shift_pad, next_key)
    reward = batch.reward * scale[batch.task]  # paper eq. 3, per game
    target, online_next = td_target(
        state, next_obs, batch.task, reward, batch.discount, args=args, support=support
    )
    loss, grads = eqx.filter_value_and_grad(critic_loss)(
        state.q, obs, batch.task, batch.action, target, args=args
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, eqx.filter(state.q, eqx.is_inexact_array))
    q = eqx.apply_updates(state.q, updates)
    # target network: Polyak after every update (paper C.1, following BBF)
    online, _ = eqx.partition(q, eqx.is_inexact_array)
    target_params, static = eqx.partition(state.target_q, eqx.is_inexact_array)
    target_params = jax.tree.map(lambda t, o: (1 - args.tau) * t + args.tau * o, target_params, online)
    metrics = {"loss": loss, "q": expected_q(online_next, support).max(axis=-1).mean()}
    return TrainState(q, eqx.combine(target_params, static), opt_state, state.step + 1), metrics


def update(
    state: TrainState,
    buffer: ReplayBuffer,
    scale: Float[Array, " tasks"],
    key: PRNGKeyArray,
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizer: optax.GradientTransformation,
    batch_sharding: jax.sharding.Sharding,
) -> tuple[TrainState, dict]:
    """`utd` gradient updates as one lax.scan, each on its own sampled minibatch."""
    keys = jax.random.split(jax.random.fold_in(key, state.step), args.utd)
    step = partial(
        update_once, args=args, support=support, optimizer=optimizer, batch_sharding=batch_sharding
    )
    state, metrics = jax.lax.scan(lambda s, k: step(s, scale, buffer, k), state, keys)
    return state, jax.tree.map(jnp.mean, metrics)


def make_agent(args: Args, num_tasks: int, key: PRNGKeyArray) -> tuple[TrainState, AgentFns]:
    """Initial TrainState and the jitted, sharded entry points for one configuration."""
    support = make_support(args.num_atoms, args.v_max)
    optimizer = optax.adamw(args.learning_rate, eps=args.adam_eps, weight_decay=args.weight_decay)
    # data parallel (as sac_brc.py): every device holds the parameters, optimiser state and
    # replay buffer; each minibatch is split across devices and XLA all-reduces the gradients
    mesh = make_mesh(args.num_devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))

    @partial(jax.jit, out_shardings=replicated)
    def init(key):
        q = QNetwork(num_tasks, args, key)
        return TrainState(q, q, optimizer.init(eqx.filter(q, eqx.is_inexact_array)), jnp.zeros((), jnp.int32))

    constants = {"args": args, "support": support, "optimizer": optimizer, "batch_sharding": batch_sharded}
    act = partial(epsilon_greedy, args=args, support=support)
    fns = AgentFns(
        jax.jit(eqx.debug.assert_max_traces(act, max_traces=1)),
        jax.jit(eqx.debug.assert_max_traces(act, max_traces=1)),  # evaluation batch shape
        jax.jit(eqx.debug.assert_max_traces(insert, max_traces=1), donate_argnums=0),
        # donated state: the new parameters and optimiser state are written over the old ones
        jax.jit(eqx.debug.assert_max_traces(partial(update, **constants), max_traces=1), donate_argnums=0),
        lambda tree: jax.device_put(tree, replicated),
    )
    return init(key), fns


# ---------------------------------------------------------------- environments


class AtariStep(NamedTuple):
    obs: np.ndarray  # (envs, 4, 84, 84) uint8, oldest frame first
    reward: np.ndarray  # (envs,) float32, raw (unclipped)
    terminated: np.ndarray  # (envs,) bool: life lost (with episodic life) or game over
    truncated: np.ndarray  # (envs,) bool: --max-episode-steps reached
    game_over: np.ndarray  # (envs,) bool: the whole game ended (no lives left)
    game_start: np.ndarray  # (envs,) bool: obs is the first of a new game
    reset_step: np.ndarray  # (envs,) bool: this step was envpool's auto-reset; the action was ignored


class AtariGames:
    """One envpool instance per game, `envs_per_game` copies each, stepped in lockstep with
    async send/recv; rows are game-major. Atari-100k protocol (docs/drq_brc.md):
    84x84 grey, 4-frame stack, frame skip 4, full 18-action space, no sticky actions, up to
    30 no-op starts, no FIRE on reset (DrQ-eps), `max_episode_steps` agent steps per game."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        envs_per_game: int,
        seed: int,
        role: str,
        episodic_life: bool,
        max_episode_steps: int,
        start_step: int = 0,
    ):
        import envpool

        self.envs_per_game = envs_per_game
        self.num_envs = len(tasks) * envs_per_game
        self.task_ids = np.repeat(np.arange(len(tasks), dtype=np.int32), envs_per_game)
        # disjoint between runs and roles; a resumed run's training envs (start_step > 0) get new ones
        self.seeds = env_seeds(seed, role, len(tasks), envs_per_game, start_step)
        self.envs = [
            envpool.make_gymnasium(
                task.envpool_id,
                num_envs=envs_per_game,
                seed=[int(s) for s in self.seeds[k]],
                full_action_space=True,
                repeat_action_probability=0.0,
                episodic_life=episodic_life,
                reward_clip=False,
                use_fire_reset=False,
                noop_max=30,
                max_episode_steps=max_episode_steps,
                stack_num=STACK,
                frame_skip=4,  # Atari-100k's; Table 4's "action repeat 1" adds none on top (docs/drq_brc.md 15)
                img_height=FRAME,
                img_width=FRAME,
                gray_scale=True,
            )
            for k, task in enumerate(tasks)
        ]
        self._ended = np.zeros(self.num_envs, bool)

    def _gather(self) -> AtariStep:
        parts = []
        for env in self.envs:
            obs, reward, term, trunc, info = env.recv()
            order = np.argsort(info["env_id"])  # envpool may answer out of order
            parts.append((obs[order], np.asarray(reward, np.float32)[order], np.asarray(term, bool)[order],
                          np.asarray(trunc, bool)[order], np.asarray(info["terminated"], bool)[order],
                          np.asarray(info["elapsed_step"])[order] == 0))  # fmt: skip
        obs, reward, term, trunc, game_over, game_start = (np.concatenate(f) for f in zip(*parts))
        reset_step = self._ended.copy()
        self._ended = term | trunc
        return AtariStep(obs, reward, term, trunc, game_over | trunc, game_start, reset_step)

    def reset(self) -> AtariStep:
        for env in self.envs:
            env.async_reset()
        self._ended[:] = False
        return self._gather()

    def step(self, actions: np.ndarray) -> AtariStep:
        ids = np.arange(self.envs_per_game, dtype=np.int32)
        for k, env in enumerate(self.envs):
            env.send(
                np.asarray(actions[k * self.envs_per_game : (k + 1) * self.envs_per_game], np.int32), ids
            )
        return self._gather()

    def close(self) -> None:
        for env in self.envs:
            env.close()


# ---------------------------------------------------------------- evaluation


def evaluate(
    fns: AgentFns, state: TrainState, env: AtariGames, tasks: list[TaskSpec], epsilon: float, key,
    filmed: int = 0,
) -> tuple[dict, list[np.ndarray]]:
    """One whole game on every eval env (`eval_episodes` copies per game), epsilon-greedy.
    Also returns, for the first `filmed` games, the frames their first copy saw: (T, 84, 84)."""
    obs = env.reset().obs
    task_ids = jnp.asarray(env.task_ids)
    game_return = np.zeros(env.num_envs)
    finished = np.zeros(env.num_envs, bool)
    filmed_rows = [int(np.flatnonzero(env.task_ids == k)[0]) for k in range(filmed)]
    frames = [[] for _ in filmed_rows]
    step = 0
    while not finished.all():
        for film, row in zip(frames, filmed_rows):
            if not finished[row]:
                film.append(np.asarray(obs[row, -1]))  # the newest frame of the stack
        action = np.asarray(
            fns.act_eval(state, obs, task_ids, jnp.float32(epsilon), jax.random.fold_in(key, step))
        )
        out = env.step(action)
        live = ~finished & ~out.reset_step
        game_return += np.where(live, out.reward, 0.0)
        finished |= live & out.game_over
        obs, step = out.obs, step + 1
    results = {}
    for k, task in enumerate(tasks):
        mean_return = float(game_return[env.task_ids == k].mean())
        results[task.name] = {
            "return": mean_return,
            "success": None,
            "score": normalized_score(task, mean_return, 0.0),
        }
    return results, [np.stack(film) for film in frames]


def interquartile_mean(scores: np.ndarray) -> float:
    """Mean of the middle 50% (rliable's IQM: scipy.stats.trim_mean(scores, 0.25))."""
    ordered = np.sort(np.asarray(scores, float))
    cut = int(0.25 * len(ordered))
    return float(ordered[cut : len(ordered) - cut].mean())


def save_game_videos(frames: list[np.ndarray], tasks: list[TaskSpec], folder: Path, env_step: int) -> dict[str, str]:
    """--capture-video: each filmed game's grey frames, shown at twice their size, at 15 fps
    (60 Hz emulator, frame skip 4); returns game -> file name under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for task, film in zip(tasks, frames):
        rgb = np.repeat(np.repeat(film, 2, axis=1), 2, axis=2)[..., None].repeat(3, axis=-1)
        files[task.name] = f"{task.name}_step{env_step}.mp4"
        write_mp4(folder / files[task.name], rgb, fps=15)
    return files


# ---------------------------------------------------------------- main


def main(args: Args) -> None:
    tasks = validate(args)
    num_tasks = len(tasks)
    capacity = min(args.buffer_size, args.total_steps)  # a buffer never larger than the run
    run = Run.open(args, tasks)  # a new run directory, or --resume's after checking its config
    init_key, act_key, update_key, eval_key = jax.random.split(jax.random.key(args.seed), 4)
    # sizes and the memory plan, before anything is compiled: refuses what cannot fit
    print_plan(args, tasks, capacity, init_key)
    run.create()

    state, fns = make_agent(args, num_tasks, init_key)
    buffer = fns.replicate(replay_buffer_init(num_tasks, capacity))
    normalizer = ReturnNormalizer(num_tasks, args.gamma)
    scale = lambda: jnp.asarray(normalizer.reward_scale(args.v_max))  # v_max / G_i per game (paper eq. 3)
    env_step, collect_until, rng = 0, 0, np.random.default_rng(args.seed)
    if run.resumed:  # the step, normaliser, action key and numpy stream the checkpoint was written with
        restored = run.resume(state, buffer, fns.replicate, normalizer, rng, restore_replay)
        state, buffer, env_step, act_key, collect_until = restored
    print(f"run directory: {run.dir}; batch {args.batch_size}, replay capacity {capacity} frames per game")

    returns, metrics = EpisodeReturns(num_tasks), None
    with run.started(env_step):  # clocks, wandb, checkpoints on SIGTERM/Ctrl-C; closes the envs at the end
        max_steps = args.max_episode_steps
        env = run.closing(AtariGames(tasks, 1, args.seed, "train", args.terminal_on_life_loss, max_steps, env_step))
        eval_env = run.closing(AtariGames(tasks, args.eval_episodes, args.seed, "eval", False, max_steps))
        task_ids = jnp.asarray(env.task_ids)
        current = env.reset()
        while env_step < args.total_steps:
            learning = run.learning(env_step, max(args.learning_starts, collect_until))
            epsilon = epsilon_at(env_step, args)
            if epsilon >= 1.0 or env_step < collect_until:
                action = rng.integers(0, NUM_ACTIONS, num_tasks).astype(np.int32)
            else:
                # dispatched, not awaited: with --overlap the update queues right behind it
                action = fns.act(state, current.obs, task_ids, jnp.float32(epsilon),
                                 jax.random.fold_in(act_key, env_step))  # fmt: skip
            if learning and args.overlap:
                # dispatched before the env step, so the device computes while envpool steps the
                # games; it samples the buffer as it was before this step's transition
                state, metrics = fns.update(state, buffer, scale(), update_key)
            action = np.asarray(action)  # waits for acting only, not for the update queued behind it
            out = env.step(action)
            valid = ~out.reset_step  # o_t was a final observation: nothing was learned from this step
            train_reward = np.clip(out.reward, -1.0, 1.0) if args.clip_rewards else out.reward
            buffer = fns.insert(
                buffer, current.obs[:, -1], action, np.where(valid, train_reward, 0.0).astype(np.float32),
                valid & out.terminated, valid & out.truncated, current.game_start, valid,
            )  # fmt: skip
            normalizer.add(train_reward, out.terminated, out.truncated, valid)
            returns.add(np.where(valid, out.reward, 0.0), valid & out.game_over)
            current = out
            env_step += 1

            if learning and not args.overlap:
                state, metrics = fns.update(state, buffer, scale(), update_key)

            if env_step % args.log_interval == 0:
                run.log_progress(env_step, returns, metrics, f"epsilon {epsilon:.3f}", label="train game return")
            if env_step % args.eval_interval == 0 or env_step == args.total_steps:
                run.evaluation(env_step, fns, state, eval_env, jax.random.fold_in(eval_key, env_step), metrics)
            if run.checkpoint_due(env_step):  # on a stop signal, the run ends after it
                replay = ring_arrays(buffer) if args.checkpoint_replay else None
                run.checkpoint_online(env_step, state, replay, metrics, normalizer, rng, act_key)
    print(f"done: {env_step} steps per game in {time.time() - run.start_time:.0f} s; results in {run.dir}")


# ================================================================ run harness
# Not needed to learn the method: validation and memory plan, run directory, checkpoints and
# resume, metrics. main calls each feature here in one line.


# ---------------------------------------------------------------- runs: config, checkpoints, metrics


def validate(args: Args) -> list[TaskSpec]:
    if len(args.tasks) == 1 and "," in args.tasks[0]:
        args.tasks = tuple(t for t in args.tasks[0].split(",") if t)
    try:
        tasks = resolve_tasks(args.suite, args.tasks, frozenset({"atari"}))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    not_atari = [t.name for t in tasks if t.domain != "atari"]
    if not_atari:
        raise ConfigError(
            f"drq_brc.py trains Atari games; {len(not_atari)} of {len(tasks)} tasks are continuous control "
            f"({', '.join(not_atari[:3])}{', ...' * (len(not_atari) > 3)}): "
            "use sac_brc.py, or pick --suite atari, atari-transfer or a game name such as pong"
        )
    check_positive(args, "total_steps", "width", "num_atoms", "utd", "batch_size", "n_step", "max_episode_steps",
                   "eval_interval", "eval_episodes", "embedding_dim", "video_tasks", "v_max", "learning_rate",
                   "adam_eps")  # fmt: skip
    check_run_args(args)
    if not args.channels or min(args.channels) <= 0:
        raise ConfigError(f"--channels must be one or more positive numbers, got {args.channels}")
    check_nonnegative(args, "depth", "shift_pad", "epsilon_decay_steps", "weight_decay", "seed")
    check_discount_and_tau(args)
    if args.num_atoms < 2:
        raise ConfigError("--num-atoms must be at least 2 for the categorical Q-network")
    for name in ("start_epsilon", "end_epsilon", "eval_epsilon"):
        if not 0 <= getattr(args, name) <= 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    check_batch_split(args.batch_size, args.num_devices)
    # the first update needs sampleable slots in every game: history, n next slots, and some spare
    least = 4 * (STACK + args.n_step)
    if min(args.buffer_size, args.total_steps) < least or args.learning_starts < least:
        raise ConfigError(
            f"--buffer-size, --total-steps and --learning-starts must each be at least {least} "
            f"(4 x (frame stack {STACK} + n-step {args.n_step})) so that every game has transitions to sample"
        )
    return tasks


def conv_activation_floats(channels: tuple[int, ...]) -> int:
    """Floats one encoder forward pass writes per sample (conv, pool and block outputs)."""
    total, size = 0, FRAME
    for c in channels:
        total += c * size * size  # stage conv
        size = (size + 1) // 2
        total += c * size * size * 9  # pool, then 2 blocks x (relu, conv, relu, conv)
    return total


def print_plan(args: Args, tasks: list[TaskSpec], capacity: int, key: PRNGKeyArray) -> None:
    """Sizes before anything is compiled: device, games, parameters and the memory plan (which
    refuses a configuration that cannot fit)."""
    num_tasks = len(tasks)
    abstract = eqx.filter_eval_shape(lambda k: QNetwork(num_tasks, args, k), key)
    params = count_parameters(abstract)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(jax.devices())} visible")
    print(f"games ({num_tasks}): {', '.join(t.name for t in tasks)}; 18 actions, 4x84x84 uint8 observations")
    encoder = count_parameters(abstract.encoder)
    print(f"parameters: Q-network {params:,} (encoder {encoder:,}; the same again in its target)")
    # activations of the update, roughly: the online pass on s kept for its backward pass (with
    # its gradients) and the two passes on s'; 4 bytes each (2 in bfloat16). Every device holds
    # the replay and networks (replicated) but only its share of the batch
    devices = args.num_devices or len(jax.devices())
    activation_bytes = 2 if args.precision == "bf16" else 4
    activations = activation_bytes * 3 * args.batch_size * conv_activation_floats(args.channels) // devices
    parts = {
        "networks and optimiser": 4 * 4 * params,  # Q-network, target and two AdamW moments, float32
        "bf16 copies": 2 * 2 * params if args.precision == "bf16" else 0,  # Q-network and target, in an update
        "update activations": activations,
    }
    # the replay stores each 84x84 uint8 frame once; 4-frame stacks are rebuilt by indexing
    replay = replay_buffer_bytes(num_tasks, capacity)
    check_memory(replay, capacity, parts, 0.9, f"{num_tasks} games x {capacity} frames",
                 "fewer games, a smaller --batch-size or smaller --channels")  # fmt: skip


def restore_replay(path: Path, buffer: ReplayBuffer) -> ReplayBuffer:
    """A checkpoint's timelines back into `buffer`, oldest slot first (common/run.py restore_ring).
    The envs restart after a resume, so each saved timeline is cut where it stops: its newest
    slot becomes a final observation and the slot before it a truncation."""
    buffer = restore_ring(path, buffer)
    tasks, newest = np.arange(len(buffer.size)), np.asarray(buffer.size) - 1
    valid = buffer.valid.at[tasks, newest].set(False)
    last = np.maximum(newest - 1, 0)  # the last transition: it led to the newest observation
    cut = valid[tasks, last] & ~buffer.terminated[tasks, last]
    truncated = buffer.truncated.at[tasks, last].set(buffer.truncated[tasks, last] | cut)
    return buffer._replace(valid=valid, truncated=truncated)


class Run(RunDir):
    """The run directory (common/run.py: config, metrics, console, checkpoints and resume), and
    what this script adds: its evaluation record, with the IQM and videos."""

    @classmethod
    def open(cls, args: Args, tasks: list[TaskSpec]) -> "Run":
        name = f"{args.suite if not args.tasks else 'tasks'}__drq__s{args.seed}__{int(time.time())}"
        return super().open(args, name, RESUMABLE_FIELDS, args.total_steps, tasks)

    def evaluation(
        self, env_step: int, fns: AgentFns, state: TrainState, eval_env: "AtariGames", key, metrics
    ) -> None:
        """Evaluate (--capture-video: with the first games' frames); one metrics.jsonl record with
        the human-normalised mean and IQM, and one console line."""
        filmed = min(self.args.video_tasks, len(self.tasks)) if self.args.capture_video else 0
        results, frames = evaluate(fns, state, eval_env, self.tasks, self.args.eval_epsilon, key, filmed)
        iqm = interquartile_mean(np.array([r["score"] for r in results.values()]))
        record = self.record(env_step, results, metrics, iqm=iqm)
        if frames:
            record["videos"] = save_game_videos(frames, self.tasks, self.dir / "videos", env_step)
        self.log_evaluation(record, f"eval step {env_step}: human-normalised mean {record['mean_score']:.3f}, "
                            f"IQM {record['iqm']:.3f}", decimals=0)  # fmt: skip


if __name__ == "__main__":
    # --resume RUN_DIR alone: its config.json gives the rest; bad input is one line, exit 2
    run_main(main, parse_args(Args), (ConfigError, FloatingPointError))
