"""common/dataset.py: writer -> loader round trip, resume, validation messages, and the
dataset that `sac_brc.py --save-buffer` records (compared with the run's own replay buffer)."""

import json

import numpy as np
import pytest

from common.dataset import (
    FIELDS,
    DatasetError,
    DatasetWriter,
    episode_bounds,
    list_chunks,
    load_dataset,
    make_metadata,
    write_dataset,
)
from common.suites import TASKS

TWO = [TASKS["reach"], TASKS["cartpole-swingup"]]  # obs 39 / 5, actions 4 / 1: padding matters


def random_steps(rng, steps, num_tasks=2, obs_dim=39, act_dim=4):
    """Lockstep steps as the online loop has them: padded rows, some invalid (reset) steps."""
    for step in range(1, steps + 1):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        yield dict(
            step=step,
            obs=obs,
            action=rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
            reward=rng.normal(size=num_tasks).astype(np.float32),
            next_obs=obs + 1,
            terminated=rng.random(num_tasks) < 0.1,
            truncated=np.zeros(num_tasks, bool) | (step % 6 == 0),
            valid=rng.random(num_tasks) < 0.8,
        )


def expected_rows(steps, tasks):
    """The loop reference: valid rows per task, unpadded then zero-padded, task-major."""
    obs_dim, act_dim = max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)
    rows = []
    for k, task in enumerate(tasks):
        for s in steps:
            if s["valid"][k]:
                o = np.zeros(obs_dim, np.float32)
                o[: task.obs_dim] = s["obs"][k, : task.obs_dim]
                a = np.zeros(act_dim, np.float32)
                a[: task.act_dim] = s["action"][k, : task.act_dim]
                n = np.zeros(obs_dim, np.float32)
                n[: task.obs_dim] = s["next_obs"][k, : task.obs_dim]
                rows.append((k, o, a, s["reward"][k], n, s["terminated"][k], s["truncated"][k]))
    return rows


def assert_dataset_equals(dataset, rows):
    task_of_row = np.repeat(np.arange(len(dataset.tasks)), np.diff(dataset.offsets))
    assert len(task_of_row) == len(rows)
    for i, (k, o, a, r, n, term, trunc) in enumerate(rows):
        assert task_of_row[i] == k
        np.testing.assert_array_equal(dataset.obs[i], o)
        np.testing.assert_array_equal(dataset.action[i], a)
        assert dataset.reward[i] == r
        np.testing.assert_array_equal(dataset.next_obs[i], n)
        assert dataset.terminated[i] == term and dataset.truncated[i] == trunc


def test_writer_round_trip_across_chunks(tmp_path):
    steps = list(random_steps(np.random.default_rng(0), 40))
    for s in steps:  # never both flags (the validator rejects it)
        s["truncated"] &= ~s["terminated"]
    writer = DatasetWriter(tmp_path / "d", TWO, make_metadata(TWO, "test"), chunk_size=7)
    for s in steps[:25]:
        writer.add(**s)
    writer.flush()  # a checkpoint: partial chunks written
    for s in steps[25:]:
        writer.add(**s)
    writer.flush()
    chunks = list_chunks(tmp_path / "d" / "reach")
    assert all(count <= 7 for _, count, _ in chunks) and len(chunks) >= 5
    dataset = load_dataset(tmp_path / "d")
    assert [t.name for t in dataset.tasks] == ["reach", "cartpole-swingup"]
    assert dataset.obs.shape[1] == 39 and dataset.action.shape[1] == 4
    assert_dataset_equals(dataset, expected_rows(steps, TWO))


