"""common/dataset.py: writer -> loader round trip, resume, validation messages, and the
dataset that `sac_brc.py --save-buffer` records (compared with the run's own replay buffer)."""

import errno
import json
import shutil
import tracemalloc

import numpy as np
import pytest

import sac_brc
from common import dataset as dataset_module
from common.dataset import (
    FIELDS,
    DatasetError,
    DatasetWriter,
    dataset_bytes,
    discounted_returns,
    list_chunks,
    load_dataset,
    make_metadata,
    write_dataset,
)
from common.suites import TASKS

TWO = [TASKS["reach"], TASKS["cartpole-swingup"]]  # obs 39 / 5, actions 4 / 1: padding matters


def random_steps(rng, steps, num_tasks=2, obs_dim=39, act_dim=4, end_rate=0.1, truncate_every=6, valid_rate=0.8):
    """Lockstep steps as the online loop has them: padded rows, some invalid (reset) steps; a
    task's next recorded transition continues its last one unless that one ended an episode."""
    state = lambda: rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
    current = state()
    for step in range(1, steps + 1):
        obs, next_obs = current, state()
        terminated = rng.random(num_tasks) < end_rate
        truncated = np.zeros(num_tasks, bool) | (truncate_every is not None and step % truncate_every == 0)
        valid = rng.random(num_tasks) < valid_rate
        ended = (terminated | truncated)[:, None]
        current = np.where(valid[:, None], np.where(ended, state(), next_obs), current)
        yield dict(
            step=step,
            obs=obs,
            action=rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
            reward=rng.normal(size=num_tasks).astype(np.float32),
            next_obs=next_obs,
            terminated=terminated,
            truncated=truncated,
            valid=valid,
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


def test_a_chunk_that_meets_a_full_disk_is_one_error_and_leaves_the_chunks_before(tmp_path, monkeypatch):
    """--save-buffer on a full disk: one DatasetError line (a user error: exit 2 in every script),
    no temporary file left, every chunk written before it intact and loadable."""
    steps = list(random_steps(np.random.default_rng(2), 12, end_rate=0.0, truncate_every=None, valid_rate=1.0))
    path = tmp_path / "d"
    writer = DatasetWriter(path, TWO, make_metadata(TWO, "test"), chunk_size=4)
    for s in steps[:8]:
        writer.add(**s)
    before = sorted(p.name for p in (path / "reach").iterdir())

    def full_disk(file, **arrays):
        file.write(b"PK")  # part of a chunk, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset_module.np, "savez_compressed", full_disk)
    with pytest.raises(DatasetError, match=r"cannot write .*reach.*: No space left on device; the dataset keeps") as error:
        for s in steps[8:]:
            writer.add(**s)
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in (path / "reach").iterdir()) == before and len(before) == 2
    monkeypatch.undo()
    assert len(load_dataset(path).reward) == 2 * 8  # both tasks' two whole chunks


def test_resume_drops_steps_after_the_checkpoint_and_ends_the_episode(tmp_path):
    rng = np.random.default_rng(1)
    steps = list(random_steps(rng, 30, end_rate=0.0, truncate_every=None, valid_rate=1.0))
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


def test_a_resume_reopens_only_its_own_dataset_and_clears_a_chunk_half_written(tmp_path):
    """A copy of a run directory names the original's dataset: resuming the copy would write
    over the original's steps, so it is refused while the original run directory is there. A
    chunk being written when the run died (its .tmp) is removed on resume."""
    original, copy = tmp_path / "runs" / "a", tmp_path / "runs" / "a-copy"
    original.mkdir(parents=True), copy.mkdir()
    path = tmp_path / "d"
    writer = DatasetWriter(path, TWO, make_metadata(TWO, "test", run_dir=str(original)), chunk_size=4)
    for s in random_steps(np.random.default_rng(1), 8, end_rate=0.0, truncate_every=None, valid_rate=1.0):
        writer.add(**s)
    writer.flush()
    (path / TWO[0].name / "chunk_000000000009_00000004.npz.tmp").write_bytes(b"half")
    with pytest.raises(DatasetError, match=f"{path} is the dataset of {original}, not of {copy} \\(a copy of that run"):
        DatasetWriter(path, TWO, make_metadata(TWO, "test", run_dir=str(copy)), chunk_size=4, resume_step=8)
    DatasetWriter(path, TWO, make_metadata(TWO, "test", run_dir=str(original)), chunk_size=4, resume_step=8)
    assert not list(path.glob("*/*.tmp")) and load_dataset(path).reward.shape == (16,)
    moved = original.rename(tmp_path / "moved")  # the project moved: the recorded path finds nothing
    DatasetWriter(path, TWO, make_metadata(TWO, "test", run_dir=str(moved)), chunk_size=4, resume_step=8)


