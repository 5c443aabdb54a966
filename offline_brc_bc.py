"""Offline BRC + BC: the BRC critic and actor trained from a fixed multi-task dataset.

Paper Section 5 ("Multi-task value models learn more efficiently with online data",
Figure 12): the same networks as sac_brc.py (BroNet critic ensemble with categorical
cross-entropy TD, task embeddings, per-task return normalisation), trained offline, with a
behaviour-cloning term in the actor loss in the line of TD3+BC (Fujimoto & Gu, 2021):

    actor loss = alpha * log_pi(a|s) - lambda * Q(s, a) / mean|Q| + bc_weight * BC,   a ~ pi(.|s)
    BC = mean over the batch of (1/|A_i|) * sum_{j < |A_i|} (tanh(mu_j(s)) - a_data_j)^2

BC is TD3+BC's squared error, on the policy's deterministic action tanh(mu(s)) (the action
evaluated), over the |A_i| action entries task i uses. Not the tanh-Gaussian's negative
log-likelihood of the dataset action: that needs atanh(a_data), infinite for the +-1
actions a saturated policy (or clipping) records, and it would pull the std down against
the entropy target the temperature keeps. mean|Q| is the batch mean, without gradient, as
in TD3+BC, so lambda and bc_weight mean the same at any reward scale.

    python offline_brc_bc.py --dataset data/mw --width 4096          # paper setting (GPU)
    python offline_brc_bc.py --dataset data/easy --dataset-info      # tasks, sizes, returns
    python sac_brc.py --suite mw-easy --save-buffer data/easy ...    # collect a dataset

The dataset format is docs/dataset-format.md; how to run, what is logged and every
deviation: docs/offline_brc_bc.md. `step` counts gradient updates here, not env steps.

The file, in reading order (section headers `# ---- name`); the method is the first six:
    Args                   the flags: dataset, networks and learning (as sac_brc.py), BC, evaluation
    networks               as sac_brc.py: CriticMember, Critic (ensemble + task embeddings), Actor
    dataset                minibatch stacks sampled on the host and streamed to the devices, the
                           update's noise; the categorical TD target and the reward scale (eq. 3-4)
    agent                  TrainState, bf16 compute view, optimisers, the initial state
    the update             td_target, critic_loss, actor_loss (with the BC term), temperature_loss,
                           update_once, update_on, then make_agent, which only jits and shards them
    evaluation, main       deterministic evaluation and the training loop, one call per feature
    ==== run harness       not needed to learn the method: the dataset load and --dataset-info,
                           validation, and `Run`: run directory, console, metrics.jsonl,
                           checkpoints and resume
"""

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, Key, PRNGKeyArray

from common.bronet import BroNet, Linear, count_parameters, make_ensemble, orthogonal_linear
from common.categorical import categorical_projection, cross_entropy, make_support
from common.cli import own_flags_first, parse_args
from common.dataset import Dataset, DatasetError, dataset_bytes, index_dataset, load_dataset
from common.envs import (
    EnvArgs, EnvError, MultiTaskEnv, eval_envs_and_episodes, evaluate_policy, with_shadowhand_assets,
)  # fmt: skip
from common.run import (
    ConfigError, RunArgs, RunDir, check_batch_split, check_discount_and_tau, check_finite, check_nonnegative,
    check_positive, check_run_args, drop_metrics_after, load_checkpoint, make_mesh, run_main, save_checkpoint,
)  # fmt: skip
from common.suites import TASKS, TaskSpec, score_meaning


