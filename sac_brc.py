"""SAC + BRC: online multi-task continuous control with a big categorical BroNet critic.

Implements "Bigger, Regularized, Categorical: High-Capacity Value Functions are
Efficient Multi-Task Learners" (Nauman et al., 2025), Section 3 and Appendix C:
SAC without clipped double Q, an ensemble of two BroNet critics trained by
cross-entropy TD on a fixed categorical support, per-task return normalisation,
and learnable task embeddings read by the actor. Defaults are paper Appendix F.

    python sac_brc.py --suite mw --width 4096          # MT50, the paper's setting (GPU)
    python sac_brc.py --suite dmc-easy --width 256 --total-steps 20000   # laptop CPU

Where the paper text and the authors' code (ref. code) differ, this follows the code
and says so next to the line.

The file, in reading order (section headers `# ---- name`); the method comes first:
    Args                   the flags (with EnvArgs and RunArgs: common/envs.py, common/run.py)
    networks, replay buffer, return normalisation, agent
                           BroNet critics with task embeddings and actor; per-task ring buffers on
                           the device; G_i and the reward scale (paper eq. 2-4); TrainState
    the update             td_target, critic_loss, actor_loss, temperature_loss, update_once,
                           then make_agent, which only jits and shards them
    main                   the training loop, one call per feature
    ==== run harness       not needed to learn the method: the paper's multi-task diagnostics,
                           model and data transfer, validation and the memory plan, and `Run`:
                           evaluation records and checkpoint contents on common/run.py
"""

import dataclasses
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
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from common.bronet import BroNet, Linear, bronet_macs, count_parameters, make_ensemble, orthogonal_linear
from common.categorical import categorical_projection, cross_entropy, make_support
from common.cli import own_flags_first, parse_args
from common.dataset import DatasetError, DatasetWriter, make_metadata
from common.diagnostics import diagnostics_record, multitask_diagnostics
from common.envs import (
    EnvArgs, EnvError, MultiTaskEnv, eval_envs_and_episodes, evaluate_policy, require_packages, with_shadowhand_assets,
)  # fmt: skip
from common.run import (
    ConfigError, EpisodeReturns, RunArgs, RunDir, check_batch_split, check_discount_and_tau, check_memory,
    check_nonnegative, check_positive, check_run_args, make_mesh, ring_arrays, run_main,
)  # fmt: skip
from common.suites import CONTINUOUS, TaskSpec, resolve_tasks, score_meaning
from common.transfer import Pretrained, Transfer, load_pretrained_state, prior_data, read_transfer
from common.video import VideoRecorder


@own_flags_first
@dataclass
class Args(EnvArgs, RunArgs):
    suite: str = "mw"
    """suite to train on (paper Appendix E; docs/suites.md): mw (MT50), dmc-dogs, dmc-humanoids, dmc-hard, hb-medium, hb-hard (HumanoidBench, installed separately: README), mw-dmc (MT80), sh (ShadowHand's 85 shapes, assets from the authors' repository: README); transfer splits mw-transfer-train, mw-transfer-test, hb-medium-transfer-train, hb-medium-transfer-test, hb-hard-transfer-test, sh-transfer-test; Figure 10 subsets hb-medium-subset3, hb-medium-subset6; quick: mw-easy, dmc-easy; or one task name (e.g. cheetah-run, sh-cube; sh-block runs without the assets)"""
    tasks: tuple[str, ...] = ()
    """explicit task list (comma- or space-separated, e.g. `reach,cheetah-run`); overrides --suite"""
    seed: int = 0
    """seed of the networks, the replay sampling and the environments"""
    total_steps: int = 1_000_000
    """environment steps per task (all tasks step in lockstep)"""
    learning_starts: int = 5_000
    """steps of uniform random actions before the first update"""

    # networks (paper Appendix F, Table 3)
    width: int = 4096
    """critic BroNet width"""
    depth: int = 2
    """critic BroNet residual blocks"""
    actor_width: int = 256
    """actor BroNet width"""
    actor_depth: int = 1
    """actor BroNet residual blocks"""
    embedding_dim: int = 32
    """task embedding size (multi-task with --task-conditioning embedding)"""
    num_atoms: int = 101
    """atoms of the categorical critic"""
    v_max: float = 10.0
    """support is [-v_max, v_max]"""

    # learning (paper Appendix F, Table 3)
    utd: int = 2
    """gradient updates per environment step"""
    batch_size: int | None = None
    """minibatch size; default 1024 multi-task, 256 single-task"""
    buffer_size: int = 1_000_000
    """replay capacity per task"""
    learning_rate: float = 3e-4
    """AdamW learning rate of actor and critic"""
    weight_decay: float = 1e-4
    """AdamW weight decay of actor and critic"""
    temperature_learning_rate: float = 3e-4
    """Adam learning rate of log(alpha)"""
    init_temperature: float = 0.1
    """initial entropy temperature alpha"""
    gamma: float = 0.99
    """discount"""
    tau: float = 5e-3
    """Polyak rate of the target critic, applied after every critic update"""

    # ablations (paper Figures 5 and 6)
    loss: Literal["ce", "mse"] = "ce"
    """critic loss: categorical cross-entropy (BRC) or mean squared TD error"""
    task_conditioning: Literal["embedding", "heads"] = "embedding"
    """multi-task conditioning: learned task embeddings (BRC) or one output head per task"""

    # environments, evaluation, logging
    eval_interval: int = 25_000
    """steps between evaluations (the published curves use 25k)"""
    checkpoint_replay: bool = True
    """save the replay buffer with each checkpoint so that --resume continues exactly"""
    capture_video: bool = False
    """at each evaluation, film one deterministic episode of each of the first --video-tasks tasks into runs/<run>/videos/<task>_step<N>.mp4 (headless: EGL or OSMesa, docs/sac_brc.md: Videos)"""
    video_tasks: int = 3
    """how many tasks --capture-video films, in the suite's order"""
    diagnostics: bool = False
    """at each evaluation, log the paper's multi-task diagnostics (Figures 3, 5, 7) and a PCA plot of the task embeddings (docs/plots-and-diagnostics.md)"""
    diagnostics_batch_size: int = 256
    """transitions per task sampled from the replay buffer for --diagnostics"""
    save_buffer: str | None = None
    """folder to record every stored transition in (docs/dataset-format.md), for offline_brc_bc.py and transfer"""

    # transfer (paper Section 4, "Transfer learning"; docs/transfer.md)
    init_from: str | None = None
    """model transfer: start from this multi-task run's (or checkpoint folder's) actor, critic and temperature, with fresh task embeddings; network flags must match (docs/transfer.md)"""
    transfer_temperature: Literal["pretrained", "reset"] = "pretrained"
    """model transfer: keep the checkpoint's entropy temperature (the critic's soft values were learned at it) or reset it to --init-temperature"""
    init_buffer: str | None = None
    """data transfer (Ball et al. 2023): half of every minibatch from this --save-buffer dataset (or the run that wrote one), half from the run's own replay (docs/transfer.md)"""
    init_buffer_per_task: int | None = None
    """data transfer: keep a uniformly random subset of at most this many transitions per pretraining task (default all; a dataset that does not fit is refused with the size that does)"""

    # speed and scale (do not change the method; see docs/performance.md)
    precision: Literal["f32", "bf16"] = "f32"
    """critic matmuls and activations in float32 or bfloat16 (float32 master weights, loss and softmax)"""
    overlap: bool = True
    """step the environments while the device runs the update; the update then samples from the buffer, and uses G_i, as they were before the newest transition"""


