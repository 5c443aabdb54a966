"""drq_brc.py: networks, replay (frame stacks, n-step targets), augmentation, target, runs."""

import json
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drq_brc
from common.cli import parse_args
from common.envs import env_seeds
from common.run import ring_fields
from conftest import donated_inputs, signal_when, stopped_at
from common.suites import (
    ATARI_100K,
    ATARI_RANDOM_HUMAN,
    ATARI_TRANSFER,
    TASKS,
    normalized_score,
    resolve_tasks,
)
from drq_brc import Args, ReplayBuffer, make_agent, replay_buffer_init

TINY = {"channels": (4, 8, 8), "width": 16, "num_atoms": 11, "batch_size": 8}
TINY_CLI = ["--channels", "4", "8", "8", "--width", "16", "--num-atoms", "11", "--batch-size", "8"]


def test_q_network_shapes_and_task_agnostic_encoder():
    args = Args(**TINY)
    q = drq_brc.QNetwork(3, args, jax.random.key(0))
    obs = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 84, 84)), jnp.uint8)
    features = q.encoder(obs)
    assert features.shape == (drq_brc.encoder_feature_dim(args.channels),) == (8 * 11 * 11,)
    logits = jax.vmap(q, in_axes=(None, 0))(obs, jnp.arange(3))
    assert logits.shape == (3, 18, 11)
    assert not np.allclose(logits[0], logits[1])  # the embedding conditions the Q-network
    assert q.task_embedding.shape == (3, 32)
    assert q.hidden[0].weight.shape[0] == 8 * 11 * 11 + 32 and len(q.hidden) == args.depth
    single = drq_brc.QNetwork(1, args, jax.random.key(0))
    assert single.task_embedding is None and single.hidden[0].weight.shape[0] == 8 * 11 * 11
    # paper Table 4 at its defaults: the scaled Impala encoder ends with 256 x 11 x 11 features
    assert drq_brc.encoder_feature_dim(Args().channels) == 256 * 11 * 11


def make_buffer(rewards, terminated, truncated, valid, position, size, game_start=None) -> ReplayBuffer:
    """A one-game buffer with the given timeline (frames unused)."""
    capacity = len(rewards)
    as_row = lambda x, dtype: jnp.asarray(np.asarray(x, dtype)[None])
    return ReplayBuffer(
        jnp.zeros((1, capacity, 84, 84), jnp.uint8), jnp.zeros((1, capacity), jnp.int32),
        as_row(rewards, np.float32), as_row(terminated, bool), as_row(truncated, bool),
        as_row(np.zeros(capacity) if game_start is None else game_start, bool), as_row(valid, bool),
        jnp.asarray([position], jnp.int32), jnp.asarray([size], jnp.int32),
    )  # fmt: skip


def loop_n_step(rewards, terminated, truncated, index, n, gamma):
    """Plain Python: sum rewards until n steps or the episode's end; discount and next slot."""
    capacity, total = len(rewards), 0.0
    for k in range(n):
        slot = (index + k) % capacity
        total += gamma**k * rewards[slot]
        if terminated[slot]:
            return total, 0.0, (slot + 1) % capacity
        if truncated[slot]:
            return total, gamma ** (k + 1), (slot + 1) % capacity
    return total, gamma**n, (index + n) % capacity