def write_valid(path, n=12, tasks=TWO, **overrides):
    rng = np.random.default_rng(0)
    per_task = {}
    for t in tasks:
        states = rng.normal(size=(n + 1, t.obs_dim)).astype(np.float32)
        arrays = {
            "observations": states[:-1],
            "actions": rng.uniform(-1, 1, (n, t.act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": states[1:],  # each transition continues into the next
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


def rewrite_first_chunk(path, task, chunk_number=0, **changes):
    _, _, chunk = list_chunks(path / task)[chunk_number]
    with np.load(chunk) as data:
        arrays = {f: data[f] for f in data.files}
    arrays.update(changes)
    for field, value in list(arrays.items()):
        if value is None:
            del arrays[field]
    np.savez_compressed(chunk, **arrays)


def copy_first_chunk(path, name):
    _, _, chunk = list_chunks(path / "reach")[0]
    (path / "reach" / name).write_bytes(chunk.read_bytes())


def shuffled_first_chunk(path):
    with np.load(list_chunks(path / "reach")[0][2]) as data:
        order = np.array([1, 0, 2, 3, 4])  # swaps two transitions of one episode
        rewrite_first_chunk(path, "reach", **{f: data[f][order] for f in FIELDS})


def cut_between_chunks(path):
    """The first chunk's last transition no longer ends its episode, and the next chunk does
    not start where it left off."""
    rewrite_first_chunk(path, "reach", truncated=np.zeros(5, bool))
    with np.load(list_chunks(path / "reach")[1][2]) as data:
        rewrite_first_chunk(path, "reach", chunk_number=1, observations=data["observations"] + 1)


def empty_task(path, task):
    """Every chunk of `task` replaced by one whose name and arrays say 0 transitions."""
    for _, _, chunk in list_chunks(path / task):
        chunk.unlink()
    spec = TASKS[task]
    empty = {f: np.zeros((0, *({"obs": (spec.obs_dim,), "act": (spec.act_dim,), "": ()}[shape])), bool if kind == "bool" else np.float32)
             for f, (kind, shape) in FIELDS.items()}  # fmt: skip
    np.savez_compressed(path / task / "chunk_000000000000_00000000.npz", **empty)


def nan_obs(path):
    obs = np.ones((5, 5), np.float32)
    obs[2, 3] = np.nan
    rewrite_first_chunk(path, "cartpole-swingup", observations=obs)


MALFORMED = {
    "no metadata": (lambda p: (p / "metadata.json").unlink(), "has no metadata.json"),
    "a run directory that recorded its data": (
        lambda p: ((p / "metadata.json").unlink(), (p / "config.json").write_text('{"save_buffer": "data/mw"}')),
        "is a run directory, not a dataset: it recorded its transitions with --save-buffer data/mw",
    ),
    "an offline run's directory": (
        lambda p: ((p / "metadata.json").unlink(), (p / "config.json").write_text('{"dataset": "data/mw"}')),
        "is a run directory, not a dataset: it trained on the dataset data/mw",
    ),
    "a run directory that did not": (
        lambda p: ((p / "metadata.json").unlink(), (p / "config.json").write_text('{"save_buffer": null}')),
        "is a run directory, not a dataset, and did not record its transitions",
    ),
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
    "task with only empty chunks": (lambda p: empty_task(p, "cartpole-swingup"), "task cartpole-swingup has no transitions"),
    "misnamed chunk": (lambda p: copy_first_chunk(p, "chunk_0.npz"), "chunk_0.npz is not a chunk name"),
    "overlapping chunks": (
        lambda p: copy_first_chunk(p, "chunk_000000000003_00000005.npz"),
        "chunks chunk_000000000000_00000005.npz and chunk_000000000003_00000005.npz overlap",
    ),
    "shuffled episode": (shuffled_first_chunk, "transition 0 does not end an episode, but its next_observations"),
    "episode cut between chunks": (cut_between_chunks, "does not continue the previous chunk's unfinished episode"),
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


def loop_discounted_returns(rewards, gamma, truncated):
    tail = float(np.mean(rewards)) / (1 - gamma) if truncated else 0.0
    out = []
    for t in range(len(rewards)):
        g = sum(gamma**k * rewards[t + k] for k in range(len(rewards) - t))
        out.append(g + gamma ** (len(rewards) - t) * tail)
    return np.array(out)


@pytest.mark.parametrize("truncated", [False, True])
def test_discounted_returns_against_a_loop(truncated):
    rewards = np.random.default_rng(1).normal(size=17)
    expected = loop_discounted_returns(rewards, 0.9, truncated)
    np.testing.assert_allclose(discounted_returns(rewards, 0.9, truncated), expected, rtol=1e-10)
    # the same rule as sac_brc.py's online normaliser
    np.testing.assert_allclose(sac_brc.discounted_returns(rewards, 0.9, truncated), expected, rtol=1e-10)
    assert set(FIELDS) == {"observations", "actions", "rewards", "next_observations", "terminated", "truncated"}


def write_counted(path, n, chunk_size, ends, tasks=TWO):
    """Each task's transitions t = 0..n-1 with observations[t, 0] = t (so a loaded row names its
    transition), continuing into the next; `ends` maps a row to "terminated" or "truncated"."""
    rng = np.random.default_rng(7)
    per_task = {}
    for t in tasks:
        states = rng.normal(size=(n + 1, t.obs_dim)).astype(np.float32)
        states[:, 0] = np.arange(n + 1)
        flags = {f: np.array([ends.get(i) == f for i in range(n)]) for f in ("terminated", "truncated")}
        per_task[t.name] = {"observations": states[:-1], "actions": rng.uniform(-1, 1, (n, t.act_dim)).astype(np.float32),
                            "rewards": rng.normal(size=n).astype(np.float32), "next_observations": states[1:], **flags}  # fmt: skip
    write_dataset(path, tasks, per_task, make_metadata(tasks, "test"), chunk_size=chunk_size)
    return per_task


def test_episode_statistics_are_of_every_transition_even_in_a_subset(tmp_path):
    """G_i: max |return| over every state of every episode, episodes spanning chunks; terminated
    episodes do not bootstrap, truncated and unfinished ones do (a NumPy loop). A random subset
    of the rows leaves the statistics unchanged."""
    ends = {3: "terminated", 8: "truncated", 20: "truncated"}  # then 21..29 unfinished
    per_task = write_counted(tmp_path / "d", 30, 7, ends)
    gamma = 0.95
    episodes = [(0, 4, False), (4, 9, True), (9, 21, True), (21, 30, True)]
    for max_per_task in (None, 11):
        dataset = load_dataset(tmp_path / "d", gamma, max_per_task=max_per_task)
        for task, stats in zip(TWO, dataset.stats):
            r = per_task[task.name]["rewards"].astype(np.float64)
            expected = max(np.abs(loop_discounted_returns(r[a:b], gamma, boot)).max() for a, b, boot in episodes)
            np.testing.assert_allclose(stats.max_abs_return, expected, rtol=1e-6)
            np.testing.assert_allclose(stats.returns, [r[a:b].sum() for a, b, _ in episodes[:3]], rtol=1e-5)
            assert (stats.transitions, stats.terminated, stats.truncated) == (30, 1, 2)


def test_a_dataset_larger_than_the_memory_cap_loads_by_streaming_a_subset(tmp_path):
    """2 tasks x 40,000 transitions (25.5 MiB padded) under a 10 MB cap: loading all is refused
    before anything is allocated, with the numbers and the subset that fits; that subset
    streams in with a measured peak below the cap, exactly the kept rows, in time order."""
    n, cap = 40_000, 10_000_000
    per_task = write_counted(tmp_path / "d", n, 2000, {i: "truncated" for i in range(199, n, 200)})
    assert dataset_bytes(2 * n, 39, 4) > 2.5 * cap
    tracemalloc.start()
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path / "d", memory_limit=cap)
    refused_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(error.value)
    assert "80,000 transitions (2 tasks, padded to obs 39 / action 4) need 28.3 MiB" in message, message  # 80,000 x 334 B + 4 x 2,000 x 334 B + 8 x 40,000 B
    assert "more than the 9.5 MiB allowed" in message
    fit = int(message.split("max_per_task=")[1].split(" ")[0])
    assert n / 5 <= fit < n / 2 and refused_peak < 500_000  # nothing large was allocated
    tracemalloc.start()
    dataset = load_dataset(tmp_path / "d", max_per_task=fit, seed=3, memory_limit=cap)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < cap, peak
    assert np.diff(dataset.offsets).tolist() == [fit, fit]
    for k, task in enumerate(TWO):
        rows = dataset.task_slice(k)
        t = dataset.obs[rows, 0].astype(np.int64)
        assert len(set(t)) == fit and (np.diff(t) > 0).all()  # distinct, in time order
        assert t.min() < n / 10 and t.max() > n * 0.9  # drawn across the whole task
        source = per_task[task.name]
        np.testing.assert_array_equal(dataset.obs[rows, : task.obs_dim], source["observations"][t])
        np.testing.assert_array_equal(dataset.next_obs[rows, : task.obs_dim], source["next_observations"][t])
        np.testing.assert_array_equal(dataset.action[rows, : task.act_dim], source["actions"][t])
        np.testing.assert_array_equal(dataset.reward[rows], source["rewards"][t])
        np.testing.assert_array_equal(dataset.truncated[rows], source["truncated"][t])
        assert dataset.stats[k].transitions == n and dataset.stats[k].truncated == n // 200
    again = load_dataset(tmp_path / "d", max_per_task=fit, seed=3, memory_limit=cap)  # a function of the seed
    np.testing.assert_array_equal(again.obs, dataset.obs)


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_zero(run, tmp_path):
    """A requeued job passes --resume; a run preempted before its first checkpoint has none.
    It starts again from step 0 in its own directory: its records and recorded steps start
    over, so each step is recorded once."""
    argv = ["--width", "16", "--actor-width", "16", "--num-atoms", "11", "--batch-size", "16", "--tasks", "reach",
            "--learning-starts", "1000", "--eval-interval", "100", "--eval-episodes", "1", "--log-interval", "100",
            "--total-steps", "200", "--run-name", "early", "--save-buffer", "data"]  # fmt: skip
    assert run("sac_brc.py", *argv).returncode == 0
    shutil.rmtree(tmp_path / "runs" / "early" / "checkpoints")  # as if stopped before the first one
    (tmp_path / "runs" / "early" / "checkpoints" / ".tmp_step_000000100").mkdir(parents=True)  # ... while writing it
    again = run("sac_brc.py", *argv, "--resume", str(tmp_path / "runs" / "early"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stopped before its first checkpoint: it starts again from step 0" in again.stderr
    records = (tmp_path / "runs" / "early" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [100, 200]
    assert load_dataset(tmp_path / "data").reward.shape == (200,)
    assert not (tmp_path / "runs" / "early" / "checkpoints" / ".tmp_step_000000100").exists()


@pytest.mark.slow
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
    (tmp_path / "data").rename(tmp_path / "moved")  # a resume must not start a dataset without steps 1-250
    gone = run("sac_brc.py", *common, "--total-steps", "350", "--resume", str(tmp_path / "runs" / "rec"))
    assert gone.returncode == 2 and "records its transitions in --save-buffer data, which is not there" in gone.stderr
    (tmp_path / "moved").rename(tmp_path / "data")
    resumed = run("sac_brc.py", *common, "--total-steps", "350", "--resume", str(tmp_path / "runs" / "rec"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    dataset = load_dataset(tmp_path / "data")
    assert dataset.metadata["source"] == "sac_brc.py" and dataset.metadata["env"]["seed"] == 0
    assert dataset.metadata["suite"] == "tasks"  # --tasks, not --suite's unused default
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
