"""Transfer a multi-task SAC + BRC agent to new tasks through its task embedding alone.

Paper Section 4 "Transfer learning", Section 5 "Embedding-tuning transfer", Figures 11
and 24: the actor and critic of a multi-task `sac_brc.py` checkpoint stay frozen and the
agent adapts to a held-out task only through the task embedding it is conditioned on.

    --mode zero-shot   act with a randomly chosen pretrained embedding (no target data)
    --mode few-shot    rank every pretrained embedding by the frozen critic's mean squared Bellman
                       residual on one shared set of about 300 target transitions, keep the best
                       (and the ranking); --few-shot-criterion return: the paper's literal
                       reading, each embedding acts for its share of the budget, best return wins
    --mode tune        freeze actor and critic, create a new embedding and optimise only it by
                       the critic's cross-entropy TD loss on fewer than 1000 target transitions

Each mode then evaluates the chosen (or tuned) embedding on every target task and writes
`runs/<run_name>/` like a `sac_brc.py` run (config.json, metrics.jsonl), plus
`few_shot_table.json` (few-shot) or `tuned_embedding.npy` (tune).

    python sac_brc.py --tasks drawer-close,button-press-topdown,window-open --width 128 \
        --total-steps 12000 --run-name pretrain
    python transfer_embedding.py --checkpoint runs/pretrain --tasks reach --mode few-shot

Single-file promise: the network classes below are copied unchanged from sac_brc.py so that
this script reads a `sac_brc.py` checkpoint (`eqx.tree_serialise_leaves` of its TrainState)
without importing it. Model transfer and data transfer live in sac_brc.py (`--init-from`,
`--init-buffer`); docs/transfer.md has the whole recipe.

The file, in reading order (section headers `# ---- name`); all but the run harness is the method:
    Args                   the flags, then PretrainConfig: the checkpoint's fields that fix its networks
    networks               CriticMember, Critic, Actor, TrainState and the TD-target helpers,
                           copied unchanged from sac_brc.py
    loading a checkpoint   the frozen TrainState and each pretraining task's G_i
    acting and the embedding objectives
                           act, candidate_losses (few-shot's Bellman residual), embedding_td_loss
                           and tune (embedding tuning), then make_fns, which only jits them
    target-task data, scoring, evaluation
                           collect, tuning_g, few_shot_ranking, evaluate
    main                   the three modes, one call per step
    ==== run harness       not needed to learn the method: validation, the run
                           directory and the result files (few_shot_table.json,
                           tuned_embedding.npy, metrics.jsonl)
"""

import dataclasses
import json
import math
import os
import sys
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
import tyro
from jaxtyping import Array, Float, Int, PRNGKeyArray

from common.bronet import BroNet, Linear, make_ensemble, orthogonal_linear
from common.categorical import categorical_projection, cross_entropy, make_support
from common.cli import own_flags_first
from common.envs import (
    EnvArgs, EnvError, MultiTaskEnv, eval_envs_and_episodes, evaluate_policy, with_shadowhand_assets,
)  # fmt: skip
from common.run import ConfigError, atomic_write_text, require_intact
from common.suites import CONTINUOUS, TASKS, TaskSpec, resolve_tasks
from common.transfer import network_sizes


@own_flags_first
@dataclass
class Args(EnvArgs):
    checkpoint: str
    """a multi-task `sac_brc.py` run directory (its latest checkpoint) or one checkpoints/step_N folder"""
    tasks: tuple[str, ...] = ()
    """target tasks (comma- or space-separated, e.g. `reach` or `assembly,disassemble`); overrides --suite"""
    suite: str | None = None
    """target suite, e.g. a transfer split; used when --tasks is not given"""
    mode: Literal["zero-shot", "few-shot", "tune"] = "few-shot"
    """zero-shot: a random pretrained embedding; few-shot: the best pretrained embedding; tune: a new embedding"""
    budget: int | None = None
    """target transitions per task the mode may collect; default 300 for few-shot (paper Section 5), 900 for tune (paper: fewer than a thousand)"""
    few_shot_criterion: Literal["residual", "return"] = "residual"
    """few-shot: rank the pretrained embeddings by the frozen critic's Bellman residual on one shared set of --budget target transitions (docs/transfer.md), or by the paper's literal criterion, return: each embedding acts deterministically for --budget / (number of embeddings) steps of every target task, the highest return wins"""
    tune_steps: int = 1_000
    """tune: gradient steps on the new embedding (the paper gives no number)"""
    tune_learning_rate: float = 3e-3
    """tune: Adam learning rate of the new embedding (the paper gives no number)"""
    batch_size: int = 256
    """tune: minibatch of target transitions per gradient step"""
    seed: int = 0
    """seed of the embedding choice or initialisation, the policy's noise and the environments"""
    run_name: str | None = None
    """run directory name under runs/; default transfer__<mode>__s<seed>__<time>"""