@pytest.mark.parametrize("n_step", [1, 3, 5])
def test_n_step_targets_match_python_loop_across_episode_ends(n_step):
    """A wrapped ring buffer holding several episodes: terminations, truncations, final
    observation slots (valid=False) and an episode that ends right across the wrap."""
    rng = np.random.default_rng(n_step)
    capacity, gamma = 40, 0.9
    rewards = rng.normal(size=capacity)
    terminated, truncated, valid = (np.zeros(capacity, bool) for _ in range(3))
    valid[:] = True
    # episodes: ..3 | 5..9 (truncated) | 11 (one step) | 13..17 (truncated) | 19..25 | 27..39 (truncated)
    for end, kind in [(3, "term"), (9, "trunc"), (11, "term"), (17, "trunc"), (25, "term"), (39, "trunc")]:
        (terminated if kind == "term" else truncated)[end] = True
        valid[(end + 1) % capacity] = False  # the final observation after the end
        rewards[(end + 1) % capacity] = 0.0
    position = 21  # full buffer: slot 21 is the oldest, 20 the newest
    buffer = make_buffer(rewards, terminated, truncated, valid, position, capacity)
    indices = jnp.arange(capacity)
    total, discount, nxt = jax.jit(
        jax.vmap(drq_brc.n_step_target, in_axes=(None, None, 0, None, None)), static_argnums=(3, 4)
    )(buffer, jnp.int32(0), indices, n_step, gamma)
    for i in range(capacity):
        expected = loop_n_step(rewards, terminated, truncated, i, n_step, gamma)
        np.testing.assert_allclose(float(total[i]), expected[0], rtol=1e-5, atol=1e-6, err_msg=f"slot {i}")
        np.testing.assert_allclose(float(discount[i]), expected[1], rtol=1e-6, err_msg=f"slot {i}")
        assert int(nxt[i]) == expected[2], f"slot {i}"

    # only slots whose window lies in written data and whose history is intact are sampled
    ok = np.asarray(drq_brc.sampleable(buffer, jnp.zeros(capacity, jnp.int32), indices, n_step))
    chronological = [(position + age) % capacity for age in range(capacity)]
    expected_ok = np.zeros(capacity, bool)
    for age, slot in enumerate(chronological):
        expected_ok[slot] = valid[slot] and age >= 3 and age <= capacity - 1 - n_step
    np.testing.assert_array_equal(ok, expected_ok)
    _, index = jax.jit(drq_brc.sample_indices, static_argnums=(1, 2))(buffer, 256, n_step, jax.random.key(0))
    assert set(np.asarray(index).tolist()) <= set(np.flatnonzero(expected_ok).tolist())
    assert len(set(np.asarray(index).tolist())) > len(np.flatnonzero(expected_ok)) // 2  # spread out


def test_frame_stacks_rebuilt_from_single_frames_match_envpool():
    """Store only the newest frame per step of a real game (Breakout: life losses, which do not
    reset envpool's stack, and truncations, which do) in a ring buffer that wraps; every
    stored observation's 4-frame stack rebuilt by indexing equals what envpool returned."""
    (task,) = resolve_tasks("breakout")
    env = drq_brc.AtariGames([task], 1, seed=3, role="train", episodic_life=True, max_episode_steps=40)
    capacity, steps = 64, 200
    buffer = replay_buffer_init(1, capacity)
    insert = jax.jit(drq_brc.insert)
    rng = np.random.default_rng(0)
    current, seen = env.reset(), []
    lives_lost = game_starts = 0
    for _ in range(steps):
        action = rng.integers(0, 18, 1).astype(np.int32)
        out = env.step(action)
        valid = ~out.reset_step
        buffer = insert(buffer, current.obs[:, -1], action, out.reward, valid & out.terminated,
                        valid & out.truncated, current.game_start, valid)  # fmt: skip
        seen.append(current.obs[0])
        lives_lost += int((valid & out.terminated & ~out.game_over)[0])
        game_starts += int(current.game_start[0])
        current = out
    env.close()
    assert lives_lost >= 2 and game_starts >= 3  # the window covers both kinds of boundary
    position = int(buffer.position[0])
    stacks = jax.jit(jax.vmap(lambda i: buffer.frames[0, drq_brc.stack_indices(buffer, jnp.int32(0), i)]))
    for age in range(3, capacity):  # the 3 oldest slots' history is overwritten: never sampled
        slot = (position + age) % capacity
        expected = seen[steps - capacity + age]
        np.testing.assert_array_equal(
            np.asarray(stacks(jnp.asarray([slot])))[0], expected, err_msg=f"age {age}"
        )


