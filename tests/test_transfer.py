"""Transfer: transfer_embedding.py (zero-shot, few-shot, tune) and sac_brc.py --init-from / --init-buffer.

One tiny multi-task sac_brc.py run (module fixture) provides the checkpoint and the
recorded dataset that every test transfers from.
"""

import dataclasses
import json
import shutil
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sac_brc
import transfer_embedding as te
from common.envs import MultiTaskEnv
from common.suites import resolve_tasks
from common.transfer import load_prior_data, read_pretrained, warn_if_seen
from tests.conftest import run_script

TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--embedding-dim", "8"]
PRETRAIN_TASKS = "drawer-close,window-open"


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """runs/pre: 2 MetaWorld tasks, 200 steps, with its checkpoint and a --save-buffer dataset."""
    root = tmp_path_factory.mktemp("transfer")
    out = run_script(
        "sac_brc.py", *TINY, "--batch-size", "32", "--tasks", PRETRAIN_TASKS, "--total-steps", "200",
        "--learning-starts", "100", "--eval-interval", "200", "--eval-episodes", "1", "--log-interval", "100",
        "--run-name", "pre", "--save-buffer", "data", cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def transfer_args(**kw) -> te.Args:
    return te.Args(**{"checkpoint": "runs/pre", "tasks": ("reach",), "eval_episodes": 1, "batch_size": 16} | kw)


def leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


@pytest.mark.slow
def test_tune_changes_only_the_embedding(pretrained_run, monkeypatch):
    """Every actor, critic and target-critic parameter is bit-identical after tuning; the
    embedding has moved."""
    monkeypatch.chdir(pretrained_run)
    pretrained = te.load_pretrained(pretrained_run / "runs/pre")
    state = pretrained.state
    fns = te.make_fns(pretrained, transfer_args(tune_steps=25))
    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 50, pretrained.obs_dim, pretrained.act_dim
    data = te.TargetData(
        obs=jnp.asarray(rng.normal(size=(1, n, obs_dim)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, (1, n, act_dim)), jnp.float32),
        reward=jnp.asarray(rng.uniform(0, 10, (1, n)), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(1, n, obs_dim)), jnp.float32),
        terminated=jnp.zeros((1, n), jnp.float32),
        size=jnp.asarray([n], jnp.int32),
    )
    new_table = jnp.asarray(rng.normal(size=(1, pretrained.config.embedding_dim)), jnp.float32)
    critic = eqx.tree_at(lambda c: c.task_embedding, state.critic, new_table)
    before = [np.asarray(x).copy() for x in leaves((state.actor, state.critic.members, state.target_critic))]
    (actor, tuned), losses = fns.tune((state.actor, critic), state.target_critic, data, jnp.asarray([500.0]), jax.random.key(1))
    after = leaves((actor, tuned.members, state.target_critic))
    assert len(before) == len(after) > 10
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b, np.asarray(a))  # bit-identical
    moved = np.abs(np.asarray(tuned.task_embedding) - np.asarray(new_table)).max()
    assert moved > 1e-4, moved
    assert np.isfinite(np.asarray(losses)).all() and losses.shape == (25,)
    # a second call with other values reuses the compiled function (one trace per entry point)
    fns.tune((actor, tuned), state.target_critic, data._replace(reward=data.reward * 2), jnp.asarray([9.0]), jax.random.key(2))
    assert fns.tune._cache_size() == 1


