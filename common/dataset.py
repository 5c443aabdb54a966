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

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


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
            if self.path.exists() and any(self.path.iterdir()):
                raise DatasetError(f"{self.path} exists and is not empty; pick another --save-buffer folder")
            self.path.mkdir(parents=True, exist_ok=True)
            for task in tasks:
                (self.path / task.name).mkdir()
            _atomic_write_text(self.path / "metadata.json", json.dumps(metadata, indent=2))
        else:
            saved = read_metadata(self.path)
            if [t["name"] for t in saved["tasks"]] != [t.name for t in tasks]:
                raise DatasetError(f"{self.path} was recorded for other tasks: {[t['name'] for t in saved['tasks']]}")
            for task in tasks:
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
        _atomic_savez(self.path / self.tasks[i].name / chunk_name(first, count), {f: arrays[f] for f in FIELDS})

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
            writer.write_chunk(i, start, {f: np.asarray(arrays[f][start : start + chunk_size]) for f in FIELDS})


# ---------------------------------------------------------------- loading and validation


class Dataset(NamedTuple):
    """All transitions of all tasks in host memory, task-major, padded to the largest sizes."""

    tasks: list[TaskSpec]
    obs: np.ndarray  # (N, obs_dim) float32, zero-padded
    action: np.ndarray  # (N, act_dim) float32, zero-padded
    reward: np.ndarray  # (N,) float32
    next_obs: np.ndarray  # (N, obs_dim) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    offsets: np.ndarray  # (tasks + 1,) int64: task k holds rows offsets[k]:offsets[k+1]
    metadata: dict

    def task_slice(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))


def read_metadata(path: Path) -> dict:
    """metadata.json, checked: format, version, tasks known to common.suites with their sizes."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset {path} is not a folder (see docs/dataset-format.md)")
    meta_path = path / "metadata.json"
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
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) and "name" in t for t in tasks):
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


def _check_chunk(path: Path, data, task: TaskSpec, count: int) -> None:
    missing = [f for f in FIELDS if f not in data.files]
    if missing:
        raise DatasetError(f"{path} is missing field(s) {', '.join(missing)}")
    dims = {"obs": (task.obs_dim,), "act": (task.act_dim,), "": ()}
    for field, (kind, shape) in FIELDS.items():
        array = data[field]
        expected = (count, *dims[shape])
        if array.shape != expected:
            raise DatasetError(f"{path}: {field} has shape {array.shape}, expected {expected} for {task.name}")
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


def load_dataset(path: Path) -> Dataset:
    """Load and validate a dataset into padded host arrays, one chunk at a time (memory: the
    dataset plus one chunk). Raises DatasetError with one message per malformed case."""
    path = Path(path)
    meta = read_metadata(path)
    tasks = [TASKS[t["name"]] for t in meta["tasks"]]
    chunks = []
    for task in tasks:
        task_dir = path / task.name
        task_chunks = list_chunks(task_dir) if task_dir.is_dir() else []
        if not task_chunks:
            raise DatasetError(f"{path}: task {task.name} has no chunk files ({task_dir}/chunk_*.npz)")
        chunks.append(task_chunks)
    sizes = [sum(count for _, count, _ in task_chunks) for task_chunks in chunks]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total, obs_dim, act_dim = int(offsets[-1]), max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)
    obs = np.zeros((total, obs_dim), np.float32)
    next_obs = np.zeros((total, obs_dim), np.float32)
    action = np.zeros((total, act_dim), np.float32)
    reward = np.zeros(total, np.float32)
    terminated, truncated = np.zeros(total, bool), np.zeros(total, bool)
    for task, start, task_chunks in zip(tasks, offsets, chunks):
        row = int(start)
        for _, count, chunk_path in task_chunks:
            try:
                data = np.load(chunk_path)
            except Exception as error:  # noqa: BLE001 (zip or pickle errors of a damaged file)
                raise DatasetError(f"{chunk_path} cannot be read ({type(error).__name__}: {error})") from None
            with data:
                _check_chunk(chunk_path, data, task, count)
                rows = slice(row, row + count)
                obs[rows, : task.obs_dim] = data["observations"]
                next_obs[rows, : task.obs_dim] = data["next_observations"]
                action[rows, : task.act_dim] = data["actions"]
                reward[rows] = data["rewards"]
                terminated[rows], truncated[rows] = data["terminated"], data["truncated"]
            row += count
    return Dataset(tasks, obs, action, reward, next_obs, terminated, truncated, offsets, meta)


def episode_bounds(terminated: np.ndarray, truncated: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, stop, bootstrap) of each episode of one task's transitions; `bootstrap` is False
    only for an episode that ends in termination. A last episode without an end flag (the
    recording stopped mid-episode) counts as truncated."""
    ends = np.flatnonzero(terminated | truncated)
    bounds, start = [], 0
    for end in ends:
        bounds.append((start, int(end) + 1, not bool(terminated[end])))
        start = int(end) + 1
    if start < len(terminated):
        bounds.append((start, len(terminated), True))
    return bounds
