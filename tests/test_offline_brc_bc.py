"""offline_brc_bc.py: BC term, batch sampling, one trace per
jitted entry point, BC reproducing a toy dataset's actions, and the CLI end to end."""

import json
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offline_brc_bc as off
from common.dataset import Dataset, list_chunks, make_metadata, write_dataset
from common.suites import TASKS
from conftest import donated_inputs, signal_when, stopped_at

TINY = ["--width", "16", "--actor-width", "16", "--num-atoms", "11", "--batch-size", "32"]


def toy_dataset(sizes=(30, 20), act_dims=(2, 1), obs_dim=3, seed=0, action_fn=None):
    """An in-memory Dataset: obs column 0 holds the task id, so a row's task can be checked."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    task = np.repeat(np.arange(len(sizes)), sizes)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] = task
    act_dim = max(act_dims)
    action = np.zeros((n, act_dim), np.float32)
    for k, d in enumerate(act_dims):
        rows = slice(offsets[k], offsets[k + 1])
        action[rows, :d] = action_fn(obs[rows])[:, :d] if action_fn else rng.uniform(-1, 1, (sizes[k], d))
    terminated = np.zeros(n, bool)
    truncated = np.zeros(n, bool)
    truncated[offsets[1:] - 1] = True
    return Dataset([None] * len(sizes), obs, action, rng.normal(size=n).astype(np.float32), obs + 0.5,
                   terminated, truncated, offsets, {}, [])  # fmt: skip


def test_bc_loss_against_a_hand_computation():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 4)).astype(np.float32)
    data = rng.uniform(-1, 1, (5, 4)).astype(np.float32)
    act_dims = np.array([4, 1, 2, 4, 3], np.int32)
    expected = 0.0
    for i in range(5):
        total = 0.0
        for j in range(act_dims[i]):  # padded entries beyond |A_i| do not count
            total += (np.tanh(float(mean[i, j])) - float(data[i, j])) ** 2
        expected += total / act_dims[i]
    got = float(off.bc_loss(jnp.asarray(mean), jnp.asarray(data), jnp.asarray(act_dims)))
    np.testing.assert_allclose(got, expected / 5, rtol=1e-5)


def test_batches_are_task_uniform_and_stay_in_their_task():
    dataset = toy_dataset(sizes=(1000, 10))
    batches = off.sample_batches(dataset, 256, 8, seed=3, call=5)
    assert batches.obs.shape == (8, 256, 3) and batches.action.shape == (8, 256, 2)
    np.testing.assert_array_equal(batches.obs[..., 0], batches.task)  # row from its own task
    assert 0.4 < batches.task.mean() < 0.6  # tasks equally likely despite 100x size difference
    assert len(np.unique(batches.obs[batches.task == 1][:, 1])) == 10  # every row of the small task
    again = off.sample_batches(dataset, 256, 8, seed=3, call=5)  # resumable: a function of (seed, call)
    np.testing.assert_array_equal(again.obs, batches.obs)
    assert not np.array_equal(off.sample_batches(dataset, 256, 8, seed=3, call=6).obs, batches.obs)


def test_jitted_entry_points_trace_once():
    args = off.Args(width=16, actor_width=16, num_atoms=11, batch_size=8, updates_per_call=3)
    dataset = toy_dataset()
    state, fns = off.make_agent(args, [2, 1], 3, jax.random.key(0))
    stream = off.BatchStream(dataset, args.batch_size, args.updates_per_call, 0, 0, prefetch=2)
    try:
        for _ in range(3):
            state, metrics = fns.update(state, stream.get(), jnp.array([5.0, 2.0]), jax.random.key(1))
            fns.act_deterministic(state, jnp.asarray(dataset.obs[:4]), jnp.array([0, 0, 1, 1]))
    finally:
        stream.close()
    assert int(state.step) == 9 and all(np.isfinite(float(v)) for v in metrics.values())
    for name, fn in fns._asdict().items():
        if name in ("replicate", "shard_batches"):  # not jitted
            continue
        assert fn._cache_size() == 1, f"{name} compiled {fn._cache_size()} times"


def test_the_update_lowers_for_a_gpu_with_its_state_donated():
    """As sac_brc.py's: lowered for CUDA on a CPU, every state leaf is written over, not copied."""
    args = off.Args(width=16, actor_width=16, num_atoms=11, batch_size=8, updates_per_call=3)
    state, fns = off.make_agent(args, [2, 1], 3, jax.random.key(0))
    batches = off.sample_batches(toy_dataset(), args.batch_size, args.updates_per_call, 0, 0)
    donated = donated_inputs(fns.update, state, batches, jnp.array([5.0, 2.0]), jax.random.key(1))
    assert donated == set(range(len(jax.tree.leaves(state))))


def bc_error_after_training(bc_weight):
    w = np.random.default_rng(7).normal(size=(3, 2))
    dataset = toy_dataset(sizes=(256, 256), action_fn=lambda obs: 0.8 * np.tanh(obs @ w))
    args = off.Args(width=32, actor_width=32, num_atoms=11, batch_size=64, updates_per_call=50,
                    learning_rate=3e-3, bc_weight=bc_weight, q_weight=1.0)  # fmt: skip
    state, fns = off.make_agent(args, [2, 1], 3, jax.random.key(0))
    for call in range(8):
        batches = off.sample_batches(dataset, args.batch_size, args.updates_per_call, 0, call)
        state, _ = fns.update(state, batches, jnp.array([10.0, 10.0]), jax.random.key(1))
    task = (dataset.obs[:, 0]).astype(np.int32)
    action = np.asarray(fns.act_deterministic(state, jnp.asarray(dataset.obs), jnp.asarray(task)))
    used = np.arange(2)[None, :] < np.array([2, 1])[task][:, None]
    return np.abs(action - dataset.action)[used].mean()