DEFAULT_BUDGET = {"zero-shot": 0, "few-shot": 300, "tune": 900}

# Actor log-std squashing range (ref. code).
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


@dataclass(frozen=True)
class PretrainConfig:
    """The fields of the checkpoint's config.json that fix its network shapes and TD target."""

    width: int
    depth: int
    actor_width: int
    actor_depth: int
    embedding_dim: int
    num_atoms: int
    v_max: float
    gamma: float
    loss: str
    task_conditioning: str


# ---------------------------------------------------------------- networks (copied from sac_brc.py)


def uses_task_embedding(args: PretrainConfig, num_tasks: int) -> bool:
    """Embedding conditioning of the pretrained multi-task networks (as sac_brc.py)."""
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

    def __init__(self, obs_dim, act_dim, num_tasks, args: PretrainConfig, key):
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

    def __init__(self, obs_dim, act_dim, num_tasks, embedding_dim, args: PretrainConfig, key):
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


class TrainState(eqx.Module):
    actor: Actor
    critic: Critic
    target_critic: Critic
    log_alpha: Float[Array, ""]
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: Int[Array, ""]  # updates done so far (keys are folded with it)


# ---------------------------------------------------------------- loading a checkpoint


class Pretrained(NamedTuple):
    config: PretrainConfig
    state: TrainState
    task_names: list[str]  # the pretraining tasks, one per embedding row
    obs_dim: int  # padded sizes of the pretraining suite
    act_dim: int
    path: Path  # the checkpoint folder
    max_abs_return: np.ndarray  # G_i of every pretraining task, from the checkpoint's return normaliser


def locate_checkpoint(path: Path) -> tuple[Path, Path]:
    """(run directory, checkpoint folder) for a run directory or a checkpoints/step_N folder."""
    if (path / "state.eqx").exists():
        return path.parent.parent, path
    latest = path / "checkpoints" / "latest"
    if not latest.exists():
        raise ConfigError(
            f"--checkpoint {path}: neither a run directory with checkpoints/latest nor a folder with "
            "state.eqx; give a sac_brc.py run directory such as runs/<run_name>"
        )
    return path, path / "checkpoints" / latest.read_text().strip()


def state_like(config: PretrainConfig, num_tasks: int, obs_dim: int, act_dim: int) -> TrainState:
    """The shapes and structure of sac_brc.py's TrainState, without allocating it."""

    def build(key):
        actor_key, critic_key = jax.random.split(key)
        critic = Critic(obs_dim, act_dim, num_tasks, config, critic_key)
        actor = Actor(obs_dim, act_dim, num_tasks, config.embedding_dim, config, actor_key)
        log_alpha = jnp.zeros((), jnp.float32)
        # hyperparameters do not change the optimiser states' structure, only the classes do
        return TrainState(
            actor,
            critic,
            critic,
            log_alpha,
            optax.adamw(1.0).init(eqx.filter(actor, eqx.is_inexact_array)),
            optax.adamw(1.0).init(eqx.filter(critic, eqx.is_inexact_array)),
            optax.adam(1.0, b1=0.5).init(log_alpha),
            jnp.zeros((), jnp.int32),
        )

    return eqx.filter_eval_shape(build, jax.random.key(0))