class CountingEnv(MultiTaskEnv):
    """A MultiTaskEnv that counts its steps and the transitions per task (every step is one)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.steps, self.transitions = 0, np.zeros(len(self.tasks), int)

    def step(self, action, active=None):
        out = super().step(action, active)
        self.steps += 1
        self.transitions += 1 if active is None else np.asarray(active)
        return out


@pytest.mark.slow
@pytest.mark.parametrize("budget", [7, 230])
def test_few_shot_and_tune_never_exceed_the_budget(pretrained_run, budget):
    """Count the env steps and the target transitions that few-shot and tune collect: exactly
    --budget per task, every step a stored transition (230 > one 200-step episode, so a reset
    falls inside it); few-shot scores every candidate on all of them."""
    pretrained = te.load_pretrained(pretrained_run / "runs/pre")
    state = pretrained.state
    fns = te.make_fns(pretrained, transfer_args())
    table = np.asarray(state.critic.task_embedding)
    env = CountingEnv(resolve_tasks("reach"), 1, seed=0, min_obs_dim=pretrained.obs_dim)
    try:
        data, max_abs_return = te.collect(fns, state.actor, env, table[:1], budget, pretrained.config.gamma,
                                          jax.random.key(0))  # fmt: skip
        assert env.steps == budget and int(data.size[0]) == env.transitions[0] == budget
        assert max_abs_return[0] > 0
        g = jnp.asarray(pretrained.max_abs_return, jnp.float32)
        losses = np.asarray(fns.candidate_losses(state.actor, state.critic, state.target_critic, data, g, jax.random.key(1)))
        assert losses.shape == (1, 2) and np.isfinite(losses).all() and (losses >= 0).all()
        assert fns.act._cache_size() == 1  # one trace
    finally:
        env.close()


class StepCountEnv(MultiTaskEnv):
    """A stand-in env: one env per task, reward = the action's first entry, no episode ends."""

    def __init__(self, num_tasks: int):  # no envs to start
        self.tasks, self.num_envs, self.task_ids = [None] * num_tasks, num_tasks, np.arange(num_tasks)
        self.resets = self.steps = 0

    def reset(self):
        self.resets += 1
        return np.zeros((self.num_envs, 1), np.float32)

    def step(self, action, active=None):
        self.steps += 1
        return types.SimpleNamespace(reward=action[:, 0].astype(np.float64), obs=np.zeros((self.num_envs, 1)))


def test_few_shot_by_return_scores_each_embedding_on_its_share_of_steps():
    """--few-shot-criterion return: each candidate acts from a reset for `share` steps of every
    task; with a policy whose action is (task + 1) * the embedding's first entry, the returns
    are known by hand."""
    table = np.array([[0.5, 0.0], [-1.0, 0.0], [2.0, 0.0]], np.float32)
    policy = lambda obs, embedding: embedding[:, :1] * (np.arange(len(obs))[:, None] + 1)
    env = StepCountEnv(num_tasks=2)
    returns = te.candidate_returns(policy, env, table, share=3)
    np.testing.assert_allclose(returns, [[1.5, -3.0, 6.0], [3.0, -6.0, 12.0]])
    assert env.resets == 3 and env.steps == 9  # budget 9 = 3 candidates x 3 steps, no more
    assert list(te.few_shot_ranking(-returns, np.random.default_rng(0))[0]) == [2, 0, 1]


def test_few_shot_ranking_breaks_ties_at_random_with_the_seed():
    losses = np.array([[0.5, 0.1, 0.1, 0.3]])
    firsts = {int(te.few_shot_ranking(losses, np.random.default_rng(seed))[0, 0]) for seed in range(20)}
    assert firsts == {1, 2}  # both tied best candidates win for some seed, nothing else
    ranking = te.few_shot_ranking(losses, np.random.default_rng(0))[0]
    assert list(ranking[2:]) == [3, 0]
    np.testing.assert_array_equal(ranking, te.few_shot_ranking(losses, np.random.default_rng(0))[0])


@pytest.mark.slow
def test_tuning_g_comes_from_the_checkpoint_for_a_known_domain(pretrained_run):
    """A target in a pretraining domain takes the mean of those tasks' G from the checkpoint
    (the start-up rule for a task whose first episode had not ended), not the estimate from
    its few collected transitions; an unseen domain keeps the collected estimate."""
    pretrained = te.load_pretrained(pretrained_run / "runs/pre")
    host = json.loads((pretrained.path / "host.json").read_text())["normalizer"]
    by_hand = []
    for i in range(2):  # by hand: discounted returns of the episode so far, bootstrapped as truncated
        if host["episode_ended"][i]:
            by_hand.append(host["max_abs_return"][i])
        else:
            rewards = np.array(host["current_rewards"][i], np.float64)
            tail, best = rewards.mean() / (1 - pretrained.config.gamma), 0.0
            for r in rewards[::-1]:
                tail = r + pretrained.config.gamma * tail
                best = max(best, abs(tail))
            by_hand.append(best)
    np.testing.assert_allclose(pretrained.max_abs_return, by_hand, rtol=1e-12)
    tasks = resolve_tasks("", ("reach", "cheetah-run"))
    g, source = te.tuning_g(tasks, pretrained, np.array([3.0, 7.0]))
    assert g[0] == pytest.approx(np.mean(by_hand)) and source[0].startswith("checkpoint (2 metaworld")
    assert g[1] == 7.0 and source[1] == "collected"


