"""The BRC multi-task transition dataset: writer, loader and validator (docs/dataset-format.md).

Written by `sac_brc.py --save-buffer`, read by offline_brc_bc.py and the transfer script,
and the format to convert other datasets into (e.g. TD-MPC2's MT80). A dataset is a folder:

    metadata.json                        format, version, tasks with their unpadded sizes, source
    <task>/chunk_<first>_<count>.npz     np.savez_compressed, `count` transitions in time order

Each chunk holds, per transition, `observations` (count, obs_dim_task) float32, `actions`
(count, act_dim_task) float32, `rewards` (count,) float32, `next_observations` like
observations, `terminated` and `truncated` (count,) bool. Arrays are unpadded: each task
keeps its own sizes; the loader pads to the largest size of the dataset. An episode ends
at a transition flagged `terminated` (no bootstrap) or `truncated` (time limit or any
other cut: bootstrap); the next transition starts the next episode. `<first>` orders the
chunks (the env step of the first transition when sac_brc.py writes it).

Chunks are small and written atomically (temporary file, then rename), so a 1e6-per-task
buffer is never held twice in memory, and a crash never leaves a half-written chunk.
"""

import itertools
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from common.suites import TASKS, TaskSpec

FORMAT, VERSION = "brc-dataset", 1
DEFAULT_CHUNK_SIZE = 10_000
# field -> (kind, per-transition shape: "obs", "act" or scalar)
FIELDS = {
    "observations": ("float", "obs"),
    "actions": ("float", "act"),
    "rewards": ("float", ""),
    "next_observations": ("float", "obs"),
    "terminated": ("bool", ""),
    "truncated": ("bool", ""),
}
_CHUNK = re.compile(r"^chunk_(\d{12})_(\d{8})\.npz$")


class DatasetError(Exception):
    """A malformed or mismatched dataset: printed as one message."""


def chunk_name(first: int, count: int) -> str:
    return f"chunk_{first:012d}_{count:08d}.npz"