# Fields that may change when resuming (besides RunArgs'); every other field must match the checkpoint.
RESUMABLE_FIELDS = {"total_steps", "eval_interval", "checkpoint_replay", "overlap", "env_workers",
                    "shadowhand_assets", "capture_video", "video_tasks", "diagnostics", "diagnostics_batch_size"}  # fmt: skip

# Actor log-std squashing range (ref. code).
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


# ---------------------------------------------------------------- networks


def uses_task_embedding(args: Args, num_tasks: int) -> bool:
    """Embedding conditioning in multi-task runs, and in a model-transfer learner (--init-from),
    which keeps the pretrained network's embedding input even with one task."""
    return args.task_conditioning == "embedding" and (num_tasks > 1 or args.init_from is not None)


class CriticMember(eqx.Module):
    """One critic: BroNet trunk and a linear head to `num_atoms` logits (or 1 value for MSE)."""

    trunk: BroNet
    head: Linear

    def __init__(self, in_features: int, width: int, depth: int, num_outputs: int, key):
        trunk_key, head_key = jax.random.split(key)
        self.trunk = BroNet(in_features, width, depth, trunk_key)
        self.head = orthogonal_linear(width, num_outputs, math.sqrt(2), head_key)

    def __call__(self, x: Float[Array, " in_features"]) -> Float[Array, " outputs"]:
        return self.head(self.trunk(x))


class Critic(eqx.Module):
    """Ensemble of two critics (stacked parameters) and the task embedding table.

    The embedding lives with the critic and is trained only by the TD loss (paper C.4);
    each row is divided by its L2 norm before use (ref. code; the paper says L1).
    """

    members: CriticMember
    task_embedding: Float[Array, "tasks embedding"] | None
    num_tasks: int = eqx.field(static=True)
    num_outputs: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)  # one output head per task (--task-conditioning heads)

    def __init__(self, obs_dim, act_dim, num_tasks, args: Args, key):
        member_key, embedding_key = jax.random.split(key)
        use_embedding = uses_task_embedding(args, num_tasks)
        self.num_heads = num_tasks if (num_tasks > 1 and args.task_conditioning == "heads") else 1
        self.num_tasks = num_tasks
        self.num_outputs = args.num_atoms if args.loss == "ce" else 1
        in_features = obs_dim + act_dim + (args.embedding_dim if use_embedding else 0)
        out_features = self.num_outputs * self.num_heads
        self.members = make_ensemble(
            lambda k: CriticMember(in_features, args.width, args.depth, out_features, k),
            2,
            member_key,
        )
        # flax nn.Embed's default init, N(0, 1/embedding_dim) (ref. code)
        self.task_embedding = (
            jax.random.normal(embedding_key, (num_tasks, args.embedding_dim)) / math.sqrt(args.embedding_dim)
            if use_embedding
            else None
        )

    def embed(self, task_id: Int[Array, ""]) -> Float[Array, " embedding"]:
        if self.task_embedding is None:
            return jnp.zeros((0,))
        embedding = self.task_embedding[task_id]
        return embedding / jnp.linalg.norm(embedding)

    def __call__(
        self, obs: Float[Array, "batch obs"], action: Float[Array, "batch act"], task_id: Int[Array, " batch"]
    ) -> Float[Array, "batch 2 outputs"]:
        """Both critics on a batch. The members are the outer vmap, so each member's layers
        are plain (batch x width) matmuls: 1.7x faster on CPU than vmapping a per-sample
        ensemble over the batch, which interleaves the member axis into every matmul. Each
        member gets its own copy of the input: with one shared input the first matmul comes out
        batch-major, and XLA's CPU backend then copies every activation of the network into
        member-major order (1.19x slower on CPU at batch 1024)."""
        x = jnp.concatenate([obs, action, jax.vmap(self.embed)(task_id)], axis=-1)
        # members cast to bfloat16 by `precision_view` (--precision bf16) run in bfloat16; the
        # input is copied per member, not broadcast: JAX 0.10.2's CPU backend miscomputes the
        # per-task gradients of --diagnostics (common/diagnostics.py) through a broadcast here
        x = jnp.stack([x.astype(self.members.head.weight.dtype)] * 2)
        out = eqx.filter_vmap(lambda member, x: jax.vmap(member)(x))(self.members, x)
        # logits leave in at least float32 for the softmax and the loss (float64 under x64)
        out = out.astype(jnp.promote_types(out.dtype, jnp.float32))
        if self.num_heads > 1:  # one output head per task (paper Figure 5 ablation)
            out = out.reshape(2, len(task_id), self.num_tasks, self.num_outputs)
            out = out[:, jnp.arange(len(task_id)), task_id]
        return out.transpose(1, 0, 2)


class Actor(eqx.Module):
    """tanh-Gaussian policy: BroNet (width 256, one block) with mean and log-std heads."""

    trunk: BroNet
    mean_head: Linear
    log_std_head: Linear
    num_heads: int = eqx.field(static=True)
    act_dim: int = eqx.field(static=True)

    def __init__(self, obs_dim, act_dim, num_tasks, embedding_dim, args: Args, key):
        trunk_key, mean_key, log_std_key = jax.random.split(key, 3)
        self.num_heads = num_tasks if (num_tasks > 1 and args.task_conditioning == "heads") else 1
        self.act_dim = act_dim
        self.trunk = BroNet(obs_dim + embedding_dim, args.actor_width, args.actor_depth, trunk_key)
        out = act_dim * self.num_heads
        self.mean_head = orthogonal_linear(args.actor_width, out, math.sqrt(2), mean_key)
        self.log_std_head = orthogonal_linear(args.actor_width, out, 1.0, log_std_key)  # ref. code

    def __call__(
        self, obs: Float[Array, " obs"], embedding: Float[Array, " embedding"], task_id
    ) -> tuple[Float[Array, " act"], Float[Array, " act"]]:
        h = self.trunk(jnp.concatenate([obs, embedding]))
        mean, log_std = self.mean_head(h), self.log_std_head(h)
        if self.num_heads > 1:
            mean = mean.reshape(self.num_heads, self.act_dim)[task_id]
            log_std = log_std.reshape(self.num_heads, self.act_dim)[task_id]
        # squash into [LOG_STD_MIN, LOG_STD_MAX] (ref. code)
        log_std = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * 0.5 * (1.0 + jnp.tanh(log_std))
        return mean, log_std


def sample_tanh_gaussian(
    mean: Float[Array, " act"], log_std: Float[Array, " act"], noise: Float[Array, " act"]
) -> tuple[Float[Array, " act"], Float[Array, ""]]:
    """Reparameterised sample of tanh(N(mean, std)) from standard-normal `noise`, and its
    log-probability. The noise is an argument so that an update is a function of its inputs."""
    u = mean + jnp.exp(log_std) * noise
    gaussian_log_prob = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    # log(1 - tanh(u)^2), written stably
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(gaussian_log_prob - log_det)