def test_validate_refuses_a_negative_seed_and_atari_targets():
    with pytest.raises(te.ConfigError, match=r"^--seed must be >= 0, got -1$"):
        te.validate(te.Args(checkpoint="unused", tasks=("reach",), seed=-1))
    with pytest.raises(te.ConfigError, match=r"^Atari game\(s\) pong: embedding transfer runs on the continuous"):
        te.validate(te.Args(checkpoint="unused", tasks=("reach", "pong")))


@pytest.mark.slow
def test_rejects_a_checkpoint_of_another_width(pretrained_run, tmp_path):
    """A config.json that does not describe its checkpoint (width 64 vs 32) is refused."""
    copy = tmp_path / "other"
    shutil.copytree(pretrained_run / "runs/pre", copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"width": 64}))
    with pytest.raises(te.ConfigError, match="does not match .*width 64"):
        te.load_pretrained(copy)
    out = run_script("transfer_embedding.py", "--checkpoint", str(copy), "--tasks", "reach", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: checkpoint") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_init_from_rejects_other_networks_and_larger_tasks(pretrained_run, tmp_path):
    run = str(pretrained_run / "runs/pre")
    out = run_script("sac_brc.py", *TINY[:-2], "--embedding-dim", "16", "--suite", "reach", "--init-from", run,
                     cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert "--embedding-dim 8 (checkpoint) vs 16 (now)" in out.stderr
    args = sac_brc.Args(width=32, actor_width=32, num_atoms=21, embedding_dim=8, suite="dog-run", init_from=run)
    with pytest.raises(sac_brc.ConfigError, match="more than the --init-from network reads"):
        read_pretrained(dataclasses.asdict(args), 223, 38)


@pytest.mark.slow
def test_init_from_loads_the_pretrained_networks_and_starts_the_rest_fresh(pretrained_run):
    """Compared with transfer_embedding's independent loader: same actor and critic weights
    and temperature (or --init-temperature with --transfer-temperature reset); fresh one-row
    embedding, optimiser moments and step."""
    run = str(pretrained_run / "runs/pre")
    args = sac_brc.Args(width=32, actor_width=32, num_atoms=21, embedding_dim=8, suite="reach", init_from=run,
                        init_temperature=0.3)  # fmt: skip
    pretrained = read_pretrained(dataclasses.asdict(args), 39, 4)
    fresh, _ = sac_brc.make_agent(args, 1, 39, 4, sac_brc.resolve_batch_size(args, 1), jax.random.key(5))
    state = sac_brc.init_from_checkpoint(pretrained, fresh, args)
    reference = te.load_pretrained(pretrained_run / "runs/pre").state
    for a, b in zip(leaves((state.actor, state.critic.members, state.target_critic.members)),
                    leaves((reference.actor, reference.critic.members, reference.critic.members))):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(state.critic.task_embedding, fresh.critic.task_embedding)
    assert state.critic.task_embedding.shape == (1, 8)
    assert float(state.log_alpha) == float(reference.log_alpha) and int(state.step) == 0
    assert not np.isclose(float(jnp.exp(reference.log_alpha)), 0.3)  # the two cases differ
    assert all(float(jnp.abs(x).max()) == 0 for x in leaves(state.critic_opt_state)[1:] if x.ndim > 0)
    reset_args = dataclasses.replace(args, transfer_temperature="reset")
    reset = sac_brc.init_from_checkpoint(pretrained, fresh, reset_args)
    assert np.isclose(float(jnp.exp(reset.log_alpha)), 0.3)


def toy_transfer_data(num_tasks=2, capacity=16, num_prior=37, obs_dim=5, act_dim=2):
    """An online replay whose obs[0] is +1 (+ the task) and prior data whose obs[0] is -(row + 1),
    so every sampled row says where it came from; 3 pretraining tasks."""
    rng = np.random.default_rng(0)
    buffer = sac_brc.replay_buffer_init(num_tasks, capacity, obs_dim, act_dim)
    for _ in range(capacity // 2):  # half full: sampling must stay within `size`
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        obs[:, 0] = 1 + np.arange(num_tasks)
        buffer = sac_brc.insert(buffer, jnp.asarray(obs), jnp.asarray(rng.uniform(-1, 1, (num_tasks, act_dim)), jnp.float32),
                                jnp.asarray(rng.normal(size=num_tasks), jnp.float32), jnp.asarray(obs),
                                jnp.zeros(num_tasks, bool))  # fmt: skip
    obs = rng.normal(size=(num_prior, obs_dim)).astype(np.float32)
    obs[:, 0] = -(np.arange(num_prior) + 1)
    prior = sac_brc.PriorData(
        jnp.asarray(obs), jnp.asarray(rng.uniform(-1, 1, (num_prior, act_dim)), jnp.float32),
        jnp.asarray(rng.normal(size=num_prior), jnp.float32), jnp.asarray(obs + 0.5),
        jnp.asarray(rng.random(num_prior) < 0.3, jnp.float32), jnp.asarray(np.arange(num_prior) % 3, jnp.int32),
    )  # fmt: skip
    return buffer, prior


@pytest.mark.parametrize("batch_size", [64, 33])
def test_every_data_transfer_batch_is_half_prior_half_online(batch_size):
    """Ball et al.'s symmetric sampling, row by row: exactly batch_size // 2 prior rows in every
    minibatch and in each half of it (the shards of two devices), each a whole prior transition
    with its pretraining task's normaliser row; the others from the new tasks' own buffers."""
    num_tasks = 2
    buffer, prior = toy_transfer_data(num_tasks)
    host = jax.tree.map(np.asarray, prior)
    prior_tasks, seen_rows = [], set()
    for seed in range(40):
        batch = jax.tree.map(np.asarray, sac_brc.sample_symmetric(buffer, prior, batch_size, jax.random.key(seed)))
        from_prior = batch.obs[:, 0] < 0
        assert from_prior.sum() == batch_size // 2
        for half in np.array_split(from_prior[: batch_size // 2 * 2], 2):
            assert half.sum() == len(half) // 2
        for i in np.flatnonzero(from_prior):
            row = int(-batch.obs[i, 0]) - 1
            seen_rows.add(row)
            np.testing.assert_array_equal(batch.action[i], host.action[row])
            np.testing.assert_array_equal(batch.next_obs[i], host.next_obs[row])
            assert batch.reward[i] == host.reward[row] and batch.terminated[i] == host.terminated[row]
            assert batch.reward_task[i] == num_tasks + host.source[row]
            prior_tasks.append(batch.task[i])
        online = ~from_prior
        np.testing.assert_array_equal(batch.obs[online, 0], 1 + batch.task[online])  # its own task's buffer
        np.testing.assert_array_equal(batch.reward_task[online], batch.task[online])
    assert len(seen_rows) == 37  # uniform over all prior transitions
    assert 0.4 < np.mean(prior_tasks) < 0.6  # prior rows go to each new task equally often


def test_data_transfer_update_samples_symmetrically_and_scales_prior_rewards_by_their_own_g():
    """`update(..., prior)` is `update_on` on `sample_symmetric`'s minibatches; a prior row's
    reward is scaled by its pretraining task's G (the entries after the new tasks'): the same
    batch with those rows relabelled as a new task of that G gives the same update."""
    args = sac_brc.Args(width=32, actor_width=16, num_atoms=11, batch_size=8, utd=2)
    num_tasks, obs_dim, act_dim = 2, 5, 2
    batch_size = sac_brc.resolve_batch_size(args, num_tasks)
    state, fns = sac_brc.make_agent(args, num_tasks, obs_dim, act_dim, batch_size, jax.random.key(0))
    buffer, prior = toy_transfer_data(num_tasks, obs_dim=obs_dim, act_dim=act_dim)
    max_abs_return = jnp.asarray([3.0, 7.0, 20.0, 40.0, 80.0])  # 2 new tasks, then 3 pretraining tasks
    key = jax.random.key(5)
    keys = jax.random.split(jax.random.fold_in(key, state.step), (args.utd, 2))
    batches = jax.vmap(lambda k: sac_brc.sample_symmetric(buffer, prior, batch_size, k))(keys[:, 0])
    noises = jax.vmap(lambda k: sac_brc.sample_noise(batch_size, act_dim, k))(keys[:, 1])
    by_update_on, _ = fns.update_on(state, batches, noises, max_abs_return)
    by_update, _ = fns.update(jax.tree.map(jnp.copy, state), buffer, max_abs_return, key, prior)  # donates its state
    for a, b in zip(jax.tree.leaves(by_update), jax.tree.leaves(by_update_on)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # each row's reward is scaled by v_max / (G[reward_task] + lambda): with lambda ~ 0 (alpha
    # 1e-9), relabelling every row to a task of G 10 and multiplying its reward by 10 / G gives
    # the same update, so prior rows were scaled by their own pretraining task's G
    tiny = eqx.tree_at(lambda s: s.log_alpha, state, jnp.log(jnp.asarray(1e-9, jnp.float32)))
    g = np.asarray(max_abs_return)[np.asarray(batches.reward_task)]
    relabelled = batches._replace(reward=batches.reward * jnp.asarray(10.0 / g), reward_task=batches.task)
    a = fns.update_on(tiny, batches, noises, max_abs_return)[0]
    b = fns.update_on(tiny, relabelled, noises, jnp.asarray([10.0, 10.0]))[0]
    for x, y in zip(leaves(a.critic), leaves(b.critic)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    c = fns.update_on(tiny, batches._replace(reward_task=batches.task), noises, max_abs_return)[0]
    assert not all(np.allclose(np.asarray(x), np.asarray(y)) for x, y in zip(leaves(a.critic), leaves(c.critic)))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["zero-shot", "few-shot", "few-shot-return", "tune"])
def test_transfer_embedding_end_to_end(pretrained_run, monkeypatch, mode):
    """Each mode on `reach`; 2 evaluation episodes, so scoring or collecting (one env) and
    evaluation (two envs) run at different batch sizes without a second trace."""
    monkeypatch.chdir(pretrained_run)
    budget = {"zero-shot": None, "few-shot": 20, "few-shot-return": 20, "tune": 40}[mode]
    criterion = "return" if mode == "few-shot-return" else "residual"
    te.main(transfer_args(mode=mode.removesuffix("-return"), budget=budget, tune_steps=10, eval_episodes=2,
                          run_name=f"t-{mode}", few_shot_criterion=criterion))  # fmt: skip
    run_dir = pretrained_run / "runs" / f"t-{mode}"
    (record,) = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["mode"] == mode.removesuffix("-return") and record["tasks"]["reach"]["success"] in (0.0, 0.5, 1.0)
    assert np.isfinite(record["tasks"]["reach"]["return"])
    if mode.startswith("few-shot"):
        table = json.loads((run_dir / "few_shot_table.json").read_text())["reach"]
        assert sorted(r["embedding"] for r in table) == ["drawer-close", "window-open"]
        if criterion == "residual":
            assert table[0]["bellman_residual"] <= table[1]["bellman_residual"]
        else:  # 20 steps split between the 2 embeddings; the higher return first
            assert table[0]["return"] >= table[1]["return"]
        assert record["embedding"]["reach"] == table[0]["embedding"] and record["step"] == 20
    assert record["seen_tasks"] == []
    if mode == "tune":
        assert record["g"]["reach"]["from"].startswith("checkpoint")
        assert np.load(run_dir / "tuned_embedding.npy").shape == (1, 8)
        assert np.isfinite(record["tune_loss_last"])
    if mode == "zero-shot":
        assert record["embedding"]["reach"] in ("drawer-close", "window-open") and record["step"] == 0


@pytest.mark.slow
def test_sac_brc_model_and_data_transfer_end_to_end(pretrained_run, tmp_path):
    """A single-task learner from the checkpoint's weights and with the recorded data."""
    out = run_script(
        "sac_brc.py", *TINY, "--batch-size", "32", "--suite", "reach", "--total-steps", "120",
        "--learning-starts", "100", "--eval-interval", "120", "--eval-episodes", "1", "--log-interval", "60",
        "--init-from", str(pretrained_run / "runs/pre"), "--init-buffer", str(pretrained_run / "runs/pre"),
        "--run-name", "both", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "model transfer: actor and critic from" in out.stdout and "data transfer: 400 of 400" in out.stdout
    assert "prior data 0.00 GiB" in out.stdout  # the prior buffer is in the memory plan
    record = json.loads((tmp_path / "runs/both/metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 120 and np.isfinite(record["critic_loss"])
    # the run's own replay holds only its own 120 transitions: the prior data is a buffer apart
    with np.load(next((tmp_path / "runs/both/checkpoints").glob("step_*")) / "replay.npz") as replay:
        assert replay["size"].tolist() == [120] and replay["obs"].shape[1] == 120
    assert "warning" not in out.stderr


def run_dir_without_arrays(path, config: dict):
    """A run directory as --init-from finds it: config.json and checkpoints/latest naming a
    checkpoint whose files exist (empty: the tests that use it stop before any array is read)."""
    ckpt = path / "checkpoints" / "step_000000100"
    ckpt.mkdir(parents=True)
    (ckpt / "state.eqx").touch()
    (ckpt / "host.json").write_text("{}")
    (path / "checkpoints" / "latest").write_text(ckpt.name)
    (path / "config.json").write_text(json.dumps(config))


def test_init_from_a_config_written_before_a_flag_existed_takes_its_default(tmp_path):
    """A pretraining run's config.json without `loss` and `task_conditioning` (an older version)
    reads as their defaults, as --resume reads it, instead of a mismatch with None."""
    args = sac_brc.Args(width=32, actor_width=32, num_atoms=21, embedding_dim=8, tasks=("reach",),
                        init_from=str(tmp_path / "old"))  # fmt: skip
    old = {k: v for k, v in dataclasses.asdict(args).items() if k not in ("loss", "task_conditioning")}
    run_dir_without_arrays(tmp_path / "old", old | {"tasks": ["drawer-close", "window-open"], "init_from": None})
    pretrained = read_pretrained(dataclasses.asdict(args), 39, 4, dataclasses.asdict(sac_brc.Args()))
    assert [t.name for t in pretrained.tasks] == ["drawer-close", "window-open"]
    assert pretrained.checkpoint == tmp_path / "old" / "checkpoints" / "step_000000100"
    with pytest.raises(sac_brc.ConfigError, match="--loss None \\(checkpoint\\) vs 'ce' \\(now\\)"):
        read_pretrained(dataclasses.asdict(args), 39, 4)  # without the defaults, the gap is a mismatch


def test_init_from_a_run_of_another_script_names_what_it_lacks(tmp_path):
    """A drq_brc.py or offline_brc_bc.py run is not a network --init-from can start from: said
    as such, not as an actor width or checkpoint format mismatch."""
    import drq_brc
    import offline_brc_bc

    args = sac_brc.Args(width=32, actor_width=32, tasks=("reach",), init_from=str(tmp_path))
    for other, lacks in [(drq_brc, "--actor-width"), (offline_brc_bc, "--utd, --total-steps")]:
        shutil.rmtree(tmp_path, ignore_errors=True)
        run_dir_without_arrays(tmp_path, dataclasses.asdict(other.Args()))
        with pytest.raises(sac_brc.ConfigError, match=f"its config.json has no {lacks}, which every sac_brc.py run"):
            read_pretrained(dataclasses.asdict(args), 39, 4, dataclasses.asdict(sac_brc.Args()))


def test_init_from_a_run_that_itself_transferred_reads_its_networks_sizes(tmp_path, monkeypatch):
    """A DMC run made --init-from a MetaWorld run has networks that read 39 / 4, not its own
    tasks' 5 / 1: a transfer from it must read those sizes (through the relative --init-from
    that run was given), and say which source is gone when it is."""
    base = sac_brc.Args(width=32, actor_width=32, num_atoms=21, embedding_dim=8)
    for name, tasks, init_from in [("pre", ["drawer-close", "window-open"], None),
                                   ("mid", ["cartpole-swingup", "pendulum-swingup"], "runs/pre")]:  # fmt: skip
        config = dataclasses.asdict(dataclasses.replace(base, tasks=tuple(tasks), init_from=init_from))
        run_dir_without_arrays(tmp_path / "runs" / name, config)
    monkeypatch.chdir(tmp_path.parent)  # the relative runs/pre is found from where runs/mid started
    args = dataclasses.asdict(dataclasses.replace(base, suite="cartpole-balance", init_from=str(tmp_path / "runs/mid")))
    pretrained = read_pretrained(args, 5, 1)
    assert (pretrained.obs_dim, pretrained.act_dim) == (39, 4)
    assert [t.name for t in pretrained.tasks] == ["cartpole-swingup", "pendulum-swingup"]
    shutil.rmtree(tmp_path / "runs" / "pre")
    with pytest.raises(sac_brc.ConfigError, match="runs/mid was trained with --init-from runs/pre, which fixes the "
                                                  "input sizes of its networks and cannot be read now"):  # fmt: skip
        read_pretrained(args, 5, 1)


@pytest.mark.slow
def test_transfer_from_a_run_that_used_init_buffer(pretrained_run, tmp_path):
    """A DMC run with MetaWorld prior data reads observations 39 / actions 4; sac_brc.py
    --init-from and transfer_embedding.py load its checkpoint at those sizes."""
    shutil.copytree(pretrained_run / "runs/pre", tmp_path / "runs/pre")
    shutil.copytree(pretrained_run / "data", tmp_path / "data")
    common = [*TINY, "--batch-size", "32", "--total-steps", "120", "--learning-starts", "100", "--eval-interval",
              "120", "--eval-episodes", "1", "--log-interval", "60"]  # fmt: skip
    out = run_script("sac_brc.py", *common, "--tasks", "cartpole-swingup,pendulum-swingup", "--init-buffer",
                     "runs/pre", "--run-name", "mid", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    out = run_script("sac_brc.py", *common, "--suite", "cartpole-balance", "--init-from", "runs/mid",
                     "--run-name", "last", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "model transfer: actor and critic from" in out.stdout
    pretrained = te.load_pretrained(tmp_path / "runs/mid")
    assert (pretrained.obs_dim, pretrained.act_dim) == (39, 4) and pretrained.task_names[0] == "cartpole-swingup"
    shutil.rmtree(tmp_path / "data")  # the recorded data fixed those sizes: without it they are unknown
    with pytest.raises(te.ConfigError, match="runs/mid was trained with --init-buffer runs/pre, which fixes"):
        te.load_pretrained(tmp_path / "runs/mid")


def test_a_damaged_checkpoint_to_start_from_is_named_and_left_as_it_is(tmp_path):
    """--init-from and transfer_embedding's --checkpoint check the files they read against the
    checkpoint's manifest: a damaged one is named with the newest intact one to give instead,
    and, unlike --resume of one's own run, nothing in that run is renamed. A damaged replay.npz,
    which a transfer does not read, is no reason to refuse."""
    from common.run import save_checkpoint

    run = tmp_path / "pre"
    run.mkdir()
    for step in (100, 200):
        save_checkpoint(run, step, {"w": jnp.arange(4.0)}, {"env_step": step}, {"obs": np.zeros((2, 3))})
    args = sac_brc.Args(width=32, actor_width=32, num_atoms=21, embedding_dim=8, suite="reach", init_from=str(run))
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(args) | {"tasks": [
        "drawer-close", "window-open"], "init_from": None}))  # fmt: skip
    replay = run / "checkpoints" / "step_000000200" / "replay.npz"
    replay.write_bytes(replay.read_bytes()[:-1])
    assert read_pretrained(dataclasses.asdict(args), 39, 4).checkpoint.name == "step_000000200"
    state = run / "checkpoints" / "step_000000200" / "state.eqx"
    state.write_bytes(state.read_bytes()[:-1])  # cut short, as a copy that ran out of disk
    with pytest.raises(sac_brc.ConfigError, match=r"^--init-from: checkpoint .*step_000000200 is damaged \(state.eqx "
                       r"has \d+ bytes, its manifest says \d+\); give an intact one: --init-from .*step_000000100$"):  # fmt: skip
        read_pretrained(dataclasses.asdict(args), 39, 4)
    with pytest.raises(te.ConfigError, match=r"^--checkpoint: checkpoint .*step_000000200 is damaged"):
        te.load_pretrained(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_000000100", "step_000000200"]
    assert (run / "checkpoints" / "latest").read_text() == "step_000000200"
    state.unlink()
    (run / "checkpoints" / "step_000000100" / "host.json").unlink()
    with pytest.raises(te.ConfigError, match=r"damaged \(state.eqx missing\); that run has no intact checkpoint$"):
        te.load_pretrained(run)


def test_a_config_json_cut_short_is_one_line_for_every_reader_of_a_run(tmp_path):
    """A run directory whose config.json was cut short (a copy that ran out of disk): --init-from,
    --init-buffer, transfer_embedding and offline_brc_bc's --dataset each say so in one error."""
    from common.dataset import DatasetError, index_dataset

    run_dir_without_arrays(tmp_path / "pre", {})
    (tmp_path / "pre" / "config.json").write_text('{"width": 32, "dep')
    run = str(tmp_path / "pre")
    args = dataclasses.asdict(sac_brc.Args(suite="reach", init_from=run, init_buffer=run))
    for read, error in [(lambda: read_pretrained(args, 39, 4), sac_brc.ConfigError),
                        (lambda: load_prior_data(args), sac_brc.ConfigError),
                        (lambda: te.load_pretrained(tmp_path / "pre"), te.ConfigError),
                        (lambda: index_dataset(tmp_path / "pre"), DatasetError)]:  # fmt: skip
        with pytest.raises(error, match="config.json cannot be read \\(Unterminated string"):
            read()


def test_init_buffer_of_an_offline_run_points_to_its_dataset(tmp_path):
    import offline_brc_bc

    (tmp_path / "off").mkdir()
    config = dataclasses.asdict(offline_brc_bc.Args(dataset="data/easy"))
    (tmp_path / "off" / "config.json").write_text(json.dumps(config))
    with pytest.raises(sac_brc.ConfigError, match="an offline_brc_bc.py run, trained on the dataset data/easy: "
                                                  "pass --init-buffer data/easy"):  # fmt: skip
        load_prior_data({"init_buffer": str(tmp_path / "off")})


def test_sac_brc_transfer_to_a_pretraining_task_warns(capsys):
    tasks = resolve_tasks("", ("reach", "window-open"))
    warn_if_seen(tasks, resolve_tasks("", tuple(PRETRAIN_TASKS.split(","))), "--init-buffer runs/pre")
    assert capsys.readouterr().err.startswith("warning: target task(s) window-open were pretraining tasks of "
                                               "--init-buffer runs/pre")  # fmt: skip
    warn_if_seen(tasks[:1], resolve_tasks("", tuple(PRETRAIN_TASKS.split(","))), "--init-from runs/pre")
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_target_that_was_a_pretraining_task_is_named_in_a_warning(pretrained_run, monkeypatch, capsys):
    monkeypatch.chdir(pretrained_run)
    te.main(transfer_args(tasks=("window-open",), mode="zero-shot", run_name="seen"))
    assert "warning: target task(s) window-open were pretraining tasks" in capsys.readouterr().err
    (record,) = [json.loads(l) for l in (pretrained_run / "runs/seen/metrics.jsonl").read_text().splitlines()]
    assert record["seen_tasks"] == ["window-open"]


@pytest.mark.slow
def test_few_shot_finds_a_pretraining_tasks_own_embedding(tmp_path, monkeypatch):
    """Paper Section 5's few-shot choice, checked where the answer is known: the targets are
    pretraining tasks themselves, two with dense rewards (cartpole-swingup, cheetah-run) and
    two with sparse ones (ball-in-cup-catch, cartpole-balance-sparse), in one 4-task checkpoint
    (width 64, 3,000 steps). Chance is 1/4 per pick; over 3 seeds (measured 2026-12-02: dense
    6 of 6, sparse 4 of 6)."""
    targets = "cartpole-swingup,cheetah-run,ball-in-cup-catch,cartpole-balance-sparse"
    out = run_script(
        "sac_brc.py", "--tasks", targets, "--width", "64", "--actor-width", "64", "--num-atoms", "51",
        "--batch-size", "128", "--total-steps", "3000", "--learning-starts", "1000", "--eval-interval", "3000",
        "--eval-episodes", "1", "--log-interval", "1000", "--run-name", "mix", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    monkeypatch.chdir(tmp_path)
    hits = {name: 0 for name in targets.split(",")}
    for seed in range(3):
        te.main(te.Args(checkpoint="runs/mix", tasks=tuple(hits), mode="few-shot", seed=seed, eval_episodes=1,
                        run_name=f"fs{seed}"))  # fmt: skip
        (record,) = [json.loads(l) for l in (tmp_path / f"runs/fs{seed}/metrics.jsonl").read_text().splitlines()]
        for name in hits:
            hits[name] += record["embedding"][name] == name
    dense = hits["cartpole-swingup"] + hits["cheetah-run"]
    sparse = hits["ball-in-cup-catch"] + hits["cartpole-balance-sparse"]
    assert dense >= 5 and sparse >= 3, hits  # chance: 1.5 of 6 each