def test_resume_drops_steps_after_the_checkpoint_and_ends_the_episode(tmp_path):
    rng = np.random.default_rng(1)
    steps = list(random_steps(rng, 30))
    for s in steps:
        s["terminated"][:], s["truncated"][:], s["valid"][:] = False, False, True
    path = tmp_path / "d"
    writer = DatasetWriter(path, TWO, make_metadata(TWO, "test"), chunk_size=4)
    for s in steps[:10]:
        writer.add(**s)
    writer.flush()  # checkpoint at step 10
    for s in steps[10:18]:  # then a crash after two more full chunks
        writer.add(**s)
    resumed = DatasetWriter(path, TWO, {}, chunk_size=4, resume_step=10)
    for s in steps[10:30]:
        resumed.add(**s)
    resumed.flush()
    dataset = load_dataset(path)
    rows = expected_rows(steps, TWO)
    for k in range(2):  # step 10 was cut by the restart: it now ends a (truncated) episode
        rows[k * 30 + 9] = rows[k * 30 + 9][:6] + (True,)
    assert_dataset_equals(dataset, rows)


def write_valid(path, n=12, tasks=TWO, **overrides):
    rng = np.random.default_rng(0)
    per_task = {}
    for t in tasks:
        arrays = {
            "observations": rng.normal(size=(n, t.obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, t.act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": rng.normal(size=(n, t.obs_dim)).astype(np.float32),
            "terminated": np.zeros(n, bool),
            "truncated": np.arange(n) % 5 == 4,
        }
        arrays.update(overrides.get(t.name, {}))
        per_task[t.name] = arrays
    write_dataset(path, tasks, per_task, make_metadata(tasks, "test"), chunk_size=5)


def edit_metadata(path, **changes):
    meta = json.loads((path / "metadata.json").read_text())
    meta.update(changes)
    (path / "metadata.json").write_text(json.dumps(meta))


def rewrite_first_chunk(path, task, **changes):
    _, _, chunk = list_chunks(path / task)[0]
    with np.load(chunk) as data:
        arrays = {f: data[f] for f in data.files}
    arrays.update(changes)
    for field, value in list(arrays.items()):
        if value is None:
            del arrays[field]
    np.savez_compressed(chunk, **arrays)


def nan_obs(path):
    obs = np.ones((5, 5), np.float32)
    obs[2, 3] = np.nan
    rewrite_first_chunk(path, "cartpole-swingup", observations=obs)


MALFORMED = {
    "no metadata": (lambda p: (p / "metadata.json").unlink(), "has no metadata.json"),
    "other format": (lambda p: edit_metadata(p, format="d4rl"), "expected 'brc-dataset' version 1"),
    "unknown task": (
        lambda p: edit_metadata(p, tasks=[{"name": "reach-v9", "obs_dim": 39, "act_dim": 4}]),
        "task(s) reach-v9 not in the suite registry",
    ),
    "sizes differ from the env": (
        lambda p: edit_metadata(p, tasks=[{"name": "reach", "obs_dim": 40, "act_dim": 4}]),
        "task reach has obs_dim 40, act_dim 4; its environment has 39 and 4",
    ),
    "task without chunks": (
        lambda p: [c.unlink() for _, _, c in list_chunks(p / "reach")],
        "task reach has no chunk files",
    ),
    "missing field": (
        lambda p: rewrite_first_chunk(p, "reach", truncated=None),
        "is missing field(s) truncated",
    ),
    "wrong observation size": (
        lambda p: rewrite_first_chunk(p, "reach", observations=np.zeros((5, 38), np.float32)),
        "observations has shape (5, 38), expected (5, 39) for reach",
    ),
    "fewer rows than the name says": (
        lambda p: rewrite_first_chunk(p, "reach", rewards=np.zeros(4, np.float32)),
        "rewards has shape (4,), expected (5,)",
    ),
    "NaN": (nan_obs, "observations contains NaN or infinite values"),
    "float flags": (
        lambda p: rewrite_first_chunk(p, "reach", terminated=np.zeros(5, np.float32)),
        "terminated has dtype float32, expected bool",
    ),
    "unnormalised actions": (
        lambda p: rewrite_first_chunk(p, "cartpole-swingup", actions=np.full((5, 1), 2.0, np.float32)),
        "actions outside [-1, 1]",
    ),
    "damaged chunk": (
        lambda p: list_chunks(p / "reach")[0][2].write_bytes(b"not a zip"),
        "cannot be read",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_dataset_rejected_with_its_message(tmp_path, case):
    path = tmp_path / "d"
    write_valid(path)
    load_dataset(path)  # valid before the damage
    damage, message = MALFORMED[case]
    damage(path)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_writer_refuses_a_non_empty_folder(tmp_path):
    write_valid(tmp_path / "d")
    with pytest.raises(DatasetError, match="exists and is not empty"):
        DatasetWriter(tmp_path / "d", TWO, make_metadata(TWO, "test"))


def test_episode_bounds_against_a_loop():
    rng = np.random.default_rng(3)
    terminated = rng.random(50) < 0.1
    truncated = ~terminated & (rng.random(50) < 0.1)
    expected, start = [], 0
    for t in range(50):
        if terminated[t] or truncated[t]:
            expected.append((start, t + 1, bool(truncated[t])))
            start = t + 1
    if start < 50:
        expected.append((start, 50, True))
    assert episode_bounds(terminated, truncated) == expected
    assert set(FIELDS) == {"observations", "actions", "rewards", "next_observations", "terminated", "truncated"}


def test_sac_brc_save_buffer_round_trip_and_resume(run, tmp_path):
    """A tiny online run (random actions only: no update compiles) records exactly the
    transitions of its replay buffer; a resumed run appends without repeating a step and
    ends the episode the restart cut."""
    common = ["--width", "16", "--actor-width", "16", "--num-atoms", "11", "--batch-size", "16",
              "--tasks", "reach,cartpole-swingup", "--learning-starts", "1000", "--eval-interval", "1000",
              "--eval-episodes", "1", "--log-interval", "50", "--checkpoint-interval", "150",
              "--run-name", "rec", "--save-buffer", "data"]  # fmt: skip
    first = run("sac_brc.py", *common, "--total-steps", "250")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run("sac_brc.py", *common, "--run-name", "rec2", "--total-steps", "250")
    assert again.returncode == 2 and "--save-buffer data exists and is not empty" in again.stderr
    assert not (tmp_path / "runs" / "rec2").exists()
    resumed = run("sac_brc.py", *common, "--total-steps", "350", "--resume", str(tmp_path / "runs" / "rec"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    dataset = load_dataset(tmp_path / "data")
    assert dataset.metadata["source"] == "sac_brc.py" and dataset.metadata["env"]["seed"] == 0
    ckpt = tmp_path / "runs" / "rec" / "checkpoints" / "step_000000350"
    with np.load(ckpt / "replay.npz") as replay:  # capacity 350 > stored: nothing overwritten
        for k, task in enumerate(dataset.tasks):
            rows, size = dataset.task_slice(k), int(replay["size"][k])
            assert rows.stop - rows.start == size
            np.testing.assert_array_equal(dataset.obs[rows], replay["obs"][k, :size])
            np.testing.assert_array_equal(dataset.next_obs[rows], replay["next_obs"][k, :size])
            np.testing.assert_array_equal(dataset.reward[rows], replay["reward"][k, :size])
            np.testing.assert_array_equal(dataset.terminated[rows], replay["terminated"][k, :size] > 0)
            # the env read the first |A_k| entries; the rest are zero padding in the dataset
            np.testing.assert_array_equal(
                dataset.action[rows, : task.act_dim], replay["action"][k, :size, : task.act_dim]
            )
            assert not dataset.action[rows, task.act_dim :].any()
    # reach: 200-step time limit at its 200th transition, the next episode starts with the
    # 201st (reset within the step), and the restart at step 250 cut it after 50 transitions
    reach_truncated = np.flatnonzero(dataset.truncated[dataset.task_slice(0)])
    np.testing.assert_array_equal(reach_truncated, [199, 249])
    cartpole_truncated = np.flatnonzero(dataset.truncated[dataset.task_slice(1)])
    np.testing.assert_array_equal(cartpole_truncated, [249])  # the cut at step 250 only