@own_flags_first
@dataclass
class Args(EnvArgs, RunArgs):
    dataset: str | None = None
    """dataset folder (docs/dataset-format.md), e.g. written by `sac_brc.py --save-buffer`"""
    dataset_info: bool = False
    """print the dataset's tasks, sizes and return statistics, then exit"""
    max_transitions_per_task: int | None = None
    """load a uniformly random subset of at most this many transitions per task (default all; the run refuses a dataset that does not fit in host memory and says what fits)"""
    seed: int = 0
    """seed of the networks, the batch sampling and the evaluation environments"""
    num_updates: int = 1_000_000
    """gradient updates in total"""
    updates_per_call: int = 100
    """updates per jitted call (one lax.scan); the intervals below must be multiples of it"""

    # networks (paper Appendix F, Table 3), as sac_brc.py
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

    # learning (paper Appendix F, Table 3), as sac_brc.py
    batch_size: int | None = None
    """minibatch size; default 1024 multi-task, 256 single-task"""
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

    # behaviour cloning (TD3+BC, Fujimoto & Gu 2021)
    bc_weight: float = 1.0
    """weight of the BC term (squared error of tanh(mean) to the dataset action); 0 = no BC"""
    q_weight: float = 2.5
    """lambda: weight of Q / mean|Q| in the actor loss (TD3+BC's alpha = 2.5)"""

    # ablations (paper Figures 5 and 6), as sac_brc.py
    loss: Literal["ce", "mse"] = "ce"
    """critic loss: categorical cross-entropy (BRC) or mean squared TD error"""
    task_conditioning: Literal["embedding", "heads"] = "embedding"
    """multi-task conditioning: learned task embeddings (BRC) or one output head per task"""

    # evaluation on the live environments, logging
    eval_interval: int = 25_000
    """updates between evaluations"""
    prefetch: int = 4
    """batch stacks (one per call) sampled ahead on the host by a background thread"""

    # speed and scale, as sac_brc.py (do not change the method; docs/offline_brc_bc.md)
    precision: Literal["f32", "bf16"] = "f32"
    """critic matmuls and activations in float32 or bfloat16 (float32 master weights, loss and softmax)"""


# Fields that may change when resuming (besides RunArgs'); every other field must match the checkpoint.
RESUMABLE_FIELDS = {"num_updates", "eval_interval", "prefetch", "env_workers", "shadowhand_assets", "dataset_info"}


# Actor log-std squashing range (ref. code).
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


# ---------------------------------------------------------------- networks (as sac_brc.py)


def uses_task_embedding(args: Args, num_tasks: int) -> bool:
    """Embedding conditioning in multi-task runs (as sac_brc.py, which also keeps it for --init-from)."""
    return args.task_conditioning == "embedding" and num_tasks > 1


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


# ---------------------------------------------------------------- dataset: batches and return normalisation


class Batch(NamedTuple):
    """`updates_per_call` minibatches stacked on axis 0, one per scanned update."""

    task: Int[Array, "updates batch"]
    obs: Float[Array, "updates batch obs"]
    action: Float[Array, "updates batch act"]
    reward: Float[Array, "updates batch"]
    next_obs: Float[Array, "updates batch obs"]
    terminated: Float[Array, "updates batch"]


class Noise(NamedTuple):
    """The standard-normal draws of one update's two reparameterised actions."""

    next_action: Float[Array, "batch act"]  # a' ~ pi(.|s') in the TD target
    action: Float[Array, "batch act"]  # a ~ pi(.|s) in the actor loss


def sample_noise(batch_size: int, act_dim: int, key: PRNGKeyArray) -> Noise:
    next_key, action_key = jax.random.split(key)
    shape = (batch_size, act_dim)
    return Noise(jax.random.normal(next_key, shape), jax.random.normal(action_key, shape))


def sample_batches(dataset: Dataset, batch_size: int, updates: int, seed: int, call: int) -> Batch:
    """Host gather of the minibatches of jitted call number `call`: (task, index) uniform, so
    tasks are equally represented (as sac_brc.py's replay sampling). The generator is seeded
    with (seed, call), so a resumed run draws the same batches without saving an RNG state."""
    rng = np.random.default_rng([seed, call])
    sizes = np.diff(dataset.offsets)
    task = rng.integers(0, len(sizes), (updates, batch_size))
    index = dataset.offsets[task] + (rng.random((updates, batch_size)) * sizes[task]).astype(np.int64)
    return Batch(
        task.astype(np.int32),
        dataset.obs[index],
        dataset.action[index],
        dataset.reward[index],
        dataset.next_obs[index],
        dataset.terminated[index].astype(np.float32),
    )