def list_chunks(task_dir: Path) -> list[tuple[int, int, Path]]:
    """(first, count, path) of the chunks of one task, in order; temporary files are ignored."""
    chunks = []
    for path in task_dir.iterdir():
        match = _CHUNK.match(path.name)
        if match:
            chunks.append((int(match[1]), int(match[2]), path))
    return sorted(chunks)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A chunk written whole or not at all; a failed write (a full disk) is one DatasetError."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DatasetError(
            f"cannot write {path}: {error.strerror or error}; the dataset keeps every chunk written before it. "
            "Free space (or fix the cause), then continue the run with --resume: it records again from its "
            "last checkpoint"
        ) from None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_metadata(tasks: list[TaskSpec], source: str, **extra) -> dict:
    """metadata.json of a dataset of `tasks` (unpadded sizes from the suite registry)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "tasks": [{"name": t.name, "obs_dim": t.obs_dim, "act_dim": t.act_dim} for t in tasks],
        "source": source,
        **extra,
    }


def check_recorder(path: Path, run_dir: Path, metadata: dict | None = None) -> None:
    """Refuse to reopen the dataset at `path` for the run in `run_dir` if another run recorded it
    (a copy of a run directory names the original's dataset, whose steps a resume would write
    over) and that run is still where metadata.json says (a moved project finds nothing there)."""
    metadata = metadata or read_metadata(path)
    recorder = Path(metadata.get("run_dir") or run_dir)
    if recorder.is_dir() and not recorder.samefile(run_dir):
        raise DatasetError(
            f"{path} is the dataset of {recorder}, not of {run_dir} (a copy of that run?): resuming would "
            f"overwrite its steps; give the copy a copy of the dataset (its save_buffer in {run_dir}/config.json)"
        )


class DatasetWriter:
    """Records transitions per task and writes them in chunks of `chunk_size`.

    `add` takes one lockstep step of all tasks (padded, as the online loop has them) and
    keeps the rows with `valid`; `flush` writes every partial chunk (call it at each
    checkpoint and at the end). `resume_step`: reopen an existing dataset after a resumed
    run's checkpoint at that step: chunks that start after it are deleted (so each step is
    stored once), and each task's last stored transition is marked `truncated` unless it
    already ends an episode, because the resumed run starts new episodes.
    """

    def __init__(
        self,
        path: Path,
        tasks: list[TaskSpec],
        metadata: dict,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        resume_step: int | None = None,
    ):
        self.path, self.tasks, self.chunk_size = Path(path), tasks, chunk_size
        if resume_step is None:
            if self.path.is_file() or (self.path.is_dir() and any(self.path.iterdir())):
                raise DatasetError(f"{self.path} exists and is not empty; pick another --save-buffer folder")
            self.path.mkdir(parents=True, exist_ok=True)
            for task in tasks:
                (self.path / task.name).mkdir()
            _atomic_write_text(self.path / "metadata.json", json.dumps(metadata, indent=2))
        else:
            saved = read_metadata(self.path)
            if [t["name"] for t in saved["tasks"]] != [t.name for t in tasks]:
                recorded = ", ".join(t["name"] for t in saved["tasks"])
                raise DatasetError(f"{self.path} was recorded for other tasks: {recorded}")
            if metadata.get("run_dir"):
                check_recorder(self.path, Path(metadata["run_dir"]), saved)
            for task in tasks:
                for stray in (self.path / task.name).glob("*.tmp"):  # a chunk being written when the run died
                    stray.unlink()
                self._truncate_after(self.path / task.name, resume_step)
        self._pending = [self._empty(t) for t in tasks]
        self._count = [0] * len(tasks)
        self._first = [0] * len(tasks)

    def _empty(self, task: TaskSpec) -> dict[str, np.ndarray]:
        dims = {"obs": (task.obs_dim,), "act": (task.act_dim,), "": ()}
        dtypes = {"float": np.float32, "bool": bool}
        return {f: np.zeros((self.chunk_size, *dims[s]), dtypes[k]) for f, (k, s) in FIELDS.items()}

    @staticmethod
    def _truncate_after(task_dir: Path, step: int) -> None:
        chunks = list_chunks(task_dir)
        for first, _, path in chunks:
            if first > step:
                path.unlink()
        kept = [c for c in chunks if c[0] <= step]
        if kept:
            path = kept[-1][2]
            with np.load(path) as data:
                arrays = {f: data[f] for f in FIELDS}
            if not (arrays["terminated"][-1] or arrays["truncated"][-1]):
                arrays["truncated"][-1] = True
                _atomic_savez(path, arrays)

    def add(
        self,
        step: int,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """One lockstep step: row i is task i (padded obs/actions); `step` names the env step."""
        for i in map(int, np.flatnonzero(valid)):
            task, pending, n = self.tasks[i], self._pending[i], self._count[i]
            if n == 0:
                self._first[i] = step
            pending["observations"][n] = obs[i, : task.obs_dim]
            pending["actions"][n] = action[i, : task.act_dim]
            pending["rewards"][n] = reward[i]
            pending["next_observations"][n] = next_obs[i, : task.obs_dim]
            pending["terminated"][n] = terminated[i]
            pending["truncated"][n] = truncated[i]
            self._count[i] = n + 1
            if n + 1 == self.chunk_size:
                self._write(i)

    def _write(self, i: int) -> None:
        n = self._count[i]
        if n == 0:
            return
        self.write_chunk(i, self._first[i], {f: a[:n] for f, a in self._pending[i].items()})
        self._count[i] = 0

    def write_chunk(self, i: int, first: int, arrays: dict[str, np.ndarray]) -> None:
        """Write task i's `arrays` (unpadded, every field of FIELDS) as one chunk, atomically."""
        count = len(arrays["rewards"])
        path = self.path / self.tasks[i].name / chunk_name(first, count)
        _atomic_savez(path, {f: arrays[f] for f in FIELDS})

    def flush(self) -> None:
        for i in range(len(self.tasks)):
            self._write(i)