# ---------------------------------------------------------------- replay buffer


class ReplayBuffer(NamedTuple):
    """Fixed-size device arrays `(tasks, capacity, ...)`, one ring buffer per task."""

    obs: Float[Array, "tasks capacity obs"]
    action: Float[Array, "tasks capacity act"]
    reward: Float[Array, "tasks capacity"]
    next_obs: Float[Array, "tasks capacity obs"]
    terminated: Float[Array, "tasks capacity"]
    position: Int[Array, " tasks"]
    size: Int[Array, " tasks"]


def replay_buffer_init(num_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> ReplayBuffer:
    zeros = lambda *shape: jnp.zeros((num_tasks, capacity, *shape), jnp.float32)
    position, size = jnp.zeros(num_tasks, jnp.int32), jnp.zeros(num_tasks, jnp.int32)
    return ReplayBuffer(zeros(obs_dim), zeros(act_dim), zeros(), zeros(obs_dim), zeros(), position, size)


def replay_buffer_bytes(num_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> int:
    return 4 * num_tasks * capacity * (2 * obs_dim + act_dim + 2)


def insert(
    buffer: ReplayBuffer,
    obs: Float[Array, "tasks obs"],
    action: Float[Array, "tasks act"],
    reward: Float[Array, " tasks"],
    next_obs: Float[Array, "tasks obs"],
    terminated: Bool[Array, " tasks"],
) -> ReplayBuffer:
    """Write one transition per task (every env step is a real transition: common/envs.py)."""
    tasks, slot = jnp.arange(obs.shape[0]), buffer.position
    put = lambda storage, value: storage.at[tasks, slot].set(value)
    capacity = buffer.obs.shape[1]
    return ReplayBuffer(
        put(buffer.obs, obs),
        put(buffer.action, action),
        put(buffer.reward, reward),
        put(buffer.next_obs, next_obs),
        put(buffer.terminated, terminated.astype(jnp.float32)),
        (slot + 1) % capacity,
        jnp.minimum(buffer.size + 1, capacity),
    )


class Batch(NamedTuple):
    task: Int[Array, " batch"]
    obs: Float[Array, "batch obs"]
    action: Float[Array, "batch act"]
    reward: Float[Array, " batch"]
    next_obs: Float[Array, "batch obs"]
    terminated: Float[Array, " batch"]
    # the row of `max_abs_return` whose G scales the reward: `task` for the run's own data;
    # for data transfer's prior rows, num_tasks + the pretraining task the transition came from
    reward_task: Int[Array, " batch"]


class Noise(NamedTuple):
    """The standard-normal draws of one update's two reparameterised actions."""

    next_action: Float[Array, "batch act"]  # a' ~ pi(.|s') in the TD target
    action: Float[Array, "batch act"]  # a ~ pi(.|s) in the actor loss


def sample_noise(batch_size: int, act_dim: int, key: PRNGKeyArray) -> Noise:
    next_key, action_key = jax.random.split(key)
    shape = (batch_size, act_dim)
    return Noise(jax.random.normal(next_key, shape), jax.random.normal(action_key, shape))


def gather(buffer: ReplayBuffer, task: Int[Array, " batch"], index: Int[Array, " batch"]) -> Batch:
    return Batch(task, buffer.obs[task, index], buffer.action[task, index], buffer.reward[task, index],
                 buffer.next_obs[task, index], buffer.terminated[task, index], task)  # fmt: skip


def sample(buffer: ReplayBuffer, batch_size: int, key: PRNGKeyArray) -> Batch:
    """(task, index) uniformly: each task is equally represented in expectation."""
    task_key, index_key = jax.random.split(key)
    task = jax.random.randint(task_key, (batch_size,), 0, buffer.obs.shape[0])
    index = jnp.floor(jax.random.uniform(index_key, (batch_size,)) * buffer.size[task]).astype(jnp.int32)
    return gather(buffer, task, index)


class PriorData(NamedTuple):
    """Data transfer: the pretraining transitions in a buffer of their own, shared by the new
    tasks and never overwritten (device arrays, zero-padded to this run's sizes)."""

    obs: Float[Array, "prior obs"]
    action: Float[Array, "prior act"]
    reward: Float[Array, " prior"]
    next_obs: Float[Array, "prior obs"]
    terminated: Float[Array, " prior"]
    source: Int[Array, " prior"]  # the pretraining task each transition came from


def sample_symmetric(buffer: ReplayBuffer, prior: PriorData, batch_size: int, key: PRNGKeyArray) -> Batch:
    """Data transfer after Ball et al. (2023), symmetric sampling: half of every minibatch from
    the prior data (uniform over its transitions), half from the run's replay (`sample`, which
    needs one stored transition per task). A prior row is assigned a uniformly random new task,
    as if it had been stored in that task's buffer. The halves are interleaved (as their code's
    `combine`), so every device's shard of the batch is half prior too."""
    online_key, index_key, task_key = jax.random.split(key, 3)
    num_prior, num_tasks = batch_size // 2, buffer.obs.shape[0]
    online = sample(buffer, batch_size - num_prior, online_key)
    index = jax.random.randint(index_key, (num_prior,), 0, prior.reward.shape[0])
    offline = Batch(
        jax.random.randint(task_key, (num_prior,), 0, num_tasks),
        prior.obs[index],
        prior.action[index],
        prior.reward[index],
        prior.next_obs[index],
        prior.terminated[index],
        num_tasks + prior.source[index],
    )
    # rows 0, 2, 4, ... online, 1, 3, ... prior (an odd batch has one more online row, at the end)
    interleave = lambda a, b: jnp.concatenate(
        [jnp.stack([a[: len(b)], b], axis=1).reshape(-1, *a.shape[1:]), a[len(b) :]]
    )
    return jax.tree.map(interleave, online, offline)


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
    """Per-task G_i: the largest absolute discounted return seen so far (paper eq. 2).

    Rewards are scaled by `v_max / (G_i + lambda_i)` when a batch is sampled (eq. 3);
    lambda_i is added inside the update because it depends on the current alpha.
    Start-up: before task i's first episode has ended, its episode so far is treated
    as a truncated episode, so G_i is finite as soon as the task has one reward and the
    scale never divides by infinity (ref. code: rewards are zeroed until then).
    """

    def __init__(self, num_tasks: int, gamma: float):
        self.gamma = gamma
        self.max_abs_return = np.zeros(num_tasks)
        self.episode_ended = np.zeros(num_tasks, bool)
        self.current_rewards: list[list[float]] = [[] for _ in range(num_tasks)]

    def add(self, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray):
        """One step of every task."""
        for i in range(len(reward)):
            self.current_rewards[i].append(float(reward[i]))
            if terminated[i] or truncated[i]:
                self._end_episode(i, truncated=not terminated[i])

    def _end_episode(self, i: int, truncated: bool) -> None:
        returns = discounted_returns(np.array(self.current_rewards[i]), self.gamma, truncated)
        self.max_abs_return[i] = max(self.max_abs_return[i], np.abs(returns).max())
        self.episode_ended[i] = True
        self.current_rewards[i] = []

    def truncate_all(self) -> None:
        """End every running episode as truncated (on resume, where the envs start afresh: without
        this, the next episode's rewards would join the cut one's and G_i span both)."""
        for i, rewards in enumerate(self.current_rewards):
            if rewards:
                self._end_episode(i, truncated=True)

    def g(self) -> np.ndarray:
        """G_i per task (with the start-up rule), float32, for the update's reward scale."""
        g = self.max_abs_return.copy()
        for i in np.flatnonzero(~self.episode_ended):
            if self.current_rewards[i]:
                partial = discounted_returns(np.array(self.current_rewards[i]), self.gamma, True)
                g[i] = np.abs(partial).max()
        return g.astype(np.float32)

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


def categorical_td_target(
    reward: Float[Array, " batch"],
    mask: Float[Array, " batch"],
    next_log_prob: Float[Array, " batch"],
    target_logits: Float[Array, "batch 2 atoms"],
    alpha: Float[Array, ""],
    gamma: float,
    support: Float[Array, " atoms"],
) -> Float[Array, "batch atoms"]:
    """Soft distributional TD target (paper C.2), projected onto the support.

    SAC without clipped double Q: the next-state distribution is the mean of both target
    critics' probabilities (not the minimum); each atom becomes
    `r + gamma * mask * (z - alpha * log_pi(a'|s'))`.
    """
    target_probs = jax.nn.softmax(target_logits, axis=-1).mean(axis=1)
    target_atoms = reward[:, None] + gamma * mask[:, None] * (
        support[None, :] - alpha * next_log_prob[:, None]
    )
    return jax.vmap(categorical_projection, in_axes=(0, 0, None))(target_atoms, target_probs, support)


def reward_scale(
    max_abs_return: Float[Array, " tasks"], alpha: Float[Array, ""], act_dim: int, gamma: float, v_max: float
) -> Float[Array, " tasks"]:
    """Paper eq. 3-4: rewards are multiplied by `v_max / (G_i + lambda_i)`, where
    `lambda_i = alpha * H_i / (1 - gamma)` and `H_i = |A| / 4` (ref. code: the magnitude of
    half the target entropy, with |A| the padded action size)."""
    entropy_correction = alpha * (act_dim / 4) / (1 - gamma)
    return v_max / (max_abs_return + entropy_correction)


# ---------------------------------------------------------------- agent


class TrainState(eqx.Module):
    actor: Actor
    critic: Critic
    target_critic: Critic
    log_alpha: Float[Array, ""]
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: Int[Array, ""]  # updates done so far (keys are folded with it)


class AgentFns(NamedTuple):
    """The jitted entry points, each traced once per run (a retrace is a silent slowdown), and
    `replicate`, which puts a pytree (the replay buffer, a restored state) on the devices,
    replicated."""

    act: callable
    act_deterministic: callable
    insert: callable
    update: callable
    update_on: callable  # update on given minibatches and noise (tests, benchmarks/one_update_check.py)
    replicate: callable


def precision_view(critic: Critic, precision: str) -> Critic:
    """The critic as its matmuls see it: with `bf16`, the members' parameters cast to
    bfloat16. The cast is differentiable, so gradients reach the float32 master weights."""
    if precision == "f32":
        return critic
    to_bf16 = lambda p: p.astype(jnp.bfloat16) if eqx.is_inexact_array(p) else p
    return eqx.tree_at(lambda c: c.members, critic, jax.tree.map(to_bf16, critic.members))


def resolve_batch_size(args: Args, num_tasks: int) -> int:
    """--batch-size, else 1024 multi-task and 256 single-task (as the ref. code's train.py)."""
    return args.batch_size or (1024 if num_tasks > 1 else 256)


class Optimizers(NamedTuple):
    actor: optax.GradientTransformation
    critic: optax.GradientTransformation
    temperature: optax.GradientTransformation


def make_optimizers(args: Args) -> Optimizers:
    return Optimizers(
        optax.adamw(args.learning_rate, weight_decay=args.weight_decay),
        optax.adamw(args.learning_rate, weight_decay=args.weight_decay),
        optax.adam(args.temperature_learning_rate, b1=0.5),  # ref. code
    )


def init_state(
    actor_key: PRNGKeyArray,
    critic_key: PRNGKeyArray,
    *,
    args: Args,
    num_tasks: int,
    obs_dim: int,
    act_dim: int,
    optimizers: Optimizers,
) -> TrainState:
    critic = Critic(obs_dim, act_dim, num_tasks, args, critic_key)
    embedding_dim = 0 if critic.task_embedding is None else args.embedding_dim
    actor = Actor(obs_dim, act_dim, num_tasks, embedding_dim, args, actor_key)
    log_alpha = jnp.log(jnp.asarray(args.init_temperature, jnp.float32))
    return TrainState(
        actor,
        critic,
        critic,  # the target starts identical to the critic
        log_alpha,
        optimizers.actor.init(eqx.filter(actor, eqx.is_inexact_array)),
        optimizers.critic.init(eqx.filter(critic, eqx.is_inexact_array)),
        optimizers.temperature.init(log_alpha),
        jnp.zeros((), jnp.int32),
    )


# ---------------------------------------------------------------- the update (paper Appendix C.2)
# Pure functions of the state, a minibatch and its noise; `args` and `support` are constants
# of the run. make_agent below only jits and shards them; the diagnostics reuse them.


def policy(state: TrainState, obs: Float[Array, " obs"], task_id: Int[Array, ""]):
    """pi(.|s, task): the actor reads the critic's task embedding, with no gradient to it."""
    embedding = state.critic.embed(task_id)
    return state.actor(obs, jax.lax.stop_gradient(embedding), task_id)


def td_target(
    state: TrainState,
    batch: Batch,
    reward: Float[Array, " batch"],
    next_noise: Float[Array, "batch act"],
    args: Args,
    support: Float[Array, " atoms"],
) -> Float[Array, "batch atoms"] | Float[Array, " batch"]:
    """The soft TD target of (already scaled) rewards: next action from the current actor,
    next-state value from the target critics. ce: projected probabilities; mse: scalars."""
    alpha = jnp.exp(state.log_alpha)
    mask = 1.0 - batch.terminated  # a time-limit truncation bootstraps
    next_mean, next_log_std = jax.vmap(policy, in_axes=(None, 0, 0))(state, batch.next_obs, batch.task)
    next_action, next_log_prob = jax.vmap(sample_tanh_gaussian)(next_mean, next_log_std, next_noise)
    target_out = precision_view(state.target_critic, args.precision)(batch.next_obs, next_action, batch.task)
    if args.loss == "ce":
        target = categorical_td_target(reward, mask, next_log_prob, target_out, alpha, args.gamma, support)
    else:  # mean of both target critics, as the ce target's mean of probabilities
        target = reward + args.gamma * mask * (target_out[..., 0].mean(axis=1) - alpha * next_log_prob)
    return jax.lax.stop_gradient(target)


def critic_losses(critic: Critic, batch: Batch, target, args: Args) -> Float[Array, "batch members"]:
    """Per sample and ensemble member: cross-entropy to the projected target (ce) or the
    squared TD error (mse)."""
    out = precision_view(critic, args.precision)(batch.obs, batch.action, batch.task)
    if args.loss == "ce":
        return jax.vmap(jax.vmap(cross_entropy, in_axes=(None, 0)))(target, out)
    return (out[..., 0] - target[:, None]) ** 2


def critic_loss(critic: Critic, batch: Batch, target, args: Args) -> Float[Array, ""]:
    """Mean over the batch, sum over the ensemble."""
    return critic_losses(critic, batch, target, args).mean(axis=0).sum()


def actor_loss(
    actor: Actor,
    critic: Critic,
    batch: Batch,
    noise: Float[Array, "batch act"],
    alpha: Float[Array, ""],
    args: Args,
    support: Float[Array, " atoms"],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """alpha * log pi(a|s) - Q(s, a), Q under the mean of both critics' distributions; and the
    policy entropy estimate -E[log pi] for the temperature."""
    embedding = jax.lax.stop_gradient(jax.vmap(critic.embed)(batch.task))
    mean, log_std = jax.vmap(actor)(batch.obs, embedding, batch.task)
    action, log_prob = jax.vmap(sample_tanh_gaussian)(mean, log_std, noise)
    out = precision_view(critic, args.precision)(batch.obs, action, batch.task)
    if args.loss == "ce":
        q = jnp.sum(jax.nn.softmax(out, axis=-1).mean(axis=1) * support, axis=-1)
    else:
        q = out[..., 0].mean(axis=1)
    return jnp.mean(alpha * log_prob - q), -jnp.mean(log_prob)


def temperature_loss(log_alpha: Float[Array, ""], entropy: Float[Array, ""], act_dim: int) -> Float[Array, ""]:
    """alpha * (entropy - target entropy), target -|A| / 2 (ref. code; the paper's table omits
    the sign), |A| the padded action size."""
    return jnp.exp(log_alpha) * (entropy - (-act_dim / 2))


def update_once(
    state: TrainState,
    scale: Float[Array, " normalizers"],
    batch: Batch,
    noise: Noise,
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizers: Optimizers,
) -> tuple[TrainState, dict]:
    """One gradient step of the critic, its target, the actor and the temperature."""
    reward = batch.reward * scale[batch.reward_task]  # paper eq. 3

    # critic: cross-entropy (or squared error) to the soft TD target
    target = td_target(state, batch, reward, noise.next_action, args, support)
    loss_c, critic_grads = eqx.filter_value_and_grad(critic_loss)(state.critic, batch, target, args)
    updates, critic_opt_state = optimizers.critic.update(
        critic_grads, state.critic_opt_state, eqx.filter(state.critic, eqx.is_inexact_array)
    )
    critic = eqx.apply_updates(state.critic, updates)

    # target critic: Polyak after every critic update
    online, _ = eqx.partition(critic, eqx.is_inexact_array)
    target_params, static = eqx.partition(state.target_critic, eqx.is_inexact_array)
    target_params = jax.tree.map(lambda t, o: (1 - args.tau) * t + args.tau * o, target_params, online)
    target_critic = eqx.combine(target_params, static)

    # actor: against the updated critic
    alpha = jnp.exp(state.log_alpha)
    (loss_a, entropy), actor_grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.actor, critic, batch, noise.action, alpha, args, support
    )
    updates, actor_opt_state = optimizers.actor.update(
        actor_grads, state.actor_opt_state, eqx.filter(state.actor, eqx.is_inexact_array)
    )
    actor = eqx.apply_updates(state.actor, updates)

    # temperature, on log(alpha)
    alpha_grad = jax.grad(temperature_loss)(state.log_alpha, entropy, batch.action.shape[-1])
    updates, alpha_opt_state = optimizers.temperature.update(alpha_grad, state.alpha_opt_state)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    new_state = TrainState(actor, critic, target_critic, log_alpha, actor_opt_state, critic_opt_state,
                           alpha_opt_state, state.step + 1)  # fmt: skip
    metrics = {"critic_loss": loss_c, "actor_loss": loss_a, "entropy": entropy, "temperature": jnp.exp(log_alpha)}
    return new_state, metrics


def update_on(
    state: TrainState,
    batches: Batch,
    noises: Noise,
    max_abs_return: Float[Array, " normalizers"],
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizers: Optimizers,
) -> tuple[TrainState, dict]:
    """One gradient update per minibatch of `batches` (stacked on axis 0), as one lax.scan."""
    # reward scale of paper eq. 3, with lambda from the alpha at the start of the step (ref. code)
    act_dim = batches.action.shape[-1]
    scale = reward_scale(max_abs_return, jnp.exp(state.log_alpha), act_dim, args.gamma, args.v_max)
    step = partial(update_once, args=args, support=support, optimizers=optimizers)
    state, metrics = jax.lax.scan(lambda s, bn: step(s, scale, *bn), state, (batches, noises))
    return state, jax.tree.map(jnp.mean, metrics)


def make_agent(
    args: Args, num_tasks: int, obs_dim: int, act_dim: int, batch_size: int, key: PRNGKeyArray
) -> tuple[TrainState, AgentFns]:
    """Initial TrainState and the jitted, sharded entry points for one configuration."""
    support = make_support(args.num_atoms, args.v_max)
    optimizers = make_optimizers(args)
    constants = {"args": args, "support": support, "optimizers": optimizers}

    # data parallel: every device holds the parameters, optimiser states and replay buffer;
    # each minibatch is split across devices and XLA all-reduces the gradients
    mesh = make_mesh(args.num_devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    # stacked minibatches (updates, batch, ...): each minibatch split across devices
    batch_sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "batch"))
    init = partial(init_state, args=args, num_tasks=num_tasks, obs_dim=obs_dim, act_dim=act_dim,
                   optimizers=optimizers)  # fmt: skip
    state = jax.jit(init, out_shardings=replicated)(*jax.random.split(key))

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def act(
        state: TrainState, obs: Float[Array, "envs obs"], task_ids: Int[Array, " envs"], key: PRNGKeyArray
    ) -> Float[Array, "envs act"]:
        mean, log_std = jax.vmap(policy, in_axes=(None, 0, 0))(state, obs, task_ids)
        return jax.vmap(sample_tanh_gaussian)(mean, log_std, jax.random.normal(key, mean.shape))[0]

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def act_deterministic(
        state: TrainState, obs: Float[Array, "envs obs"], task_ids: Int[Array, " envs"]
    ) -> Float[Array, "envs act"]:
        mean, _ = jax.vmap(policy, in_axes=(None, 0, 0))(state, obs, task_ids)
        return jnp.tanh(mean)

    def sharded_update_on(state, batches, noises, max_abs_return):
        batches = jax.lax.with_sharding_constraint(batches, batch_sharded)
        return update_on(state, batches, noises, max_abs_return, **constants)

    # the state is donated: XLA writes the new parameters, target and Adam moments into the
    # buffers of the old ones instead of allocating (and, in the UTD scan, copying) ~4x the
    # critic's size per call; the caller must not use the state it passed in again
    @partial(jax.jit, donate_argnums=0)
    @eqx.debug.assert_max_traces(max_traces=1)
    def update(
        state: TrainState,
        buffer: ReplayBuffer,
        max_abs_return: Float[Array, " normalizers"],
        key: PRNGKeyArray,
        prior: PriorData | None = None,
    ) -> tuple[TrainState, dict]:
        """`utd` gradient updates, each on its own uniformly sampled minibatch and noise; with
        `prior` (data transfer), each minibatch half prior, half online (`sample_symmetric`), and
        `max_abs_return` holds the new tasks' G, then the pretraining tasks'."""
        keys = jax.random.split(jax.random.fold_in(key, state.step), (args.utd, 2))
        if prior is None:
            draw = lambda k: sample(buffer, batch_size, k)
        else:
            draw = lambda k: sample_symmetric(buffer, prior, batch_size, k)
        batches = jax.vmap(draw)(keys[:, 0])
        noises = jax.vmap(lambda k: sample_noise(batch_size, act_dim, k))(keys[:, 1])
        return sharded_update_on(state, batches, noises, max_abs_return)

    fns = AgentFns(
        act,
        act_deterministic,
        jax.jit(eqx.debug.assert_max_traces(insert, max_traces=1), donate_argnums=0),
        update,
        jax.jit(sharded_update_on),
        lambda tree: jax.device_put(tree, replicated),
    )
    return state, fns


# ---------------------------------------------------------------- main


def main(args: Args) -> None:
    args, tasks = validate(args)
    num_tasks, batch_size = len(tasks), resolve_batch_size(args, len(tasks))
    transfer = read_transfer(dataclasses.asdict(args), tasks, dataclasses.asdict(Args()))  # and padded sizes
    obs_dim, act_dim = transfer.obs_dim, transfer.act_dim
    capacity = min(args.buffer_size, args.total_steps)  # a buffer never larger than the run
    run = Run.open(args, tasks)  # a new run directory, or --resume's after checking its config
    init_key, act_key, update_key, diagnostics_key = jax.random.split(jax.random.key(args.seed), 4)
    print_plan(args, tasks, capacity, batch_size, transfer, init_key)  # before compiling: refuses what cannot fit
    run.create()

    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, batch_size, init_key)
    buffer = replay_buffer_init(num_tasks, capacity, obs_dim, act_dim)
    if transfer.pretrained is not None and not run.resumed:  # model transfer (a resumed run has its own state)
        state = init_from_checkpoint(transfer.pretrained, state, args)
    prior, prior_g = prior_data(transfer)  # data transfer: the padded pretraining data, each pretraining task's G
    prior_buffer = None if prior is None else fns.replicate(PriorData(*prior))
    del transfer, prior  # the host copy (on a CPU backend the device copy is host memory too)
    state, buffer = fns.replicate((state, buffer))
    normalizer = ReturnNormalizer(num_tasks, args.gamma)
    max_abs_return = lambda: jnp.asarray(np.concatenate([normalizer.g(), prior_g]))  # G per reward_task
    env_step, collect_until, rng = 0, 0, np.random.default_rng(args.seed)
    if run.resumed:  # the step, normaliser, action key and numpy stream the checkpoint was written with
        state, buffer, env_step, act_key, collect_until = run.resume(state, buffer, fns.replicate, normalizer, rng)
    print(f"run directory: {run.dir}; batch {batch_size}, replay capacity {capacity} per task")
    recorder = run.open_recorder(env_step)  # --save-buffer, else None
    diagnose = make_diagnostics(args, num_tasks, act_dim) if args.diagnostics else None
    task_ids = jnp.asarray(np.arange(num_tasks, dtype=np.int32))  # one env per task
    stored = int(np.asarray(buffer.size).min())  # transitions per task in the replay (restored on resume)
    returns, metrics = EpisodeReturns(num_tasks), None
    with run.started(env_step):  # clocks, wandb, checkpoints on SIGTERM/Ctrl-C; closes the envs at the end
        env = run.open_envs(obs_dim, env_step)  # one per task; and the eval envs, the video process (--capture-video)
        obs = env.reset()
        while env_step < args.total_steps:
            learning = run.learning(env_step, max(args.learning_starts, collect_until))
            if env_step < args.learning_starts:
                action = rng.uniform(-1.0, 1.0, (num_tasks, act_dim)).astype(np.float32)
            else:  # dispatched, not awaited: with --overlap the update queues right behind it
                action = fns.act(state, jnp.asarray(obs), task_ids, jax.random.fold_in(act_key, env_step))
            # --overlap: dispatched before the env step, so the device computes while the CPU steps
            # the envs; it samples the buffer as it was before this step's transition (never empty)
            early = learning and args.overlap and stored > 0
            if early:
                state, metrics = fns.update(state, buffer, max_abs_return(), update_key, prior_buffer)
            action = np.asarray(action)  # waits for acting only, not for the update queued behind it
            out = env.step(action)  # one real transition per task: an ended episode resets within it
            buffer = fns.insert(buffer, obs, action, out.reward, out.next_obs, out.terminated)
            stored += 1
            normalizer.add(out.reward, out.terminated, out.truncated)
            if recorder is not None:
                recorder.add(env_step + 1, obs, action, out.reward, out.next_obs, out.terminated,
                             out.truncated, np.ones(num_tasks, bool))  # fmt: skip
            returns.add(out.reward, out.terminated | out.truncated)
            obs = out.obs
            env_step += 1

            if learning and not early:  # UTD: exactly `utd` updates per stored transition from here
                state, metrics = fns.update(state, buffer, max_abs_return(), update_key, prior_buffer)

            if env_step % args.log_interval == 0:
                run.log_progress(env_step, returns, metrics)
            if env_step % args.eval_interval == 0 or env_step == args.total_steps:  # evaluate, film, diagnose
                run.evaluation(env_step, fns, state, returns, metrics, diagnose, buffer, normalizer.g(),
                               jax.random.fold_in(diagnostics_key, env_step))
            if run.checkpoint_due(env_step):  # on a stop signal, the run ends after it
                run.checkpoint(env_step, state, buffer, metrics, normalizer, rng, act_key, recorder)
    print(f"done: {env_step} steps per task in {time.time() - run.start_time:.0f} s; results in {run.dir}")