def test_random_shift_keeps_shape_and_shifts_by_at_most_pad():
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (32, 4, 20, 20)).astype(np.uint8)
    pad = 4
    out = np.asarray(
        jax.jit(drq_brc.random_shift, static_argnums=1)(jnp.asarray(obs), pad, jax.random.key(0))
    )
    assert out.shape == obs.shape and out.dtype == np.uint8
    found = []
    for b in range(len(obs)):
        padded = np.pad(obs[b], ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        matches = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if np.array_equal(padded[:, pad + dy : pad + dy + 20, pad + dx : pad + dx + 20], out[b])
        ]
        assert matches, f"sample {b} is not a shift of at most {pad} pixels of its input"
        found.append(matches[0])
    assert len(set(found)) > 10  # shifts are drawn per sample


def test_double_q_categorical_target_matches_numpy_loop():
    rng = np.random.default_rng(0)
    batch, actions, atoms, v_max = 5, 4, 7, 3.0
    support = np.linspace(-v_max, v_max, atoms)
    online = rng.normal(size=(batch, actions, atoms)) * 2
    target = rng.normal(size=(batch, actions, atoms)) * 2
    reward = rng.normal(size=batch) * 2
    discount = np.array([0.0, 0.99**3, 0.99, 0.5, 0.99**3])
    got = np.asarray(drq_brc.categorical_double_q_target(
        jnp.asarray(reward, jnp.float32), jnp.asarray(discount, jnp.float32),
        jnp.asarray(online, jnp.float32),
        jnp.asarray(target, jnp.float32), jnp.asarray(support, jnp.float32),
    ))  # fmt: skip
    softmax = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    dz = support[1] - support[0]
    for b in range(batch):
        q_online = [sum(softmax(online[b, a])[j] * support[j] for j in range(atoms)) for a in range(actions)]
        best = int(np.argmax(q_online))  # the online network picks, the target network evaluates
        probs = softmax(target[b, best])
        expected = np.zeros(atoms)
        for j in range(atoms):
            tz = min(max(reward[b] + discount[b] * support[j], -v_max), v_max)
            pos = (tz - support[0]) / dz
            lower, upper = int(np.floor(pos)), int(np.ceil(pos))
            if lower == upper:
                expected[lower] += probs[j]
            else:
                expected[lower] += probs[j] * (upper - pos)
                expected[upper] += probs[j] * (pos - lower)
        np.testing.assert_allclose(got[b], expected, atol=1e-5)


def test_jitted_entry_points_trace_once():
    """act, act_eval, insert and update compile once for a run: a retrace would be a silent slowdown."""
    args = Args(**TINY, utd=2, n_step=3)
    num_tasks = 2
    state, fns = make_agent(args, num_tasks, jax.random.key(0))
    buffer = replay_buffer_init(num_tasks, 32)
    rng = np.random.default_rng(0)
    for step in range(20):
        frame = rng.integers(0, 256, (num_tasks, 84, 84)).astype(np.uint8)
        buffer = fns.insert(buffer, frame, rng.integers(0, 18, num_tasks).astype(np.int32),
                            rng.normal(size=num_tasks).astype(np.float32), rng.random(num_tasks) < 0.1,
                            np.zeros(num_tasks, bool), np.full(num_tasks, step == 0),
                            np.ones(num_tasks, bool))  # fmt: skip
    obs = rng.integers(0, 256, (num_tasks, 4, 84, 84)).astype(np.uint8)
    eval_obs = np.repeat(obs, 3, axis=0)
    before = np.asarray(state.q.head.weight)  # a copy: update donates the state
    for step in range(3):
        action = fns.act(state, obs, jnp.arange(num_tasks), jnp.float32(0.5), jax.random.key(step))
        fns.act_eval(
            state, eval_obs, jnp.repeat(jnp.arange(num_tasks), 3), jnp.float32(0.001), jax.random.key(step)
        )
        state, metrics = fns.update(state, buffer, jnp.asarray([1.0, 0.5]), jax.random.key(1))
    assert action.shape == (num_tasks,) and np.all((0 <= np.asarray(action)) & (np.asarray(action) < 18))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 3 * args.utd
    assert not np.allclose(before, state.q.head.weight)
    for name, fn in fns._asdict().items():
        if name == "replicate":  # not jitted
            continue
        assert fn._cache_size() == 1, f"{name} compiled {fn._cache_size()} times"