def load_pretrained(path: Path) -> Pretrained:
    """Read config.json and the latest (or given) checkpoint of a multi-task sac_brc.py run.

    A checkpoint whose arrays do not match its config.json (another width, depth, atom
    count, task count...) is rejected with one message instead of being half-loaded.
    """
    run_dir, ckpt = locate_checkpoint(path)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"--checkpoint {path}: no config.json in {run_dir}; give a sac_brc.py run directory")
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except ValueError as error:
        raise ConfigError(f"{run_dir / 'config.json'} cannot be read ({error})") from None
    try:
        config = PretrainConfig(**{f.name: saved[f.name] for f in dataclasses.fields(PretrainConfig)})
        tasks = resolve_tasks(saved["suite"], tuple(saved["tasks"]))
    except (KeyError, ValueError) as error:
        raise ConfigError(f"{run_dir / 'config.json'} is not a sac_brc.py config ({error})") from None
    if len(tasks) < 2 or config.task_conditioning != "embedding" or config.loss != "ce":
        raise ConfigError(
            f"{run_dir} is not a multi-task run with task embeddings and the cross-entropy critic "
            f"({len(tasks)} task(s), --task-conditioning {config.task_conditioning}, --loss {config.loss}); "
            "embedding transfer needs a sac_brc.py run on several tasks with the default BRC settings"
        )
    require_intact(ckpt, "--checkpoint")
    obs_dim, act_dim = network_sizes(saved, run_dir, tasks)  # a run that used --init-from/--init-buffer: theirs
    like = state_like(config, len(tasks), obs_dim, act_dim)
    try:
        with open(ckpt / "state.eqx", "rb") as f:
            state = eqx.tree_deserialise_leaves(f, like)
            trailing = f.read(1)  # a checkpoint with more arrays than this configuration
    except Exception as error:  # noqa: BLE001 (any shape or structure mismatch)
        trailing, state = b"?", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    if trailing:
        raise ConfigError(
            f"checkpoint {ckpt} does not match {run_dir / 'config.json'} (width {config.width}, depth "
            f"{config.depth}, actor width {config.actor_width}, {config.num_atoms} atoms, {len(tasks)} tasks; "
            f"{state if isinstance(state, str) else 'extra arrays in the file'}); "
            "use the checkpoint together with the config.json of the run that wrote it"
        )
    try:
        normalizer = json.loads((ckpt / "host.json").read_text())["normalizer"]
    except (OSError, KeyError, ValueError):
        raise ConfigError(f"checkpoint {ckpt} has no return normaliser in host.json; it is not a sac_brc.py checkpoint") from None
    max_abs_return = normalizer_g(normalizer, config.gamma)
    return Pretrained(config, state, [t.name for t in tasks], obs_dim, act_dim, ckpt, max_abs_return)


def normalizer_g(normalizer: dict, gamma: float) -> np.ndarray:
    """G_i from a checkpoint's `ReturnNormalizer.state_dict()`, as its `g()` gives them: a
    task whose first episode had not ended counts its episode so far as truncated."""
    g = np.array(normalizer["max_abs_return"], np.float64)
    for i, ended in enumerate(normalizer["episode_ended"]):
        if not ended and normalizer["current_rewards"][i]:
            g[i] = np.abs(discounted_returns(np.array(normalizer["current_rewards"][i]), gamma, True)).max()
    return g


# ---------------------------------------------------------------- acting and the embedding objectives
# Pure functions of the frozen networks, the target data and their keys; `config`, `alpha`,
# `support` and `act_dim` are constants of the run (the checkpoint's). make_fns below only jits them.


class TargetData(NamedTuple):
    """Transitions collected on the target tasks, `(tasks, budget, ...)`; `size` per task."""

    obs: Float[Array, "tasks budget obs"]
    action: Float[Array, "tasks budget act"]
    reward: Float[Array, "tasks budget"]
    next_obs: Float[Array, "tasks budget obs"]
    terminated: Float[Array, "tasks budget"]
    size: Int[Array, " tasks"]


def unit(embedding: Float[Array, "*rows embedding"]) -> Float[Array, "*rows embedding"]:
    """Rows divided by their L2 norm, as Critic.embed does (ref. code)."""
    return embedding / jnp.linalg.norm(embedding, axis=-1, keepdims=True)


def act(
    actor: Actor, obs: Float[Array, "envs obs"], embedding: Float[Array, "envs embedding"], key: PRNGKeyArray
) -> Float[Array, "envs act"]:
    mean, log_std = jax.vmap(actor, in_axes=(0, 0, None))(obs, unit(embedding), 0)
    return jax.vmap(sample_tanh_gaussian)(mean, log_std, jax.random.normal(key, mean.shape))[0]


def deterministic_policy(
    actor: Actor, obs: Float[Array, "envs obs"], embedding: Float[Array, "envs embedding"]
) -> Float[Array, "envs act"]:
    mean, _ = jax.vmap(actor, in_axes=(0, 0, None))(obs, unit(embedding), 0)
    return jnp.tanh(mean)