# ================================================================ run harness
# Not needed to learn the method: diagnostics, the transfer set-up, validation and the memory
# plan, and this script's part of the run directory (console lines, videos, checkpoint contents
# and resume; the rest is common/run.py). main calls each feature here in one line.


# ---------------------------------------------------------------- diagnostics (paper Section 5, Appendix D)


def make_diagnostics(args: Args, num_tasks: int, act_dim: int):
    """The paper's multi-task diagnostics (common/diagnostics.py) as one jitted function of the
    training state, on a fresh batch of --diagnostics-batch-size transitions per task with the
    update's own reward scale, TD target and critic loss, so the two cannot drift."""
    per_task, support = args.diagnostics_batch_size, make_support(args.num_atoms, args.v_max)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def diagnose(
        state: TrainState, buffer: ReplayBuffer, max_abs_return: Float[Array, " tasks"], key: PRNGKeyArray
    ) -> dict:
        index_key, next_key, entropy_key = jax.random.split(key, 3)
        task = jnp.repeat(jnp.arange(num_tasks), per_task)  # tasks x per_task, task-major
        uniform = jax.random.uniform(index_key, (num_tasks * per_task,))
        index = jnp.floor(uniform * buffer.size[task]).astype(jnp.int32)
        batch = gather(buffer, task, index)
        scale = reward_scale(max_abs_return, jnp.exp(state.log_alpha), act_dim, args.gamma, args.v_max)
        next_noise = jax.random.normal(next_key, batch.action.shape)
        target = td_target(state, batch, batch.reward * scale[task], next_noise, args, support)
        params, static = eqx.partition(state.critic, eqx.is_inexact_array)

        def row_losses(params, rows):  # update_once's critic loss per row, summed over the ensemble
            rows_of = lambda x: x[rows]
            critic = eqx.combine(params, static)
            return critic_losses(critic, jax.tree.map(rows_of, batch), target[rows], args).sum(axis=1)

        # policy entropy per task: -E[log pi(a|s)] over the task's states, as the update's metric
        mean, log_std = jax.vmap(policy, in_axes=(None, 0, 0))(state, batch.obs, task)
        _, log_prob = jax.vmap(sample_tanh_gaussian)(mean, log_std, jax.random.normal(entropy_key, mean.shape))
        return multitask_diagnostics(row_losses, params, num_tasks, -log_prob)

    return diagnose