def test_the_update_lowers_for_a_gpu_with_its_state_donated():
    """As sac_brc.py's: lowered for CUDA on a CPU, every state leaf is written over, not copied."""
    args = Args(**TINY, utd=2, n_step=3)
    state, fns = make_agent(args, 2, jax.random.key(0))
    donated = donated_inputs(fns.update, state, replay_buffer_init(2, 32), jnp.ones(2), jax.random.key(1))
    assert donated == set(range(len(jax.tree.leaves(state))))


def test_return_normalizer_start_up_and_scale():
    norm = drq_brc.ReturnNormalizer(2, gamma=0.5)
    no = np.zeros(2, bool)
    np.testing.assert_array_equal(norm.reward_scale(10.0), [1.0, 1.0])  # nothing seen: finite, not inf
    norm.add(np.array([0.0, 1.0]), no, no, np.ones(2, bool))
    # game 0: only zero rewards so far -> scale 1; game 1: partial episode [1] counts as
    # truncated, tail mean/(1 - gamma) = 2: return 1 + 0.5 * 2 = 2
    np.testing.assert_allclose(norm.reward_scale(10.0), [1.0, 10.0 / 2.0])
    norm.add(np.array([1.0, -1.0]), np.array([True, True]), no, np.ones(2, bool))
    # game 0 episode [0, 1] terminated: returns 0.5, 1 -> G 1; game 1 [1, -1]: 0.5, -1 -> G 1
    np.testing.assert_allclose(norm.reward_scale(10.0), [10.0, 10.0])
    assert norm.episode_ended.all()


def test_epsilon_schedule():
    args = Args(learning_starts=100, epsilon_decay_steps=1000, start_epsilon=1.0, end_epsilon=0.01)
    assert drq_brc.epsilon_at(0, args) == drq_brc.epsilon_at(99, args) == 1.0
    assert drq_brc.epsilon_at(600, args) == pytest.approx(1.0 - 0.5 * 0.99)
    assert drq_brc.epsilon_at(1100, args) == drq_brc.epsilon_at(50_000, args) == pytest.approx(0.01)


def test_atari_suites_scores_and_iqm():
    import envpool

    assert len(ATARI_100K) == 26 and len(ATARI_TRANSFER) == 20 and not set(ATARI_100K) & set(ATARI_TRANSFER)
    assert [t.name for t in resolve_tasks("atari")] == list(ATARI_100K)
    available = set(envpool.list_all_envs())
    for name in ATARI_100K + ATARI_TRANSFER:
        assert TASKS[name].domain == "atari" and TASKS[name].envpool_id in available, name
    # paper Table 5's human column and Agarwal et al.'s random scores
    assert ATARI_RANDOM_HUMAN["pong"] == (-20.7, 14.6) and ATARI_RANDOM_HUMAN["mspacman"] == (307.3, 6951.6)
    pong = TASKS["pong"]
    assert normalized_score(pong, -20.7, 0.0) == 0.0 and normalized_score(pong, 14.6, 0.0) == pytest.approx(
        1.0
    )
    assert normalized_score(TASKS["freeway"], 14.8, 0.0) == pytest.approx(0.5)
    scores = np.random.default_rng(0).normal(size=26)
    ordered = sorted(scores)
    middle = ordered[6:20]  # 26 scores: 25% = 6.5 -> 6 cut from each end, as scipy.stats.trim_mean
    assert drq_brc.interquartile_mean(scores) == pytest.approx(sum(middle) / len(middle))
    assert drq_brc.interquartile_mean(np.arange(8.0)) == pytest.approx(3.5)