def candidate_losses(
    actor: Actor, critic: Critic, target_critic: Critic, data: TargetData,
    max_abs_return: Float[Array, " candidates"], key: PRNGKeyArray,
    *, config: PretrainConfig, alpha: Float[Array, ""], support: Float[Array, " atoms"], act_dim: int,
) -> Float[Array, "tasks candidates"]:  # fmt: skip
    """Few-shot criterion: for every target task and every pretrained embedding k, the mean
    squared Bellman residual of the frozen critic read as task k (its embedding in actor,
    critic and target, rewards scaled by its own G_k) on all of the task's transitions:
    expected Q (mean of both critics) minus the expected soft TD target, in the critic's
    normalised units as read for k (not divided back into reward units: the scale of k is part
    of what is ranked). Not the cross-entropy: that
    adds the target distribution's entropy, which differs between candidates and outranks
    the fit. The next actions use the same noise for every k."""
    num_tasks, budget = data.reward.shape
    flat = lambda x: x.reshape(num_tasks * budget, *x.shape[2:])
    obs, action, next_obs = flat(data.obs), flat(data.action), flat(data.next_obs)
    reward, mask = flat(data.reward), 1.0 - flat(data.terminated)
    noise = jax.random.normal(key, (len(reward), actor.act_dim))
    scale = reward_scale(max_abs_return, alpha, act_dim, config.gamma, config.v_max)

    def loss_as(k: Int[Array, ""]) -> Float[Array, " tasks"]:
        task = jnp.full(len(reward), k)
        embedding = jnp.broadcast_to(critic.embed(k), (len(reward), config.embedding_dim))
        next_mean, next_log_std = jax.vmap(actor, in_axes=(0, 0, None))(next_obs, embedding, 0)
        next_action, next_log_prob = jax.vmap(sample_tanh_gaussian)(next_mean, next_log_std, noise)
        target = categorical_td_target(
            reward * scale[k], mask, next_log_prob, target_critic(next_obs, next_action, task), alpha,
            config.gamma, support,
        )  # fmt: skip
        q = (jax.nn.softmax(critic(obs, action, task), axis=-1) @ support).mean(axis=1)
        residual = q - target @ support
        return (residual**2).reshape(num_tasks, budget).mean(axis=1)

    return jax.lax.map(loss_as, jnp.arange(len(max_abs_return))).T


def embedding_td_loss(
    params: tuple[Actor, Critic],
    target_critic: Critic,
    data: TargetData,
    scale: Float[Array, " tasks"],
    key: PRNGKeyArray,
    *,
    config: PretrainConfig,
    alpha: Float[Array, ""],
    support: Float[Array, " atoms"],
    batch_size: int,
) -> Float[Array, ""]:
    """Embedding tuning's objective: the critic's cross-entropy TD loss (mean over a minibatch of
    `batch_size` target transitions, sum over both critics), differentiated by `tune` with
    respect to the embedding table only."""
    actor, critic = params
    sample_key, index_key, next_key = jax.random.split(key, 3)
    num_tasks, _ = data.reward.shape
    task = jax.random.randint(sample_key, (batch_size,), 0, num_tasks)
    index = jax.random.randint(index_key, (batch_size,), 0, data.size[task])
    obs, action, next_obs = data.obs[task, index], data.action[task, index], data.next_obs[task, index]
    reward = data.reward[task, index] * scale[task]  # paper eq. 3
    mask = 1.0 - data.terminated[task, index]
    # next action from the frozen actor given the current (stop-gradient) embedding, as in sac_brc
    embedding = jax.lax.stop_gradient(jax.vmap(critic.embed)(task))
    next_mean, next_log_std = jax.vmap(actor, in_axes=(0, 0, None))(next_obs, embedding, 0)
    next_action, next_log_prob = jax.vmap(sample_tanh_gaussian)(
        next_mean, next_log_std, jax.random.normal(next_key, next_mean.shape)
    )
    # the frozen target critic reads the new embedding too (there is no pretrained row for it)
    target_table = jax.lax.stop_gradient(critic.task_embedding)
    target_critic = eqx.tree_at(lambda c: c.task_embedding, target_critic, target_table)
    target = categorical_td_target(
        reward, mask, next_log_prob, target_critic(next_obs, next_action, task), alpha, config.gamma, support
    )
    out = critic(obs, action, task)
    return jax.vmap(jax.vmap(cross_entropy, in_axes=(None, 0)))(target, out).mean(axis=0).sum()


def tune(
    params: tuple[Actor, Critic],
    target_critic: Critic,
    data: TargetData,
    max_abs_return: Float[Array, " tasks"],
    key: PRNGKeyArray,
    *,
    config: PretrainConfig,
    alpha: Float[Array, ""],
    support: Float[Array, " atoms"],
    act_dim: int,
    batch_size: int,
    tune_steps: int,
    optimizer: optax.GradientTransformation,
) -> tuple[tuple[Actor, Critic], Float[Array, " steps"]]:
    """`tune_steps` Adam steps on the embedding table as one lax.scan; returns the losses.

    Freezing as in Equinox's FAQ: `params` is partitioned into the embedding table (the
    only leaf that is differentiated and updated) and everything else, which is closed
    over and recombined untouched, so the networks stay bit-identical (tested)."""
    scale = reward_scale(max_abs_return, alpha, act_dim, config.gamma, config.v_max)
    only_embedding = eqx.tree_at(lambda p: p[1].task_embedding, jax.tree.map(lambda _: False, params), True)
    embedding, frozen = eqx.partition(params, only_embedding)
    td_loss = partial(embedding_td_loss, config=config, alpha=alpha, support=support, batch_size=batch_size)

    def step(carry, step_key):
        embedding, opt_state = carry
        loss_fn = lambda e: td_loss(eqx.combine(e, frozen), target_critic, data, scale, step_key)
        loss, grads = eqx.filter_value_and_grad(loss_fn)(embedding)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (eqx.apply_updates(embedding, updates), opt_state), loss

    carry = (embedding, optimizer.init(embedding))
    (embedding, _), losses = jax.lax.scan(step, carry, jax.random.split(key, tune_steps))
    return eqx.combine(embedding, frozen), losses