# ---------------------------------------------------------------- transfer: --init-from, --init-buffer
# Reading the checkpoint and the prior data, and the padded sizes: common/transfer.py.


def init_from_checkpoint(pretrained: Pretrained, state: TrainState, args: Args) -> TrainState:
    """Model transfer (paper Section 4, which states only that the weights are transferred): the
    pretrained actor, critic ensemble and, by default, temperature (the critic's soft values were
    learned at it) in a fresh TrainState; the target is the loaded critic. Fresh: the task
    embedding table (the pretraining rows name other tasks), the optimiser moments, the step
    count and the return normaliser (docs/transfer.md says why each)."""
    ckpt, pre_tasks, pre_obs, pre_act = pretrained
    init = partial(init_state, args=args, num_tasks=len(pre_tasks), obs_dim=pre_obs, act_dim=pre_act,
                   optimizers=make_optimizers(args))  # the network flags match: read_pretrained checks
    like = eqx.filter_eval_shape(init, *jax.random.split(jax.random.key(0)))  # shapes only
    loaded = load_pretrained_state(pretrained, like)
    keep_temperature = args.transfer_temperature == "pretrained"
    critic = eqx.tree_at(lambda c: c.members, state.critic, loaded.critic.members)
    log_alpha = loaded.log_alpha if keep_temperature else state.log_alpha
    print(f"model transfer: actor and critic from {ckpt} ({', '.join(t.name for t in pre_tasks)}), "
          f"temperature {float(jnp.exp(log_alpha)):.3g} ({'pretrained' if keep_temperature else 'reset'})")  # fmt: skip
    # the target starts equal to the critic, in buffers of its own: the update donates both
    target_critic = jax.tree.map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, critic)
    return eqx.tree_at(lambda s: (s.actor, s.critic, s.target_critic, s.log_alpha), state,
                       (loaded.actor, critic, target_critic, log_alpha))  # fmt: skip