def write_dataset(path: Path, tasks: list[TaskSpec], per_task: dict[str, dict[str, np.ndarray]], metadata: dict,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:  # fmt: skip
    """Write whole per-task arrays (unpadded, fields of FIELDS) as a dataset: the converter's entry point."""
    writer = DatasetWriter(path, tasks, metadata, chunk_size)
    for i, task in enumerate(tasks):
        arrays = per_task[task.name]
        for start in range(0, len(arrays["rewards"]), chunk_size):
            part = {f: np.asarray(arrays[f][start : start + chunk_size]) for f in FIELDS}
            writer.write_chunk(i, start, part)


# ---------------------------------------------------------------- loading and validation


class Dataset(NamedTuple):
    """The loaded transitions of all tasks in host memory, task-major, padded to the largest
    sizes: all of them, or a random subset per task (`load_dataset(max_per_task=...)`). The
    episode statistics are of every transition in the files, computed while streaming, so
    they do not depend on the subset."""

    tasks: list[TaskSpec]
    obs: np.ndarray  # (N, obs_dim) float32, zero-padded
    action: np.ndarray  # (N, act_dim) float32, zero-padded
    reward: np.ndarray  # (N,) float32
    next_obs: np.ndarray  # (N, obs_dim) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    offsets: np.ndarray  # (tasks + 1,) int64: task k holds rows offsets[k]:offsets[k+1]
    metadata: dict
    stats: list["EpisodeStats"]  # per task, of all its transitions in the files

    def task_slice(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))


class EpisodeStats(NamedTuple):
    transitions: int  # in the files (the loaded subset may hold fewer)
    terminated: int
    truncated: int
    returns: np.ndarray  # undiscounted return of every finished episode
    max_abs_return: float  # G_i of paper eq. 2 at the loader's gamma (see `discounted_returns`)