class TransferFns(NamedTuple):
    """The jitted entry points; each traces once per run."""

    act: callable
    act_deterministic: callable  # evaluation (--eval-protocol), and few-shot by return
    candidate_losses: callable  # few-shot: the Bellman residual of every pretrained embedding on the target data
    tune: callable


def make_fns(pretrained: Pretrained, args: Args) -> TransferFns:
    """The run's constants (atom support, the frozen temperature, the tuning optimiser) bound
    into the functions above, each jitted."""
    config, act_dim = pretrained.config, pretrained.act_dim
    support = make_support(config.num_atoms, config.v_max)
    # the pretrained log_alpha stays frozen with the networks; target entropy is not needed
    alpha = jnp.exp(pretrained.state.log_alpha)
    constants = {"config": config, "alpha": alpha, "support": support}
    optimizer = optax.adam(args.tune_learning_rate)
    tuning = {"act_dim": act_dim, "batch_size": args.batch_size, "tune_steps": args.tune_steps,
              "optimizer": optimizer}  # fmt: skip
    jit = lambda fn, traces=1: jax.jit(eqx.debug.assert_max_traces(fn, max_traces=traces))
    return TransferFns(
        act=jit(act),
        act_deterministic=jit(deterministic_policy, traces=2),  # the eval envs; few-shot by return: the train envs
        candidate_losses=jit(partial(candidate_losses, **constants, act_dim=act_dim)),
        tune=jit(partial(tune, **constants, **tuning)),
    )


# ---------------------------------------------------------------- target-task data, scoring, evaluation


def collect(
    fns: TransferFns,
    actor: Actor,
    env: MultiTaskEnv,
    embedding: np.ndarray,
    budget: int,
    gamma: float,
    key: PRNGKeyArray,
) -> tuple[TargetData, np.ndarray]:
    """`budget` environment steps per task with the frozen stochastic policy, each a stored transition.

    Returns the data and each task's G_i (paper eq. 2) from the collected episodes; the
    episode still running at the end counts as truncated (sac_brc.py's start-up rule).
    """
    num_tasks, obs_dim = len(env.tasks), env.obs_dim
    buffers = {k: np.zeros((num_tasks, budget, *s), np.float32) for k, s in
               [("obs", (obs_dim,)), ("action", (actor.act_dim,)), ("reward", ()),
                ("next_obs", (obs_dim,)), ("terminated", ())]}  # fmt: skip
    size = np.zeros(num_tasks, np.int32)
    episode_rewards = [[] for _ in range(num_tasks)]
    max_abs_return = np.zeros(num_tasks)
    obs = env.reset()
    for step in range(budget):
        action = np.asarray(fns.act(actor, jnp.asarray(obs), jnp.asarray(embedding), jax.random.fold_in(key, step)))
        out = env.step(action)
        for i in range(num_tasks):
            for name, value in [("obs", obs[i]), ("action", action[i]), ("reward", out.reward[i]),
                                ("next_obs", out.next_obs[i]), ("terminated", out.terminated[i])]:  # fmt: skip
                buffers[name][i, size[i]] = value
            size[i] += 1
            episode_rewards[i].append(float(out.reward[i]))
            if out.terminated[i] or out.truncated[i]:
                returns = discounted_returns(np.array(episode_rewards[i]), gamma, not out.terminated[i])
                max_abs_return[i] = max(max_abs_return[i], np.abs(returns).max())
                episode_rewards[i] = []
        obs = out.obs
    for i in range(num_tasks):
        if episode_rewards[i]:
            partial = discounted_returns(np.array(episode_rewards[i]), gamma, True)
            max_abs_return[i] = max(max_abs_return[i], np.abs(partial).max())
    data = TargetData(**{k: jnp.asarray(v) for k, v in buffers.items()}, size=jnp.asarray(np.maximum(size, 1)))
    return data, max_abs_return