def test_large_bc_weight_reproduces_the_dataset_actions():
    """With BC dominating, tanh(mean) matches a deterministic toy behaviour policy; without BC
    the actor follows the (random-reward) critic and does not."""
    with_bc, without_bc = bc_error_after_training(100.0), bc_error_after_training(0.0)
    assert with_bc < 0.06, with_bc
    assert without_bc > 3 * with_bc, (with_bc, without_bc)


# ---------------------------------------------------------------- CLI end to end


def write_tiny_dataset(path, n=300):
    """Random-action data for reach (episodes of 100, truncated) and cartpole-swingup."""
    tasks = [TASKS["reach"], TASKS["cartpole-swingup"]]
    rng = np.random.default_rng(0)
    per_task = {
        t.name: {
            "observations": (states := rng.normal(size=(n + 1, t.obs_dim)).astype(np.float32))[:-1],
            "actions": rng.uniform(-1, 1, (n, t.act_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 1, n).astype(np.float32),
            "next_observations": states[1:],  # each transition continues into the next
            "terminated": np.zeros(n, bool),
            "truncated": np.arange(n) % 100 == 99,
        }
        for t in tasks
    }
    write_dataset(path, tasks, per_task, make_metadata(tasks, "test"), chunk_size=128)


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_continues_from_that_update(run, tmp_path):
    """A preempted offline run (SIGTERM between checkpoints) finishes its call, checkpoints and
    exits 143 with a line naming --resume; the resumed run continues from that update."""
    write_tiny_dataset(tmp_path / "data")
    common = [*TINY, "--dataset", "data", "--updates-per-call", "10", "--eval-interval", "100000",
              "--log-interval", "10", "--checkpoint-interval", "100000", "--eval-episodes", "1",
              "--run-name", "off"]  # fmt: skip
    code, output = signal_when("offline_brc_bc.py", *common, "--num-updates", "100000", cwd=tmp_path,
                               line_start="update 30/", signum=signal.SIGTERM)  # fmt: skip
    step, named = stopped_at(code, output, "offline_brc_bc.py", unit="update")
    assert step >= 30 and step % 10 == 0 and named == Path("runs/off")
    run_dir = tmp_path / "runs" / "off"
    assert (run_dir / "checkpoints" / "latest").read_text() == f"step_{step:09d}"
    resumed = run("offline_brc_bc.py", "--resume", str(run_dir), "--num-updates", str(step + 20))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at update {step}" in resumed.stdout
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in records] == [step + 20]


@pytest.mark.slow
def test_end_to_end_info_run_resume_and_bad_input(run, tmp_path, monkeypatch):
    # the resumed run reuses the first run's compiled update (compiling dominates on a busy CPU)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    write_tiny_dataset(tmp_path / "data")
    info = run("offline_brc_bc.py", "--dataset", "data", "--dataset-info")
    assert info.returncode == 0, info.stderr[-2000:]
    assert "2 tasks, 600 transitions" in info.stdout
    assert "| reach | 39 | 4 | 300 | 3 (0 / 3) |" in info.stdout

    common = [*TINY, "--dataset", "data", "--updates-per-call", "20", "--eval-interval", "40",
              "--log-interval", "20", "--checkpoint-interval", "40", "--eval-episodes", "1", "--run-name", "off"]  # fmt: skip
    first = run("offline_brc_bc.py", *common, "--num-updates", "40")
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "off"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [40]
    assert set(records[0]["tasks"]) == {"reach", "cartpole-swingup"}
    assert all(np.isfinite(records[0][k]) for k in ("critic_loss", "actor_loss", "bc_loss", "sps", "data_wait"))
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000000040"

    resumed = run("offline_brc_bc.py", "--resume", str(run_dir), "--num-updates", "80")  # the rest from config.json
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout and "at update 40" in resumed.stdout
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [40, 80]
    assert json.loads((run_dir / "config.json").read_text())["num_updates"] == 80  # the latest launch's

    other = run("offline_brc_bc.py", "--resume", str(run_dir), "--bc-weight", "0", "--num-updates", "120")
    assert other.returncode == 2 and "--bc-weight 1.0 (checkpoint) vs 0.0 (now)" in other.stderr

    _, _, chunk = list_chunks(tmp_path / "data" / "reach")[0]
    with np.load(chunk) as data:
        arrays = {f: data[f] for f in data.files}
    arrays["rewards"][5] = np.nan
    np.savez_compressed(chunk, **arrays)
    for argv, message in [
        (["--dataset", "data"], "rewards contains NaN or infinite values"),
        (["--dataset", "nowhere"], "dataset nowhere is not a folder"),
        (["--dataset", "data", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--dataset", "data", "--updates-per-call", "30"], "--num-updates 1000000 is not a multiple"),
    ]:
        out = run("offline_brc_bc.py", *argv)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
        assert message in lines[0], lines[0]