class BatchStream:
    """Samples, gathers and copies to the device the batches of the next `prefetch` calls in a
    background thread, so the update loop does not wait on the host. `wait_s` adds up the time
    the loop did wait (reported as `data_wait` in the metrics). `put` copies a host batch stack
    to the devices: `AgentFns.shard_batches` shards each minibatch across the mesh."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        updates: int,
        seed: int,
        first_call: int,
        prefetch: int,
        put: Callable[[Batch], Batch] = jax.device_put,
    ):
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self.wait_s = 0.0

        def produce():
            call = first_call
            while not self._stop.is_set():
                batch = put(sample_batches(dataset, batch_size, updates, seed, call))
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                call += 1

        self._thread = threading.Thread(target=produce, daemon=True)
        self._thread.start()

    def get(self) -> Batch:
        start = time.perf_counter()
        batch = self._queue.get()
        self.wait_s += time.perf_counter() - start
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


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
    """The jitted entry points, each traced once per run; `replicate`, which puts a pytree (a
    restored state) on the devices, replicated; and `shard_batches`, which copies a host
    batch stack to the devices with each minibatch sharded across them."""

    act_deterministic: callable
    update: callable
    replicate: callable
    shard_batches: callable


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


# ---------------------------------------------------------------- the update (paper Appendix C.2; BC: TD3+BC)
# Pure functions of the state, a minibatch and its noise; `args`, `support`, the optimisers and
# each task's |A_i| are constants of the run. make_agent below only jits and shards them.


def policy(state: TrainState, obs: Float[Array, " obs"], task_id: Int[Array, ""]):
    """pi(.|s, task): the actor reads the critic's task embedding, with no gradient to it."""
    embedding = state.critic.embed(task_id)
    return state.actor(obs, jax.lax.stop_gradient(embedding), task_id)


def sample_action(
    mean: Float[Array, "batch act"],
    log_std: Float[Array, "batch act"],
    noise: Float[Array, "batch act"],
    act_dims: Int[Array, " batch"],
) -> tuple[Float[Array, "batch act"], Float[Array, " batch"]]:
    """Policy samples with the entries beyond each sample's |A_i| zeroed, as in the dataset (the
    critic only ever trains on zero padding there), and their log-probabilities."""
    action, log_prob = jax.vmap(sample_tanh_gaussian)(mean, log_std, noise)
    mask = jnp.arange(mean.shape[-1])[None, :] < act_dims[:, None]
    return action * mask, log_prob


def td_target(
    state: TrainState,
    batch: Batch,
    reward: Float[Array, " batch"],
    next_noise: Float[Array, "batch act"],
    act_dims: Int[Array, " batch"],
    args: Args,
    support: Float[Array, " atoms"],
) -> Float[Array, "batch atoms"] | Float[Array, " batch"]:
    """The soft TD target of (already scaled) rewards, as sac_brc.py: next action from the current
    actor (its padding zeroed), next-state value from the target critics. ce: projected
    probabilities; mse: scalars."""
    alpha = jnp.exp(state.log_alpha)
    mask = 1.0 - batch.terminated  # a truncation bootstraps
    next_mean, next_log_std = jax.vmap(policy, in_axes=(None, 0, 0))(state, batch.next_obs, batch.task)
    next_action, next_log_prob = sample_action(next_mean, next_log_std, next_noise, act_dims)
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


def bc_loss(
    mean: Float[Array, "batch act"], data_action: Float[Array, "batch act"], act_dims: Int[Array, " batch"]
) -> Float[Array, ""]:
    """TD3+BC's squared error, on tanh(mean) and over each task's own |A_i| entries."""
    mask = jnp.arange(mean.shape[-1])[None, :] < act_dims[:, None]
    return jnp.mean(jnp.sum(mask * (jnp.tanh(mean) - data_action) ** 2, axis=-1) / act_dims)