def test_replay_restored_in_order_and_cut_at_the_resume(tmp_path):
    """A wrapped timeline comes back oldest-first into a larger buffer; the envs restart on
    resume, so the newest slot becomes a final observation and the one before a truncation."""
    buffer = replay_buffer_init(1, 6)
    insert = jax.jit(drq_brc.insert)
    for t in range(8):  # stores 0..7, keeps 2..7
        frame = np.full((1, 84, 84), t, np.uint8)
        one = np.ones(1, bool)
        buffer = insert(
            buffer, frame, np.full(1, t, np.int32), np.full(1, t, np.float32), ~one, ~one, ~one, one
        )
    np.savez(tmp_path / "replay.npz", **{f: np.asarray(getattr(buffer, f)) for f in ring_fields(buffer)},
             position=np.asarray(buffer.position), size=np.asarray(buffer.size))  # fmt: skip
    restored = drq_brc.restore_replay(tmp_path / "replay.npz", replay_buffer_init(1, 10))
    np.testing.assert_array_equal(np.asarray(restored.action[0, :6]), [2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(restored.frames[0, :6, 0, 0]), [2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(restored.valid[0, :6]), [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(restored.truncated[0, :6]), [0, 0, 0, 0, 1, 0])
    assert int(restored.position[0]) == 6 and int(restored.size[0]) == 6
    with pytest.raises(drq_brc.ConfigError, match="resume with --total-steps of at least 6"):
        drq_brc.restore_replay(tmp_path / "replay.npz", replay_buffer_init(1, 4))


def read_metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_continues_from_that_step(run, tmp_path):
    """A preempted run (SIGTERM mid-interval) finishes its step, checkpoints and exits 143 with a
    line naming --resume; the resumed run continues from that step with its replay."""
    common = [*TINY_CLI, "--tasks", "pong", "--learning-starts", "40", "--eval-interval", "100000",
              "--eval-episodes", "1", "--max-episode-steps", "40", "--log-interval", "30",
              "--checkpoint-interval", "100000", "--run-name", "preempted"]  # fmt: skip
    code, output = signal_when("drq_brc.py", *common, "--total-steps", "100000", cwd=tmp_path,
                               line_start="step 90/", signum=signal.SIGTERM)  # fmt: skip
    step, named = stopped_at(code, output, "drq_brc.py")
    assert step >= 90 and named == Path("runs/preempted")
    ckpt = tmp_path / "runs" / "preempted" / "checkpoints"
    assert (ckpt / "latest").read_text() == f"step_{step:09d}"
    assert json.loads((ckpt / f"step_{step:09d}" / "host.json").read_text())["env_step"] == step

    run_dir = tmp_path / "runs" / "preempted"
    resumed = run("drq_brc.py", "--resume", str(run_dir), "--total-steps", str(step + 30))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}; replay buffer restored" in resumed.stdout
    assert [r["step"] for r in read_metrics(tmp_path / "runs" / "preempted" / "metrics.jsonl")] == [step + 30]


@pytest.mark.slow
def test_a_resumed_run_trains_on_envs_with_new_seeds(tmp_path, monkeypatch):
    """As sac_brc.py: the resumed run's training envs get seeds of their own, its evaluation
    envs the run's."""
    opened = []

    class RecordingGames(drq_brc.AtariGames):
        def __init__(self, tasks, envs_per_game, seed, role, *a, **kw):
            super().__init__(tasks, envs_per_game, seed, role, *a, **kw)
            opened.append((role, self.seeds.tolist()))

    monkeypatch.setattr(drq_brc, "AtariGames", RecordingGames)
    monkeypatch.chdir(tmp_path)
    common = [*TINY_CLI, "--tasks", "pong", "--learning-starts", "40", "--eval-episodes", "1", "--seed", "5",
              "--max-episode-steps", "20", "--log-interval", "30"]  # fmt: skip
    drq_brc.main(parse_args(Args, [*common, "--total-steps", "60", "--eval-interval", "60", "--checkpoint-interval",
                                   "60", "--run-name", "resumed"]))  # fmt: skip
    drq_brc.main(parse_args(Args, ["--resume", "runs/resumed", "--total-steps", "80", "--eval-interval", "80"]))
    train = [seeds for role, seeds in opened if role == "train"]
    assert train == [env_seeds(5, "train", 1, 1).tolist(), env_seeds(5, "train", 1, 1, start_step=60).tolist()]
    assert train[0] != train[1]
    assert [seeds for role, seeds in opened if role == "eval"] == [env_seeds(5, "eval", 1, 1).tolist()] * 2


@pytest.mark.slow
def test_end_to_end_multi_task_run_and_resume(run, tmp_path):
    common = [*TINY_CLI, "--tasks", "pong,breakout", "--learning-starts", "40", "--eval-interval", "60",
              "--eval-episodes", "1", "--max-episode-steps", "40", "--log-interval", "30",
              "--checkpoint-interval", "60", "--run-name", "e2e"]  # fmt: skip
    first = run("drq_brc.py", *common, "--total-steps", "120")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "memory plan per device: replay" in first.stdout
    run_dir = tmp_path / "runs" / "e2e"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["channels"] == [4, 8, 8] and config["tasks"] == ["pong", "breakout"]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [60, 120]
    last = records[-1]
    assert set(last["tasks"]) == {"pong", "breakout"}
    for name, result in last["tasks"].items():
        assert result["success"] is None
        random, human = ATARI_RANDOM_HUMAN[name]
        assert result["score"] == pytest.approx((result["return"] - random) / (human - random))
    assert last["mean_score"] == pytest.approx(np.mean([r["score"] for r in last["tasks"].values()]))
    assert np.isfinite(last["iqm"]) and np.isfinite(last["loss"])
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "latest").read_text() == "step_000000120"
    assert {p.name for p in (ckpt / "step_000000120").iterdir()} == {"state.eqx", "replay.npz", "host.json",
                                                                   "manifest.json"}  # fmt: skip
    assert not list(ckpt.glob(".tmp*")) and [p.name for p in sorted(ckpt.glob("step_*"))] == [
        "step_000000060", "step_000000120"]  # the newest --keep-checkpoints 2  # fmt: skip

    resumed = run("drq_brc.py", "--resume", str(run_dir), "--total-steps", "180")  # the rest from config.json
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 120; replay buffer restored" in resumed.stdout
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [60, 120, 180]
    assert json.loads((ckpt / "step_000000180" / "host.json").read_text())["env_step"] == 180

    other = run("drq_brc.py", "--resume", str(run_dir), "--width", "32", "--total-steps", "240")
    assert other.returncode == 2
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot resume") and "--width 16" in lines[0]
    assert (ckpt / "latest").read_text() == "step_000000180"  # nothing written by the refused run


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, argv, message",
    [
        ("drq_brc.py", ["--suite", "atari-typo"], "unknown suite 'atari-typo' (did you mean atari?). Valid suites: atari, "),
        ("drq_brc.py", ["--suite", "mw"], "Atari games; 50 of 50 tasks are continuous control (assembly, basketball, bin-picking, ...)"),
        ("drq_brc.py", ["--tasks", "pong,reach"], "drq_brc.py trains Atari games; 1 of 2 tasks are continuous control (reach): use sac_brc.py"),
        ("drq_brc.py", ["--suite", "pong", "--channels", "0"], "--channels must be one or more positive"),
        ("drq_brc.py", ["--suite", "pong", "--seed", "-1"], "--seed must be >= 0, got -1"),
        ("drq_brc.py", ["--suite", "pong", "--learning-starts", "5"], "must each be at least 28"),
        ("drq_brc.py", ["--suite", "pong", "--eval-epsilon", "2"], "--eval-epsilon must be in [0, 1]"),
        ("drq_brc.py", ["--suite", "pong", "--resume", "runs/nothing-here"], "no such directory"),
        ("drq_brc.py", ["--suite", "pong", "--checkpoint-minutes", "nan"], "--checkpoint-minutes must be >= 0"),
        ("drq_brc.py", ["--suite", "atari", "--buffer-size", "100000000", "--total-steps", "100000000"],
         "Use --buffer-size"),
        ("sac_brc.py", ["--suite", "atari"], "sac_brc.py is for continuous control; the Atari games"),
        ("sac_brc.py", ["--tasks", "reach,pong"], "train with drq_brc.py"),
    ],
)  # fmt: skip
def test_bad_input_gives_one_clear_message(run, script, argv, message):
    out = run(script, *argv)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr[-2000:]