# ---------------------------------------------------------------- runs: flags, sizes, checkpoints, console


def validate(args: Args) -> tuple[Args, list[TaskSpec]]:
    """Every flag checked before anything runs. Returns the run's Args, whose --tasks are the
    tasks it trains on (as config.json records them: a comma list split, ShadowHand shapes
    without their assets dropped), and those tasks."""
    if len(args.tasks) == 1 and "," in args.tasks[0]:
        args = dataclasses.replace(args, tasks=tuple(t for t in args.tasks[0].split(",") if t))
    try:
        args.check_env_flags()
        tasks = resolve_tasks(args.suite, args.tasks, CONTINUOUS)
        require_packages(tasks)
        runnable = with_shadowhand_assets(tasks, args.shadowhand_assets, whole_suite=not args.tasks)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if len(runnable) < len(tasks):
        tasks, args = runnable, dataclasses.replace(args, tasks=tuple(t.name for t in runnable))
    if atari := [t.name for t in tasks if t.domain == "atari"]:  # discrete actions from pixels: DrQ-epsilon + BRC
        raise ConfigError(f"sac_brc.py is for continuous control; the Atari games ({', '.join(atari[:3])}"
                          f"{', ...' * (len(atari) > 3)}) train with drq_brc.py (--suite atari)")
    if args.init_buffer_per_task is not None and not args.init_buffer:
        raise ConfigError("--init-buffer-per-task subsamples --init-buffer's dataset; pass --init-buffer too")
    check_positive(args, "total_steps", "width", "actor_width", "num_atoms", "utd", "buffer_size", "batch_size",
                   "eval_interval", "eval_episodes", "video_tasks", "diagnostics_batch_size", "init_buffer_per_task",
                   "v_max", "learning_rate", "temperature_learning_rate", "init_temperature")  # fmt: skip
    check_run_args(args)
    check_nonnegative(args, "depth", "actor_depth", "embedding_dim", "learning_starts", "weight_decay", "seed")
    check_discount_and_tau(args)
    if args.loss == "ce" and args.num_atoms < 2:
        raise ConfigError("--num-atoms must be at least 2 for the categorical critic")
    if args.save_buffer and not args.resume:
        target = Path(args.save_buffer)
        if target.is_file() or (target.is_dir() and any(target.iterdir())):
            raise ConfigError(f"--save-buffer {target} exists and is not empty; pick another folder")
    return args, tasks