def actor_loss(
    actor: Actor,
    critic: Critic,
    batch: Batch,
    noise: Float[Array, "batch act"],
    alpha: Float[Array, ""],
    act_dims: Int[Array, " batch"],
    args: Args,
    support: Float[Array, " atoms"],
) -> tuple[Float[Array, ""], tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]]:
    """alpha * log_pi(a|s) - lambda * Q(s, a) / mean|Q| + bc_weight * BC (TD3+BC), Q under the
    mean of both critics' distributions; and the policy entropy estimate -E[log pi] for the
    temperature, BC and the mean Q."""
    embedding = jax.lax.stop_gradient(jax.vmap(critic.embed)(batch.task))
    mean, log_std = jax.vmap(actor)(batch.obs, embedding, batch.task)
    action, log_prob = sample_action(mean, log_std, noise, act_dims)
    out = precision_view(critic, args.precision)(batch.obs, action, batch.task)
    if args.loss == "ce":
        q = jnp.sum(jax.nn.softmax(out, axis=-1).mean(axis=1) * support, axis=-1)
    else:
        q = out[..., 0].mean(axis=1)
    q_scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))  # TD3+BC's lambda = alpha / mean|Q|
    bc = bc_loss(mean, batch.action, act_dims)
    loss = jnp.mean(alpha * log_prob) - args.q_weight * jnp.mean(q) / q_scale + args.bc_weight * bc
    return loss, (-jnp.mean(log_prob), bc, jnp.mean(q))


def temperature_loss(log_alpha: Float[Array, ""], entropy: Float[Array, ""], act_dim: int) -> Float[Array, ""]:
    """alpha * (entropy - target entropy), target -|A| / 2 (ref. code; the paper's table omits
    the sign), |A| the padded action size."""
    return jnp.exp(log_alpha) * (entropy - (-act_dim / 2))


def update_once(
    state: TrainState,
    scale: Float[Array, " tasks"],
    batch: Batch,
    noise: Noise,
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizers: Optimizers,
    task_act_dims: Int[Array, " tasks"],
) -> tuple[TrainState, dict]:
    """One gradient step of the critic, its target, the actor (with the BC term) and the temperature."""
    reward = batch.reward * scale[batch.task]  # paper eq. 3
    act_dims = task_act_dims[batch.task]  # each sample's |A_i|

    # critic: as sac_brc.py, the next action from the current actor
    target = td_target(state, batch, reward, noise.next_action, act_dims, args, support)
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

    # actor: alpha * log_pi - lambda * Q / mean|Q| + bc_weight * BC (TD3+BC), against the updated critic
    alpha = jnp.exp(state.log_alpha)
    (loss_a, (entropy, bc, q_mean)), actor_grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.actor, critic, batch, noise.action, alpha, act_dims, args, support
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
    metrics = {"critic_loss": loss_c, "actor_loss": loss_a, "bc_loss": bc, "q_mean": q_mean,
               "entropy": entropy, "temperature": jnp.exp(log_alpha)}  # fmt: skip
    return new_state, metrics


def update_on(
    state: TrainState,
    batches: Batch,
    keys: Key[Array, " updates"],
    max_abs_return: Float[Array, " tasks"],
    *,
    args: Args,
    support: Float[Array, " atoms"],
    optimizers: Optimizers,
    task_act_dims: Int[Array, " tasks"],
) -> tuple[TrainState, dict]:
    """One gradient update per minibatch of `batches` (stacked on axis 0), as one lax.scan, each
    with the noise of its own key."""
    constants = {"args": args, "support": support, "optimizers": optimizers, "task_act_dims": task_act_dims}

    def body(state, batch_and_key):
        batch, key = batch_and_key
        batch_size, act_dim = batch.action.shape
        # paper eq. 3, lambda_i from the current alpha: before every update (sac_brc.py: every env step)
        scale = reward_scale(max_abs_return, jnp.exp(state.log_alpha), act_dim, args.gamma, args.v_max)
        # noise drawn here, not stacked ahead as in sac_brc.py: stacking changes XLA's fusion and,
        # by rounding, the numbers (e.g. with --task-conditioning heads)
        return update_once(state, scale, batch, sample_noise(batch_size, act_dim, key), **constants)

    state, metrics = jax.lax.scan(body, state, (batches, keys))
    return state, jax.tree.map(jnp.mean, metrics)