def read_metadata(path: Path) -> dict:
    """metadata.json, checked: format, version, tasks known to common.suites with their sizes."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset {path} is not a folder (see docs/dataset-format.md)")
    meta_path = path / "metadata.json"
    if not meta_path.exists() and (path / "config.json").exists():  # a run directory: point to its data
        try:
            config = json.loads((path / "config.json").read_text())
        except ValueError as error:
            raise DatasetError(f"{path} is a run directory whose config.json cannot be read ({error}), not a dataset") from None
        if data := config.get("save_buffer") or config.get("dataset"):
            how = "recorded its transitions with --save-buffer" if config.get("save_buffer") else "trained on the dataset"
            raise DatasetError(f"{path} is a run directory, not a dataset: it {how} {data} "
                               "(relative to where it started): give that folder")  # fmt: skip
        raise DatasetError(f"{path} is a run directory, not a dataset, and did not record its transitions "
                           "(a run records them with --save-buffer DIR)")  # fmt: skip
    if not meta_path.exists():
        raise DatasetError(f"{path} has no metadata.json; is it a dataset folder (docs/dataset-format.md)?")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{meta_path} is not valid JSON ({error})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(
            f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
    tasks = meta.get("tasks")
    if not (isinstance(tasks, list) and tasks and all(isinstance(t, dict) and "name" in t for t in tasks)):
        raise DatasetError(f"{meta_path}: 'tasks' must be a non-empty list of {{name, obs_dim, act_dim}}")
    names = [t["name"] for t in tasks]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise DatasetError(
            f"{meta_path}: task(s) {', '.join(map(str, unknown))} not in the suite registry "
            f"(common/suites.py); valid tasks: {', '.join(sorted(TASKS))}"
        )
    if len(set(names)) != len(names):
        raise DatasetError(f"{meta_path}: a task is listed twice: {', '.join(names)}")
    for t in tasks:
        spec = TASKS[t["name"]]
        if (t.get("obs_dim"), t.get("act_dim")) != (spec.obs_dim, spec.act_dim):
            raise DatasetError(
                f"{meta_path}: task {spec.name} has obs_dim {t.get('obs_dim')}, act_dim {t.get('act_dim')}; "
                f"its environment has {spec.obs_dim} and {spec.act_dim}"
            )
    return meta


class DatasetIndex(NamedTuple):
    """What a dataset holds, from metadata.json and the chunk names alone (no array is read)."""

    path: Path
    metadata: dict
    tasks: list[TaskSpec]
    chunks: list[list[tuple[int, int, Path]]]  # per task: (first, count, path), in order
    sizes: list[int]  # transitions per task

    @property
    def obs_dim(self) -> int:
        return max(t.obs_dim for t in self.tasks)

    @property
    def act_dim(self) -> int:
        return max(t.act_dim for t in self.tasks)


def index_dataset(path: Path) -> DatasetIndex:
    """Read metadata.json and every task's chunk list; reject misnamed and overlapping chunks."""
    path = Path(path)
    meta = read_metadata(path)
    tasks = [TASKS[t["name"]] for t in meta["tasks"]]
    chunks = []
    for task in tasks:
        task_dir = path / task.name
        task_chunks = list_chunks(task_dir) if task_dir.is_dir() else []
        if not task_chunks:
            raise DatasetError(f"{path}: task {task.name} has no chunk files ({task_dir}/chunk_*.npz)")
        # a file the loader would skip is data the user thinks is there
        strays = sorted(p.name for p in task_dir.iterdir() if not (_CHUNK.match(p.name) or p.name.endswith(".tmp")))
        if strays:
            raise DatasetError(
                f"{task_dir}: {strays[0]} is not a chunk name; chunks are named "
                f"chunk_<first: 12 digits>_<count: 8 digits>.npz (docs/dataset-format.md): rename or remove it"
            )
        for (first, count, a), (next_first, _, b) in itertools.pairwise(task_chunks):
            if next_first < first + count:
                raise DatasetError(
                    f"{task_dir}: chunks {a.name} and {b.name} overlap ({a.name} holds steps {first} to "
                    f"{first + count - 1}); each step may be stored once: remove the duplicate chunk"
                )
        chunks.append(task_chunks)
    sizes = [sum(count for _, count, _ in task_chunks) for task_chunks in chunks]
    empty = [t.name for t, n in zip(tasks, sizes) if n == 0]
    if empty:
        raise DatasetError(f"{path}: task {empty[0]} has no transitions (its chunks are empty); remove it from metadata.json")
    return DatasetIndex(path, meta, tasks, chunks, sizes)


def dataset_bytes(transitions: int, obs_dim: int, act_dim: int) -> int:
    """Host bytes of `transitions` padded rows: obs, next_obs, action, reward float32, two flags."""
    return transitions * (4 * (2 * obs_dim + act_dim + 1) + 2)