def print_plan(args: Args, tasks: list[TaskSpec], capacity: int, batch_size: int, transfer: Transfer,
               key: PRNGKeyArray) -> None:  # fmt: skip
    """Sizes before anything is compiled: device, tasks, parameters, FLOPs and the memory plan
    (which refuses a configuration that cannot fit)."""
    num_tasks, obs_dim, act_dim = len(tasks), transfer.obs_dim, transfer.act_dim
    check_batch_split(batch_size, args.num_devices)
    embedding_dim = args.embedding_dim if uses_task_embedding(args, num_tasks) else 0
    critic, actor = eqx.filter_eval_shape(
        lambda k: (Critic(obs_dim, act_dim, num_tasks, args, k),
                   Actor(obs_dim, act_dim, num_tasks, embedding_dim, args, k)),
        key,
    )  # fmt: skip
    critic_params, actor_params = count_parameters(critic), count_parameters(actor)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(jax.devices())} visible")
    if jax.default_backend() == "cpu" and args.width >= 2048:  # e.g. `python sac_brc.py` with no flags
        print(f"note: --width {args.width} is the paper's GPU setting; README's quick start uses --width 128 on a CPU")  # fmt: skip
    print(f"tasks ({num_tasks}): {', '.join(t.name for t in tasks)}; obs {obs_dim}, action {act_dim} (padded)")
    print(f"parameters: critic ensemble {critic_params:,} (+ the same in its target), actor {actor_params:,}")
    # paper Table 1's model size counts the residual blocks of both critics and their targets
    table1_size = 2 * sum(count_parameters(block) for block in critic.members.trunk.blocks)
    print(f"model size as in paper Table 1 (residual blocks, critics + targets): {table1_size / 1e6:,.1f}M")
    flops = update_flops(args, num_tasks, obs_dim, act_dim, batch_size)
    print(f"one update: {flops / 1e9:,.1f} GFLOP of matmuls (x {args.utd} updates per env step)")
    prior = 0 if transfer.prior is None else len(transfer.prior.reward)
    # float32: critic, target and the two AdamW moments; actor and its two moments; with bf16,
    # bfloat16 copies of critic and target while an update runs
    parts = {"prior data": replay_buffer_bytes(1, prior, obs_dim, act_dim) + 4 * prior, "critic": 4 * critic_params,
             "target": 4 * critic_params, "optimiser": 8 * (critic_params + actor_params), "actor": 4 * actor_params,
             "bf16 copies": 2 * 2 * critic_params if args.precision == "bf16" else 0}  # fmt: skip
    check_memory(replay_buffer_bytes(num_tasks, capacity, obs_dim, act_dim), capacity, parts, 0.8,
                 f"{num_tasks} tasks x {capacity} transitions", "a smaller --width" + " or --init-buffer-per-task" * bool(prior))  # fmt: skip