def make_agent(
    args: Args, act_dims: list[int], obs_dim: int, key: PRNGKeyArray
) -> tuple[TrainState, AgentFns]:
    """Initial TrainState and the jitted, sharded entry points for one configuration; `act_dims`
    are the tasks' |A_i| (the padded action size is the largest)."""
    num_tasks, act_dim = len(act_dims), max(act_dims)
    support = make_support(args.num_atoms, args.v_max)
    optimizers = make_optimizers(args)
    task_act_dims = jnp.asarray(act_dims, jnp.int32)
    constants = {"args": args, "support": support, "optimizers": optimizers, "task_act_dims": task_act_dims}

    # data parallel (as sac_brc.py): every device holds the parameters and optimiser states;
    # each minibatch (axis 1 of the stack, axis 0 is the scanned update) is split across the
    # devices and XLA all-reduces the gradients
    mesh = make_mesh(args.num_devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "batch"))
    init = partial(init_state, args=args, num_tasks=num_tasks, obs_dim=obs_dim, act_dim=act_dim,
                   optimizers=optimizers)  # fmt: skip
    state = jax.jit(init, out_shardings=replicated)(*jax.random.split(key))

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def act_deterministic(
        state: TrainState, obs: Float[Array, "envs obs"], task_ids: Int[Array, " envs"]
    ) -> Float[Array, "envs act"]:
        mean, _ = jax.vmap(policy, in_axes=(None, 0, 0))(state, obs, task_ids)
        return jnp.tanh(mean)

    # the state is donated, as in sac_brc.py: the new parameters and optimiser states are written
    # over the old ones instead of into a second copy (at width 4096 about 2 GB more on the device)
    @partial(jax.jit, donate_argnums=0)
    @eqx.debug.assert_max_traces(max_traces=1)
    def update(
        state: TrainState, batches: Batch, max_abs_return: Float[Array, " tasks"], key: PRNGKeyArray
    ) -> tuple[TrainState, dict]:
        """`updates_per_call` gradient updates, one per stacked minibatch, each with its own key."""
        batches = jax.lax.with_sharding_constraint(batches, batch_sharded)  # a no-op for placed batches
        keys = jax.random.split(jax.random.fold_in(key, state.step), batches.reward.shape[0])
        return update_on(state, batches, keys, max_abs_return, **constants)

    fns = AgentFns(
        act_deterministic,
        update,
        lambda tree: jax.device_put(tree, replicated),
        lambda batches: jax.device_put(batches, batch_sharded),
    )
    return state, fns


# ---------------------------------------------------------------- main