def memory_text(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def available_memory() -> int:
    """MemAvailable of this host, in bytes."""
    with open("/proc/meminfo") as f:
        meminfo = dict(line.split(":", 1) for line in f)
    return int(meminfo["MemAvailable"].split()[0]) * 1024


def _check_chunk(path: Path, data: dict[str, np.ndarray], task: TaskSpec, count: int) -> None:
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise DatasetError(f"{path} is missing field(s) {', '.join(missing)}")
    dims = {"obs": (task.obs_dim,), "act": (task.act_dim,), "": ()}
    for field, (kind, shape) in FIELDS.items():
        array = data[field]
        expected = (count, *dims[shape])
        if array.shape != expected:
            raise DatasetError(
                f"{path}: {field} has shape {array.shape}, expected {expected} for {task.name}"
            )
        if kind == "bool" and array.dtype != bool:
            raise DatasetError(f"{path}: {field} has dtype {array.dtype}, expected bool")
        if kind == "float":
            if not np.issubdtype(array.dtype, np.floating):
                raise DatasetError(f"{path}: {field} has dtype {array.dtype}, expected float32")
            if not np.isfinite(array).all():
                raise DatasetError(f"{path}: {field} contains NaN or infinite values")
    if np.abs(data["actions"]).max(initial=0.0) > 1.0:
        raise DatasetError(f"{path}: actions outside [-1, 1]; rescale them to the env's normalised range")
    if (data["terminated"] & data["truncated"]).any():
        raise DatasetError(f"{path}: a transition is both terminated and truncated; keep only terminated")


def discounted_returns(rewards: np.ndarray, gamma: float, truncated: bool) -> np.ndarray:
    """Monte-Carlo return of every state of one episode; a truncated episode bootstraps its
    tail with `mean(rewards) / (1 - gamma)` (ref. code, as sac_brc.py's ReturnNormalizer).
    The sum runs as a linear filter over the reversed rewards (episodes can be long)."""
    tail = float(np.mean(rewards)) / (1.0 - gamma) if truncated else 0.0
    returns = lfilter([1.0], [1.0, -gamma], np.asarray(rewards, np.float64)[::-1])[::-1]
    return returns + tail * gamma ** np.arange(len(rewards), 0, -1)


class _EpisodeTracker:
    """One task's episodes as its chunks stream by: checks that every transition that does not
    end an episode continues into the next one (`next_obs[t] == obs[t + 1]`, across chunks too)
    and gathers the episode statistics of `EpisodeStats`."""

    def __init__(self, gamma: float):
        self.gamma, self.max_abs_return, self.returns = gamma, 0.0, []
        self.terminated = self.truncated = self.transitions = 0
        self.episode: list[np.ndarray] = []  # rewards of the unfinished episode, chunk by chunk
        self.last_next_obs = None  # next_obs of the previous chunk's last transition, if it did not end

    def add(self, path: Path, data: dict[str, np.ndarray]) -> None:
        obs, next_obs, reward, terminated = (data[f] for f in ("observations", "next_observations", "rewards", "terminated"))
        if len(reward) == 0:  # an empty chunk continues nothing and ends nothing
            return
        ends = terminated | data["truncated"]
        continues = lambda a, b: np.isclose(a, b, rtol=1e-5, atol=1e-6).all(axis=-1)
        if self.last_next_obs is not None and not continues(self.last_next_obs, obs[0]):
            raise DatasetError(
                f"{path}: the first transition does not continue the previous chunk's unfinished episode "
                "(its observations differ from the last next_observations); store episodes whole and in time order"
            )
        broken = np.flatnonzero(~ends[:-1] & ~continues(next_obs[:-1], obs[1:]))
        if len(broken):
            raise DatasetError(
                f"{path}: transition {broken[0]} does not end an episode, but its next_observations is not the "
                "next transition's observations; store episodes whole and in time order (flag a cut as truncated)"
            )
        start = 0
        for end in map(int, np.flatnonzero(ends)):
            self.episode.append(reward[start : end + 1])
            self._finish(bool(terminated[end]))
            start = end + 1
        if start < len(reward):
            self.episode.append(reward[start:])
        self.last_next_obs = None if ends[-1] else next_obs[-1]
        self.transitions += len(reward)

    def _finish(self, terminated: bool, counted: bool = True) -> None:
        rewards = np.concatenate(self.episode)
        self.episode = []
        returns = discounted_returns(rewards, self.gamma, truncated=not terminated)
        self.max_abs_return = max(self.max_abs_return, float(np.abs(returns).max()))
        if counted:
            self.terminated, self.truncated = self.terminated + terminated, self.truncated + (not terminated)
            self.returns.append(float(rewards.sum()))

    def stats(self) -> EpisodeStats:
        if self.episode:  # the recording stopped mid-episode: bootstrapped like a truncation, not counted
            self._finish(terminated=False, counted=False)
        return EpisodeStats(self.transitions, self.terminated, self.truncated, np.array(self.returns),
                            self.max_abs_return)  # fmt: skip


def load_dataset(
    path: Path | DatasetIndex,
    gamma: float = 0.99,
    max_per_task: int | None = None,
    seed: int = 0,
    memory_limit: int | None = None,
    fix: str = "keep a random subset of each task (max_per_task={fit} or less)",
) -> Dataset:
    """Validate a dataset and load it into padded host arrays, streaming one chunk at a time:
    memory is the loaded rows plus a few chunks' buffers, never the whole padded dataset. With
    `max_per_task`, a uniformly random subset of at most that many transitions per task is
    kept (drawn with `seed`, kept in time order). Refuses, before allocating, a load that needs
    more than `memory_limit` bytes (default 80% of the available host memory), naming the
    numbers and `fix` (with `{fit}`: the largest `max_per_task` that fits). Raises DatasetError
    with one message per malformed case. `gamma` is for the episode statistics' G_i."""
    index = path if isinstance(path, DatasetIndex) else index_dataset(path)
    tasks, obs_dim, act_dim = index.tasks, index.obs_dim, index.act_dim
    kept = [min(n, max_per_task) if max_per_task else n for n in index.sizes]
    largest_chunk = max(count for task_chunks in index.chunks for _, count, _ in task_chunks)
    # one chunk at a time: its arrays, numpy's read buffers and the continuity check's
    # temporaries; and the drawing of a task's subset (a permutation of its row numbers)
    streaming = 4 * dataset_bytes(largest_chunk, obs_dim, act_dim) + 8 * max(index.sizes)
    need = dataset_bytes(sum(kept), obs_dim, act_dim) + streaming
    limit = int(0.8 * available_memory()) if memory_limit is None else memory_limit
    if need > limit:
        per_row = dataset_bytes(1, obs_dim, act_dim)
        fit = max((limit - streaming) // (per_row * len(tasks)), 0)
        raise DatasetError(
            f"{index.path}: {sum(kept):,} transitions ({len(tasks)} tasks, padded to obs {obs_dim} / action "
            f"{act_dim}) need {memory_text(need)} of host memory, more than the {memory_text(limit)} allowed; "
            + (fix.format(fit=fit) if fit > 0 else "not even one transition per task fits: free memory or use a larger host")
        )
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    total = int(offsets[-1])
    obs, next_obs = np.zeros((total, obs_dim), np.float32), np.zeros((total, obs_dim), np.float32)
    action, reward = np.zeros((total, act_dim), np.float32), np.zeros(total, np.float32)
    terminated, truncated = np.zeros(total, bool), np.zeros(total, bool)
    rng, stats = np.random.default_rng(seed), []
    for k, task in enumerate(tasks):
        size = index.sizes[k]
        rows = np.arange(size) if kept[k] == size else np.sort(rng.choice(size, kept[k], replace=False))
        tracker, first_row = _EpisodeTracker(gamma), 0
        for _, count, chunk_path in index.chunks[k]:
            try:  # each field is decompressed once
                with np.load(chunk_path) as file:
                    data = {f: file[f] for f in FIELDS if f in file.files}
            except Exception as error:  # noqa: BLE001 (zip or pickle errors of a damaged file)
                raise DatasetError(f"{chunk_path} cannot be read ({type(error).__name__}: {error})") from None
            _check_chunk(chunk_path, data, task, count)
            tracker.add(chunk_path, data)
            lo, hi = np.searchsorted(rows, [first_row, first_row + count])
            local, out = rows[lo:hi] - first_row, slice(int(offsets[k] + lo), int(offsets[k] + hi))
            obs[out, : task.obs_dim] = data["observations"][local]
            next_obs[out, : task.obs_dim] = data["next_observations"][local]
            action[out, : task.act_dim] = data["actions"][local]
            reward[out] = data["rewards"][local]
            terminated[out], truncated[out] = data["terminated"][local], data["truncated"][local]
            first_row += count
        stats.append(tracker.stats())
    return Dataset(tasks, obs, action, reward, next_obs, terminated, truncated, offsets, index.metadata, stats)