def update_flops(args: Args, num_tasks: int, obs_dim: int, act_dim: int, batch_size: int) -> int:
    """Matmul FLOPs of one update, from the shapes. Per sample, in forward-pass equivalents:
    target critics 1, critic loss forward and backward 3 (weight and activation gradients), actor
    loss 2 (critic forward, backward to the action only); actor: next action 1, actor loss 3.
    The two critics count twice; LayerNorm, softmax and projection are left out."""
    heads = num_tasks if num_tasks > 1 and args.task_conditioning == "heads" else 1
    embedding_dim = args.embedding_dim if uses_task_embedding(args, num_tasks) else 0
    outputs = (args.num_atoms if args.loss == "ce" else 1) * heads
    critic = bronet_macs(obs_dim + act_dim + embedding_dim, args.width, args.depth, outputs)
    actor = bronet_macs(obs_dim + embedding_dim, args.actor_width, args.actor_depth, 2 * act_dim * heads)
    return 2 * batch_size * (6 * 2 * critic + 4 * actor)  # 2 FLOPs per multiply-add


def suite_name(args: Args) -> str:
    """The suite in run names and dataset provenance: 'tasks' for an explicit --tasks list (--suite
    keeps its unused default then)."""
    return args.suite if not args.tasks else "tasks"


class Run(RunDir):
    """The run directory (common/run.py: config, metrics, console, checkpoints and resume), and what
    this script adds: the --save-buffer recorder, the envs, and evaluation with videos and diagnostics."""

    @classmethod
    def open(cls, args: Args, tasks: list[TaskSpec]) -> "Run":
        name = f"{suite_name(args)}__w{args.width}__s{args.seed}__{int(time.time())}"
        return super().open(args, name, RESUMABLE_FIELDS, args.total_steps, tasks)

    def open_recorder(self, env_step: int) -> DatasetWriter | None:
        """--save-buffer: every stored transition, chunked on the host (common/dataset.py)."""
        args = self.args
        if not args.save_buffer:
            return None
        env = {"mw_backend": args.mw_backend, "mw_layouts": args.mw_layouts, "seed": args.seed}
        metadata = make_metadata(self.tasks, "sac_brc.py", suite=suite_name(args), run_dir=str(self.dir),
                                 gamma=args.gamma, env=env)  # fmt: skip
        # a restarted run (stopped before its first checkpoint) reopens its dataset, if made, at step 0
        resume_step = env_step if self.resumed or (self.restarted and Path(args.save_buffer).exists()) else None
        return DatasetWriter(Path(args.save_buffer), self.tasks, metadata, resume_step=resume_step)

    def open_envs(self, obs_dim: int, env_step: int) -> MultiTaskEnv:
        """The training envs (one per task); for `evaluation`, the eval envs and the video process
        (--capture-video); all closed at the end. Env seeds are disjoint between runs, training and
        evaluation (common/envs.py env_seeds; the ref. code's eval envs are seed + 42). A run resumed
        at `env_step` trains on envs with new seeds, not on a replay of its first episodes; its
        evaluation episodes start over as the run did."""
        args, tasks = self.args, self.tasks
        kwargs = dict(seed=args.seed, min_obs_dim=obs_dim, **args.env_kwargs())
        copies, self.eval_runs = eval_envs_and_episodes(args.eval_protocol, args.eval_episodes)
        env = self.closing(MultiTaskEnv(tasks, 1, role="train", start_step=env_step, **kwargs))
        self.eval_env = self.closing(MultiTaskEnv(tasks, copies, role="eval", **kwargs))
        video = VideoRecorder.of_evaluation(tasks, args, copies, obs_dim) if args.capture_video else None
        self.video = self.closing(video)
        return env

    def evaluation(self, env_step, fns, state, returns, metrics, diagnose, buffer, g, key) -> None:
        """Evaluate; with --capture-video film, with --diagnostics diagnose; then one metrics.jsonl
        record (with the online returns: each task's last 10 training episodes, where any ended)
        and one console line."""
        eval_start, eval_env, video = time.time(), self.eval_env, self.video
        task_ids = jnp.asarray(eval_env.task_ids)
        act = lambda obs: np.asarray(fns.act_deterministic(state, jnp.asarray(obs), task_ids))
        results = evaluate_policy(eval_env, act, self.eval_runs)  # deterministic: tanh(mean)
        train_return = {t.name: float(np.mean(r)) for t, r in zip(self.tasks, returns.recent) if r}
        record = self.record(env_step, results, metrics, updates=int(state.step), train_return=train_return,
                             **self.args.protocol())  # fmt: skip
        record["eval_seconds"] = time.time() - eval_start
        if video is not None:
            video_start = time.time()
            record["videos"] = video.film(eval_env, self.dir / "videos", env_step, act)
            record["video_seconds"] = time.time() - video_start
        if diagnose is not None:
            diagnostics = diagnose(state, buffer, jnp.asarray(g), key)
            record["diagnostics"] = diagnostics_record(diagnostics, self.tasks, state.critic.task_embedding, env_step,
                                                       self.dir)  # fmt: skip
        meaning = score_meaning(self.tasks)
        self.log_evaluation(record, f"eval step {env_step}: mean score {record['mean_score']:.3f} ({meaning})")

    def checkpoint(self, env_step, state, buffer, metrics, normalizer, rng, act_key, recorder) -> None:
        if recorder is not None:  # the recording is complete up to every checkpoint
            recorder.flush()
        replay = ring_arrays(buffer) if self.args.checkpoint_replay else None
        self.checkpoint_online(env_step, state, replay, metrics, normalizer, rng, act_key)


if __name__ == "__main__":
    # --resume RUN_DIR alone: its config.json gives the rest; bad input is one line, exit 2
    run_main(main, parse_args(Args), (ConfigError, FloatingPointError, EnvError, DatasetError))