def tuning_g(
    tasks: list[TaskSpec], pretrained: Pretrained, collected: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """G_i with which embedding tuning scales each target task's rewards, and where it came from.

    A target task whose domain the pretraining suite has takes the mean G of those pretraining
    tasks, from the checkpoint's return normaliser: a budget of < 1000 transitions is less than
    one HumanoidBench or DMC episode, so its own estimate would come from a partial episode.
    Within MetaWorld, DMC and ShadowHand the tasks share a reward scale; HumanoidBench's do not
    (success returns from 350 to 12,000), so there the mean is a coarse guess; metrics.jsonl
    records each value and its source (`g`). Otherwise the collected episodes' G (the one still running counted
    as truncated, sac_brc.py's rule)."""
    g, source = collected.astype(np.float64).copy(), ["collected"] * len(tasks)
    for i, task in enumerate(tasks):
        same = [k for k, name in enumerate(pretrained.task_names) if TASKS[name].domain == task.domain]
        if same:
            g[i], source[i] = float(np.mean(pretrained.max_abs_return[same])), f"checkpoint ({len(same)} {task.domain} tasks)"
    return g, source


def few_shot_ranking(
    losses: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Candidates of every task from the lowest residual up, ties in random (seeded) order."""
    return np.stack([np.lexsort((rng.random(len(row)), row)) for row in losses])


def candidate_returns(
    policy, env: MultiTaskEnv, table: Float[np.ndarray, "candidates embedding"], share: int
) -> Float[np.ndarray, "tasks candidates"]:
    """The paper's literal few-shot criterion ("the best-performing embedding from the
    pretraining set"): each pretrained embedding in turn acts with `policy(obs, embedding per
    env) -> actions` (the frozen deterministic actor), from a reset, for `share` steps of every
    target task (one env per task); its score is the reward summed over those steps, the
    return of its share of the budget."""
    returns = np.zeros((len(env.tasks), len(table)))
    for k, row in enumerate(table):
        embedding, obs = jnp.asarray(np.repeat(row[None], env.num_envs, axis=0)), env.reset()
        for _ in range(share):
            out = env.step(np.asarray(policy(jnp.asarray(obs), embedding)))
            returns[env.task_ids, k] += out.reward
            obs = out.obs
    return returns


def evaluate_embedding(
    fns: TransferFns, actor: Actor, env: MultiTaskEnv, embedding: np.ndarray, episodes: int
) -> dict[str, dict[str, float]]:
    """Deterministic evaluation, task k acting with `embedding[k]`: `episodes` episodes one after
    another on every eval env (sac_brc.py's protocol)."""
    per_env = jnp.asarray(embedding[env.task_ids])
    policy = lambda obs: np.asarray(fns.act_deterministic(actor, jnp.asarray(obs), per_env))
    return evaluate_policy(env, policy, episodes)


# ---------------------------------------------------------------- main


def main(args: Args) -> None:
    tasks, budget = validate(args)
    pretrained = load_pretrained(Path(args.checkpoint))
    config, state = pretrained.config, pretrained.state
    seen = check_targets(tasks, pretrained)
    num_embeddings = len(pretrained.task_names)
    run_dir = start_run_dir(args, tasks, pretrained, budget)

    fns = make_fns(pretrained, args)
    rng = np.random.default_rng(args.seed)
    choice_key, collect_key, tune_key = jax.random.split(jax.random.key(args.seed), 3)
    pretrained_table = np.asarray(state.critic.task_embedding)
    record: dict = {"mode": args.mode, "step": budget, **args.protocol(), "seen_tasks": seen}
    # observations zero-padded to the pretraining suite's size (the suites' padding rule)
    env_kwargs = dict(seed=args.seed, min_obs_dim=pretrained.obs_dim, **args.env_kwargs())
    env = MultiTaskEnv(tasks, 1, role="train", **env_kwargs)
    # sac_brc.py's evaluation protocol (--eval-protocol); env seeds disjoint between runs and roles
    eval_copies, eval_runs = eval_envs_and_episodes(args.eval_protocol, args.eval_episodes)
    eval_env = MultiTaskEnv(tasks, eval_copies, role="eval", **env_kwargs)
    try:
        actor = state.actor
        if args.mode == "zero-shot":
            chosen = rng.integers(num_embeddings, size=len(tasks))
            embedding = pretrained_table[chosen]
            record["embedding"] = {t.name: pretrained.task_names[c] for t, c in zip(tasks, chosen)}
        elif args.mode == "few-shot" and args.few_shot_criterion == "return":
            share = budget // num_embeddings
            if share == 0:
                raise ConfigError(f"--few-shot-criterion return splits --budget {budget} among the checkpoint's "
                                  f"{num_embeddings} embeddings; pass --budget {num_embeddings} or more")  # fmt: skip
            print(f"few-shot by return: each of {num_embeddings} pretrained embeddings acts for {share} steps of every "
                  f"target task (--budget {budget} split evenly; the rest unused)")  # fmt: skip
            policy = lambda obs, embedding: fns.act_deterministic(actor, obs, embedding)
            returns = candidate_returns(policy, env, pretrained_table, share)
            ranking = few_shot_ranking(-returns, rng)  # highest return first
            embedding = pretrained_table[ranking[:, 0]]
            record["embedding"] = {t.name: pretrained.task_names[c] for t, c in zip(tasks, ranking[:, 0])}
            write_few_shot_table(run_dir, tasks, pretrained.task_names, returns, ranking,
                                 f"return over {share} steps", "return")  # fmt: skip
        elif args.mode == "few-shot":
            # one shared set of target transitions, collected by the frozen actor with a random
            # pretrained embedding per task (the zero-shot policy); every candidate is scored on all of it
            collector = pretrained_table[rng.integers(num_embeddings, size=len(tasks))]
            data, _ = collect(fns, actor, env, collector, budget, config.gamma, collect_key)
            losses = np.asarray(fns.candidate_losses(
                actor, state.critic, state.target_critic, data, jnp.asarray(pretrained.max_abs_return, jnp.float32),
                choice_key,
            ))  # fmt: skip
            ranking = few_shot_ranking(losses, rng)
            chosen = ranking[:, 0]
            embedding = pretrained_table[chosen]
            record["embedding"] = {t.name: pretrained.task_names[c] for t, c in zip(tasks, chosen)}
            write_few_shot_table(run_dir, tasks, pretrained.task_names, losses, ranking,
                                 f"mean squared Bellman residual on {budget} transitions", "bellman_residual")  # fmt: skip
        else:
            # a new embedding per target task, initialised like sac_brc.py's (nn.Embed, ref. code)
            new_table = jax.random.normal(choice_key, (len(tasks), config.embedding_dim)) / math.sqrt(
                config.embedding_dim
            )
            critic = eqx.tree_at(lambda c: c.task_embedding, state.critic, new_table)
            data, collected_g = collect(fns, actor, env, np.asarray(new_table), budget, config.gamma, collect_key)
            max_abs_return, g_source = tuning_g(tasks, pretrained, collected_g)
            record["g"] = {t.name: {"value": float(g), "from": src} for t, g, src in zip(tasks, max_abs_return, g_source)}
            (_, critic), losses = fns.tune(
                (actor, critic), state.target_critic, data, jnp.asarray(max_abs_return, jnp.float32), tune_key
            )
            embedding = np.asarray(critic.task_embedding)
            write_tuned_embedding(run_dir, record, embedding, np.asarray(losses), data.size, budget,
                                  args.tune_steps)  # fmt: skip
        results = evaluate_embedding(fns, actor, eval_env, embedding, eval_runs)
    finally:
        env.close()
        eval_env.close()
    write_results(run_dir, record, results)


# ================================================================ run harness
# Not needed to learn the method: validation and writing the results.


def validate(args: Args) -> tuple[list[TaskSpec], int]:
    if len(args.tasks) == 1 and "," in args.tasks[0]:
        args.tasks = tuple(t for t in args.tasks[0].split(",") if t)
    if not args.tasks and args.suite is None:
        raise ConfigError("give the target tasks with --tasks a,b,c (or a target --suite)")
    try:
        args.check_env_flags()
        tasks = resolve_tasks(args.suite or "", args.tasks, CONTINUOUS)
        tasks = with_shadowhand_assets(tasks, args.shadowhand_assets, whole_suite=not args.tasks)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if atari := [t.name for t in tasks if t.domain == "atari"]:
        raise ConfigError(f"Atari game(s) {', '.join(atari)}: embedding transfer runs on the continuous-control "
                          "tasks a sac_brc.py checkpoint was trained for")  # fmt: skip
    budget = DEFAULT_BUDGET[args.mode] if args.budget is None else args.budget
    for name, value in [("tune_steps", args.tune_steps), ("batch_size", args.batch_size),
                        ("eval_episodes", args.eval_episodes)]:  # fmt: skip
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.mode != "zero-shot" and budget <= 0:
        raise ConfigError(f"--budget must be positive for --mode {args.mode}, got {budget}")
    if args.mode == "zero-shot" and args.budget:
        raise ConfigError("--mode zero-shot uses no target transitions; drop --budget")
    if args.few_shot_criterion != "residual" and args.mode != "few-shot":
        raise ConfigError(f"--few-shot-criterion ranks embeddings for --mode few-shot, not {args.mode}; drop it")
    if not 0 < args.tune_learning_rate < math.inf:
        raise ConfigError(f"--tune-learning-rate must be positive, got {args.tune_learning_rate}")
    if args.seed < 0:  # numpy's generators take no negative seed
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    return tasks, budget


def check_targets(tasks: list[TaskSpec], pretrained: Pretrained) -> list[str]:
    """Rejects target tasks the frozen networks cannot read; warns about (and returns) the
    targets that were pretraining tasks."""
    too_big = [t.name for t in tasks if t.obs_dim > pretrained.obs_dim or t.act_dim > pretrained.act_dim]
    if too_big:
        raise ConfigError(
            f"target task(s) {', '.join(too_big)} have more observations or actions than the pretraining "
            f"suite ({pretrained.obs_dim} / {pretrained.act_dim}); a frozen network cannot read them"
        )
    seen = [t.name for t in tasks if t.name in pretrained.task_names]
    if seen:  # a split mistake must not pass silently; recorded in metrics.jsonl too
        print(f"warning: target task(s) {', '.join(seen)} were pretraining tasks of {pretrained.path}; "
              "this is not transfer to a new task", file=sys.stderr)  # fmt: skip
    return seen


def start_run_dir(args: Args, tasks: list[TaskSpec], pretrained: Pretrained, budget: int) -> Path:
    """Creates runs/<run_name>/ with config.json and prints the plan."""
    run_dir = Path("runs") / (args.run_name or f"transfer__{args.mode}__s{args.seed}__{int(time.time())}")
    if run_dir.exists():
        raise ConfigError(f"{run_dir} exists already; pick another --run-name")
    config, num_embeddings = pretrained.config, len(pretrained.task_names)
    print(
        f"checkpoint {pretrained.path}: {num_embeddings} pretraining tasks ({', '.join(pretrained.task_names)}), "
        f"width {config.width}; targets: {', '.join(t.name for t in tasks)}; mode {args.mode}, budget {budget}"
    )
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.json", json.dumps(dataclasses.asdict(args) | {"budget": budget}, indent=2))
    return run_dir


def write_few_shot_table(
    run_dir: Path,
    tasks: list[TaskSpec],
    task_names: list[str],
    scores: np.ndarray,
    ranking: np.ndarray,
    criterion: str,
    field: str,
) -> None:
    """few_shot_table.json: every target task's candidates, best first, each with its score
    (`field`: bellman_residual or return); the top ten on the console."""
    table = {
        t.name: [{"embedding": task_names[k], field: float(scores[i, k])} for k in ranking[i]]
        for i, t in enumerate(tasks)
    }  # fmt: skip
    atomic_write_text(run_dir / "few_shot_table.json", json.dumps(table, indent=2))
    for name, rows in table.items():
        print(f"few-shot ranking on {name} ({criterion}):")
        for rank, row in enumerate(rows[:10], 1):
            print(f"  {rank:3d}. {row['embedding']:<28} {row[field]:.4g}")
        if len(rows) > 10:
            print(f"  ... {len(rows) - 10} more in {run_dir / 'few_shot_table.json'}")


def write_tuned_embedding(
    run_dir: Path, record: dict, embedding: np.ndarray, losses: np.ndarray, size: Int[Array, " tasks"],
    budget: int, tune_steps: int,
) -> None:  # fmt: skip
    """Stops on a non-finite TD loss; else tuned_embedding.npy, the first and last losses in
    `record`, and one console line."""
    if not np.isfinite(losses).all():
        raise ConfigError("the TD loss became non-finite while tuning; try a lower --tune-learning-rate")
    tmp = run_dir / "tuned_embedding.tmp.npy"
    np.save(tmp, embedding)
    os.replace(tmp, run_dir / "tuned_embedding.npy")
    record["step"] = int(budget)
    record["tune_loss_first"], record["tune_loss_last"] = float(losses[:10].mean()), float(losses[-10:].mean())
    print(f"tuned {len(embedding)} embedding(s) on {np.asarray(size).tolist()} transitions: TD loss "
          f"{record['tune_loss_first']:.3f} -> {record['tune_loss_last']:.3f} over {tune_steps} steps")  # fmt: skip


def write_results(run_dir: Path, record: dict, results: dict[str, dict]) -> None:
    """The evaluation and the mean score appended to metrics.jsonl, and printed."""
    record.update(
        tasks=results, mean_score=float(np.mean([r["score"] for r in results.values()])), time=time.time()
    )
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    for name, r in results.items():
        success = "" if r["success"] is None else f", success {r['success']:.2f}"
        print(f"eval {name}: return {r['return']:.1f}{success}"
              + (f" (embedding of {record['embedding'][name]})" if "embedding" in record else " (tuned embedding)"))  # fmt: skip
    print(f"done: mean score {record['mean_score']:.3f}; results in {run_dir}")


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    try:
        main(cli_args)
    except (ConfigError, EnvError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