def main(args: Args) -> None:
    validate(args)
    dataset = read_dataset(args)  # refused before it is read if it does not fit in host memory
    if args.dataset_info:
        print(dataset_info(dataset, args.gamma))
        return
    tasks, batch_size = dataset.tasks, resolve_batch_size(args, len(dataset.tasks))
    check_eval_assets(args, tasks)
    check_batch_split(batch_size, args.num_devices)
    # G_i of every transition in the files (not only the loaded subset); fixed: the data does not change
    max_abs_return = jnp.asarray(np.array([s.max_abs_return for s in dataset.stats], np.float32))
    run = Run.open(args)  # a new run directory, or --resume's after checking its config

    init_key, update_key = jax.random.split(jax.random.key(args.seed))
    state, fns = make_agent(args, [t.act_dim for t in tasks], dataset.obs.shape[1], init_key)
    print_sizes(args, dataset, state, max_abs_return)
    run.create()
    step = 0
    if run.resumed:  # the state and update count of the latest checkpoint
        state, step = run.restore(state, fns)
    print(f"run directory: {run.dir}; batch {batch_size}, {args.updates_per_call} updates per call")

    eval_copies, eval_runs = eval_envs_and_episodes(args.eval_protocol, args.eval_episodes)
    with run.started(step):  # clocks, wandb, checkpoints on SIGTERM/Ctrl-C; closes envs and stream at the end
        # the eval envs of sac_brc.py's protocol (--eval-protocol), seeds disjoint between runs
        eval_env = run.closing(MultiTaskEnv(tasks, eval_copies, seed=args.seed, role="eval", **args.env_kwargs()))
        eval_task_ids = jnp.asarray(eval_env.task_ids)
        # the batches of call k are a function of (seed, k): a resumed run continues the sequence
        stream = run.closing(BatchStream(dataset, batch_size, args.updates_per_call, args.seed,
                                         step // args.updates_per_call, args.prefetch, fns.shard_batches))  # fmt: skip
        while step < args.num_updates:
            state, metrics = fns.update(state, stream.get(), max_abs_return, update_key)
            step += args.updates_per_call

            if step % args.log_interval == 0:
                run.log_progress(step, metrics, stream.wait_s)
            if step % args.eval_interval == 0 or step == args.num_updates:
                act = lambda obs: np.asarray(fns.act_deterministic(state, jnp.asarray(obs), eval_task_ids))
                run.evaluation(step, evaluate_policy(eval_env, act, eval_runs), metrics, stream.wait_s)  # tanh(mean)
            if run.checkpoint_due(step):  # on a stop signal, the run ends after it
                run.checkpoint(step, state, metrics)
    print(f"done: {step} updates in {time.time() - run.start_time:.0f} s; results in {run.dir}")


# ================================================================ run harness
# Not needed to learn the method: the dataset load and --dataset-info, validation, and the run
# directory (config, console, metrics.jsonl, checkpoints and resume). main calls each feature
# here in one line.


# ---------------------------------------------------------------- runs: dataset, config, checkpoints, metrics


def read_dataset(args: Args) -> Dataset:
    """--dataset, streamed chunk by chunk; the memory plan is checked before anything is allocated."""
    try:
        index = index_dataset(Path(args.dataset))
        dataset = load_dataset(index, args.gamma, args.max_transitions_per_task, args.seed,
                               fix="pass --max-transitions-per-task {fit} (or less) to train on a random subset")  # fmt: skip
    except DatasetError as error:
        raise ConfigError(str(error)) from None
    loaded = int(dataset.offsets[-1])
    print(f"memory plan: dataset {loaded:,} of {sum(index.sizes):,} transitions, "
          f"{dataset_bytes(loaded, index.obs_dim, index.act_dim) / 2**30:.2f} GiB of host memory")  # fmt: skip
    return dataset


def dataset_info(dataset: Dataset, gamma: float) -> str:
    """Tasks, sizes and return statistics (undiscounted returns of finished episodes), of every
    transition in the files (common/dataset.py gathers them while streaming)."""
    lines = [
        (
            f"dataset: {len(dataset.tasks)} tasks, {sum(s.transitions for s in dataset.stats):,} transitions "
            f"({int(dataset.offsets[-1]):,} loaded), obs {dataset.obs.shape[1]} / action "
            f"{dataset.action.shape[1]} (padded); source {dataset.metadata.get('source', '?')}"
        ),
        f"| task | obs | act | transitions | episodes (term. / trunc.) | return mean | min | max | G (gamma {gamma}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, stats in zip(dataset.tasks, dataset.stats):
        returns, summary = stats.returns, "- | - | -"
        if len(returns):
            summary = f"{returns.mean():.1f} | {returns.min():.1f} | {returns.max():.1f}"
        lines.append(
            f"| {task.name} | {task.obs_dim} | {task.act_dim} | {stats.transitions:,} | {len(returns)} "
            f"({stats.terminated} / {stats.truncated}) | {summary} | {stats.max_abs_return:.1f} |"
        )
    return "\n".join(lines)


def validate(args: Args) -> None:
    if not args.dataset:
        raise ConfigError("--dataset is required: a dataset folder (docs/dataset-format.md)")
    check_positive(args, "num_updates", "updates_per_call", "width", "actor_width", "num_atoms", "eval_interval",
                   "eval_episodes", "prefetch", "batch_size", "max_transitions_per_task", "v_max", "learning_rate",
                   "temperature_learning_rate", "init_temperature")  # fmt: skip
    check_run_args(args)
    for name in ("num_updates", "eval_interval", "log_interval", "checkpoint_interval"):
        if getattr(args, name) % args.updates_per_call:
            raise ConfigError(
                f"--{name.replace('_', '-')} {getattr(args, name)} is not a multiple of --updates-per-call "
                f"{args.updates_per_call}"
            )
    check_nonnegative(args, "depth", "actor_depth", "embedding_dim", "bc_weight", "q_weight", "weight_decay", "seed")
    check_discount_and_tau(args)
    if args.loss == "ce" and args.num_atoms < 2:
        raise ConfigError("--num-atoms must be at least 2 for the categorical critic")


def check_eval_assets(args: Args, tasks: list[TaskSpec]) -> None:
    """The evaluation envs' flags and files (ShadowHand shapes), checked before training."""
    try:
        args.check_env_flags()
        with_shadowhand_assets(tasks, args.shadowhand_assets, whole_suite=False)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def print_sizes(
    args: Args, dataset: Dataset, state: TrainState, max_abs_return: Float[Array, " tasks"]
) -> None:
    """Device, dataset, parameter counts and each task's G."""
    obs_dim, act_dim = dataset.obs.shape[1], dataset.action.shape[1]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(jax.devices())} visible")
    print(f"dataset {args.dataset}: {int(dataset.offsets[-1]):,} transitions, tasks ({len(dataset.tasks)}): "
          f"{', '.join(t.name for t in dataset.tasks)}; obs {obs_dim}, action {act_dim} (padded)")  # fmt: skip
    print(f"parameters: critic ensemble {count_parameters(state.critic):,} (+ target), "
          f"actor {count_parameters(state.actor):,}; G per task {[round(float(g), 1) for g in max_abs_return]}")  # fmt: skip


class Run(RunDir):
    """The run directory (common/run.py: config.json, metrics.jsonl), and what this script adds:
    its checkpoints and resuming from them, and console lines counted in updates."""

    @classmethod
    def open(cls, args: Args) -> "Run":
        name = f"offline__w{args.width}__s{args.seed}__{int(time.time())}"
        return super().open(args, name, RESUMABLE_FIELDS, args.num_updates)

    def restore(self, state: TrainState, fns: AgentFns) -> tuple[TrainState, int]:
        """The latest checkpoint's state, on the devices, and its update count."""
        state, host_state, _ = load_checkpoint(self.dir, state)  # no replay: the data is the dataset
        state = fns.replicate(state)
        step = host_state["step"]
        print(f"resumed {self.dir} at update {step}")
        drop_metrics_after(self.dir, step)
        self.record_config()
        return state, step

    def start(self, step: int) -> None:
        super().start(step)
        self.last_wait = 0.0  # seconds spent waiting for batches, at the last console line

    def log_progress(self, step: int, metrics: dict, wait_s: float) -> None:
        """The console line: updates/s and the share of time spent waiting for batches since the
        last line, and the update's metrics."""
        host_metrics = check_finite(metrics, step, self.dir, "update")  # also waits for the update
        now = time.time()
        wait = (wait_s - self.last_wait) / (now - self.last_log_time)
        rate = self.args.log_interval / (now - self.last_log_time)
        losses = " ".join(f"{k} {float(v):.3g}" for k, v in host_metrics.items())
        print(f"update {step}/{self.args.num_updates} | {rate:.1f} updates/s | data wait {100 * wait:.0f}% | "
              f"{losses}", flush=True)  # fmt: skip
        self.last_log_time, self.last_wait = now, wait_s

    def evaluation(self, step: int, results: dict, metrics: dict, wait_s: float) -> None:
        """Append a record of the evaluation results and the update's metrics to metrics.jsonl (and
        wandb, --track); one console line."""
        data_wait = wait_s / (time.time() - self.start_time)
        record = self.record(step, results, metrics, "update", **self.args.protocol(), data_wait=data_wait)
        meaning = score_meaning(list(map(TASKS.__getitem__, results)))
        self.log_evaluation(record, f"eval update {step}: mean score {record['mean_score']:.3f} ({meaning})")

    def checkpoint(self, step: int, state: TrainState, metrics: dict) -> None:
        check_finite(metrics, step, self.dir, "update")  # never checkpoint a diverged learner
        save_checkpoint(self.dir, step, state, {"step": step}, keep=self.args.keep_checkpoints)
        self.checkpoint_written(step, "update")


if __name__ == "__main__":
    # --resume RUN_DIR alone: its config.json gives the rest; bad input is one line, exit 2
    run_main(main, parse_args(Args), (ConfigError, FloatingPointError, EnvError, DatasetError))
