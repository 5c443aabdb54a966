"""The run harness the scripts share, typed on plain pytrees and dicts (common/ imports no
script): the run flags (`RunArgs`), user errors, config.json and `--resume`'s check, the memory
plan, metrics.jsonl and the console, atomic checkpoints of a state pytree plus a host dict plus
(optionally) replay arrays, when to checkpoint, and stopping cleanly on a signal, so that a
preempted run loses nothing it had done.

Checkpoints are trusted only once verified: each ends with a manifest of its files' sizes and
CRC-32s, written last; `--resume` passes over a damaged one for the one before (the newest
`--keep-checkpoints` are kept), and a file that cannot be written (a full disk) ends the run with
one line, leaving everything written before as it was.

A scheduler that preempts a job (SLURM, a cloud spot instance) first sends SIGTERM, then kills
it after a grace period; Ctrl-C sends SIGINT. Either one, received once, asks the training loop
to stop after its current step: the loop writes a checkpoint and raises `Stopped`, which the
script turns into one line naming `--resume` and exit code 128 + the signal's number (143 for
SIGTERM, 130 for SIGINT), so a wrapper sees the run did not finish. A second signal acts at
once, as it would without this.
"""

import dataclasses
import errno
import fcntl
import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray, PyTree

from common.cli import saved_config
from common.dataset import DatasetError, available_memory, check_recorder


@dataclass
class RunArgs:
    """The flags of how a run is kept rather than what it learns, the same in every training
    script: each script's `Args` extends this class. Any of them may change on `--resume`."""

    log_interval: int = 1_000
    """steps between console progress lines (offline_brc_bc.py: updates)"""
    checkpoint_interval: int = 100_000
    """steps between checkpoints (offline_brc_bc.py: updates); one is also written at the end"""
    checkpoint_minutes: float = 30.0
    """also write a checkpoint when this many minutes have passed since the last (0: by steps only); SIGTERM or Ctrl-C always writes one, then exits"""
    keep_checkpoints: int = 2
    """checkpoints kept, newest first: a damaged newest one is passed over on --resume for the one before"""
    run_name: str | None = None
    """run directory name under runs/; default the suite, network, seed and start time"""
    resume: str | None = None
    """run directory to continue from its latest checkpoint"""
    track: bool = False
    """also log to Weights & Biases (needs `pip install wandb`)"""
    num_devices: int | None = None
    """data-parallel devices (batch sharded, parameters replicated); default all visible devices"""


RUN_FIELDS = {field.name for field in dataclasses.fields(RunArgs)}


def check_positive(args, *names: str) -> None:
    """One line for the first of the flags `names` of `args` that is not positive and finite (nan included)."""
    for name in names:
        if getattr(args, name) is not None and not 0 < getattr(args, name) < math.inf:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def check_nonnegative(args, *names: str) -> None:
    """One line for the first of the flags `names` of `args` that is negative, infinite or nan."""
    for name in names:
        if not 0 <= getattr(args, name) < math.inf:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")


def check_discount_and_tau(args) -> None:
    """The discount gamma in (0, 1) and the target network's Polyak rate tau in (0, 1]."""
    if not 0 < args.gamma < 1:
        raise ConfigError(f"--gamma must be in (0, 1), got {args.gamma}")
    if not 0 < args.tau <= 1:
        raise ConfigError(f"--tau must be in (0, 1] (1: copy the critic), got {args.tau}")


def check_run_args(args: RunArgs) -> None:
    """The RunArgs flags, checked before anything runs."""
    check_positive(args, "log_interval", "checkpoint_interval", "keep_checkpoints")
    if not args.checkpoint_minutes >= 0:  # also refuses nan
        minutes = args.checkpoint_minutes
        raise ConfigError(f"--checkpoint-minutes must be >= 0 (0: by steps only), got {minutes}")
    if args.track and importlib.util.find_spec("wandb") is None:  # before the run directory is made
        raise ConfigError("--track needs wandb: pip install wandb")
    visible = len(jax.devices())
    if args.num_devices is not None and not 0 < args.num_devices <= visible:
        raise ConfigError(
            f"--num-devices must be between 1 and the {visible} visible device(s), got {args.num_devices}"
        )


def check_batch_split(batch_size: int, num_devices: int | None) -> None:
    """Data parallelism shards the batch: it must split evenly."""
    devices = num_devices or len(jax.devices())
    if batch_size % devices:
        raise ConfigError(
            f"the batch ({batch_size}) must split evenly across {devices} devices; "
            "change --batch-size or --num-devices"
        )


def make_mesh(num_devices: int | None) -> jax.sharding.Mesh:
    """A 1-D mesh over the first `num_devices` devices (all by default), axis "batch": the
    scripts' data parallelism."""
    devices = jax.devices()[: num_devices or len(jax.devices())]
    return jax.sharding.Mesh(np.array(devices), ("batch",))


def device_memory() -> tuple[int, str]:
    """Bytes the first device can hold, and what they are: the accelerator's memory limit, or on
    a CPU the host's available memory (for the scripts' memory plans)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"], f"{device.device_kind} memory"
    return available_memory(), "available host memory"


class ConfigError(Exception):
    """A user error: printed as one message, exit code 2."""


def check_memory(
    replay: int, capacity: int, parts: dict[str, int], headroom: float, what: str, fix: str
) -> None:
    """Print the memory plan of one device (every device holds the replay and the networks:
    data parallelism replicates them) and refuse, before anything is compiled, a plan above
    `headroom` of the device's memory; the rest is left for the update's activations.
    `replay`: bytes of `capacity` slots per task, described by `what`; `parts`: name -> bytes;
    `fix`: what else the user can shrink."""
    available, where = device_memory()
    gib = lambda b: f"{b / 2**30:.2f} GiB"
    total = replay + sum(parts.values())
    print(
        f"memory plan per device: replay {gib(replay)} ({what}) + "
        + " + ".join(f"{name} {gib(size)}" for name, size in parts.items() if size)
        + f" = {gib(total)} of {gib(available)} {where}"
    )
    if total > headroom * available:
        fitting = int((headroom * available - (total - replay)) / max(replay / capacity, 1))
        raise ConfigError(
            f"the memory plan ({gib(total)}: replay of {what} {gib(replay)}, the rest networks) needs more "
            f"than {headroom:.0%} of the {gib(available)} of {where}. Use --buffer-size {max(fitting, 0)} "
            f"or less, or {fix}"
        )


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def clock(seconds: float) -> str:
    """A duration for the console line: 42s, 3m05s, 2h07m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def check_finite(metrics: dict, step: int, run_dir: Path, unit: str = "step") -> dict:
    """Host copy of the update metrics; stops the run if the learner has diverged (`unit`: what
    `step` counts, for the message)."""
    host_metrics = jax.device_get(metrics)
    bad = [name for name, value in host_metrics.items() if not np.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"{', '.join(bad)} not finite at {unit} {step}; the last good checkpoint is kept in "
            f"{run_dir / 'checkpoints'}. Try a lower --learning-rate."
        )
    return host_metrics


def check_resume(args, resume_dir: Path, resumable: set[str]) -> None:
    """--resume refused, in one line, unless `resume_dir` holds a config.json whose fields outside
    `resumable` (the script's RESUMABLE_FIELDS) and RunArgs all equal those of `args` (a dataclass)."""
    if not resume_dir.is_dir():
        raise ConfigError(f"--resume {resume_dir}: no such directory; give a run directory under runs/")
    if not (resume_dir / "config.json").exists():
        raise ConfigError(f"--resume {resume_dir}: no config.json there; give a run directory under runs/")
    saved = saved_config(resume_dir)
    current = dataclasses.asdict(args)
    diffs = [f"--{k.replace('_', '-')} {saved.get(k)!r} (checkpoint) vs {current[k]!r} (now)"
             for k in current
             if k not in resumable | RUN_FIELDS and json.loads(json.dumps(current[k])) != saved.get(k)]  # fmt: skip
    if diffs:
        raise ConfigError(
            f"cannot resume {resume_dir}: its checkpoint was made with other arguments: " + "; ".join(diffs)
        )


class WriteError(ConfigError):
    """A file of the run could not be written (disk full, quota, permission): one line, exit 2."""


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind `error` (itself, or what it wraps: equinox wraps a failed write)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def write_failed(path: Path, error: OSError, run_dir: Path) -> WriteError:
    """The one line for a file that could not be written: the path, the cause, and where the run
    can continue from."""
    latest = run_dir / "checkpoints" / "latest"
    last = f"{run_dir / 'checkpoints' / latest.read_text().strip()}" if latest.exists() else "none yet"
    return WriteError(
        f"cannot write {path}: {error.strerror or error} (errno {error.errno}); nothing already written was "
        f"changed; the last good checkpoint: {last}. Free space (or fix the cause), then continue with "
        f"python {Path(sys.argv[0]).name} --resume {run_dir}"
    )


def checksum(path: Path) -> int:
    """CRC-32 of a file, read in 64 MiB blocks (zlib: about 1 GB/s on one core)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 26):
            crc = zlib.crc32(block, crc)
    return crc


def save_checkpoint(
    run_dir: Path, step: int, state: PyTree, host: dict, replay: dict[str, np.ndarray] | None = None, keep: int = 2
) -> None:
    """Write checkpoints/step_N/ (state.eqx, host.json, replay.npz if `replay` is given, and
    last manifest.json: each file's size and CRC-32) in a temporary folder, rename it, then
    point `latest` at it; the newest `keep` checkpoints are kept. A write that fails (a full
    disk) removes the temporary folder and raises `WriteError`; the checkpoints before stay."""
    root = run_dir / "checkpoints"
    name = f"step_{step:09d}"
    tmp = root / f".tmp_{name}"
    try:
        root.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        eqx.tree_serialise_leaves(tmp / "state.eqx", state)
        if replay is not None:
            np.savez(tmp / "replay.npz", **replay)
        (tmp / "host.json").write_text(json.dumps(host))
        files = {f.name: {"bytes": f.stat().st_size, "crc32": checksum(f)} for f in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps({"step": step, "files": files}))
        shutil.rmtree(root / name, ignore_errors=True)
        os.replace(tmp, root / name)
        atomic_write_text(root / "latest", name)
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if (cause := os_error(error)) is None:
            raise
        raise write_failed(root / name, cause, run_dir) from None
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def damage(ckpt: Path, files: tuple[str, ...] | None = None) -> str | None:
    """What is wrong with a checkpoint's `files` (default: all), checked against its manifest;
    None if intact. A checkpoint without a manifest (written before manifests existed) is taken
    as it is."""
    if not ckpt.is_dir():
        return "not there"
    if not (ckpt / "manifest.json").exists():
        missing = [f for f in ("state.eqx", "host.json") if not (ckpt / f).exists()]
        return f"{missing[0]} missing" if missing else None
    try:
        manifest = json.loads((ckpt / "manifest.json").read_text())["files"]
    except (ValueError, KeyError):
        return "manifest.json unreadable"
    for name, expected in manifest.items():
        if files is not None and name not in files:
            continue
        path = ckpt / name
        if not path.exists():
            return f"{name} missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size:,} bytes, its manifest says {expected['bytes']:,}"
        if checksum(path) != expected["crc32"]:
            return f"{name} fails its CRC-32 check"
    return None


def step_of(ckpt: Path) -> int:
    return int(ckpt.name.split("_")[1])


def checkpoint_folders(root: Path) -> list[Path]:
    """The step_N folders in `root` (a run's checkpoints/), newest first."""
    return sorted((c for c in root.glob("step_*") if c.name[5:].isdigit()), key=step_of, reverse=True)


def remove_partial_checkpoints(run_dir: Path) -> None:
    """checkpoints/.tmp_step_N: a checkpoint being written when the run died, a full copy of the
    state and replay that nothing else would remove."""
    for tmp in (run_dir / "checkpoints").glob(".tmp_step_*"):
        shutil.rmtree(tmp, ignore_errors=True)


def intact_checkpoint(run_dir: Path) -> Path:
    """The newest intact checkpoint: `latest`, or (with a warning naming what is damaged and the
    steps lost) the newest earlier one that verifies; a damaged one is renamed aside
    (checkpoints/damaged_step_N) so that it is never chosen again. A `latest` that names no
    checkpoint (left empty or garbled by a machine that died as it was replaced) is passed over
    for the newest checkpoint that verifies. One line if none is intact."""
    root = run_dir / "checkpoints"
    remove_partial_checkpoints(run_dir)
    steps = checkpoint_folders(root)
    if not (root / "latest").exists() and not steps:
        raise ConfigError(f"{run_dir} has no checkpoint to resume from (no checkpoints/latest)")
    named = (root / "latest").read_text(errors="replace").strip() if (root / "latest").exists() else ""
    if named.startswith("step_") and named[5:].isdigit():
        candidates = [root / named, *(c for c in steps if step_of(c) < step_of(root / named))]
    else:  # also a run that died between its first checkpoint and the first `latest`
        what = f"names no checkpoint ({named[:40]!r})" if (root / "latest").exists() else "is missing"
        print(f"warning: {root / 'latest'} {what}; resuming from the newest intact one", file=sys.stderr)
        candidates = steps
    damaged = []
    for ckpt in candidates:
        if (problem := damage(ckpt)) is None:
            break
        damaged.append((ckpt, problem))
    else:
        what = "; ".join(f"{c.name}: {p}" for c, p in damaged) or "no step_N folder"
        raise ConfigError(f"no intact checkpoint in {root} ({what}); the run cannot be resumed: start it anew")
    if damaged:
        bad, problem = damaged[0]
        print(f"warning: checkpoint {bad} is damaged ({problem}); resuming from {ckpt.name} instead: steps "
              f"{step_of(ckpt) + 1}-{step_of(bad)} are lost and will be run again", file=sys.stderr)  # fmt: skip
        for bad, _ in damaged:
            if bad.exists():  # `latest` may name a checkpoint that never reached the disk
                os.replace(bad, bad.with_name("damaged_" + bad.name))
    if ckpt.name != named:
        atomic_write_text(root / "latest", ckpt.name)
    return ckpt


def require_intact(ckpt: Path, flag: str) -> None:
    """A checkpoint that another run starts from (`flag`: --init-from, --checkpoint) is checked,
    never repaired (the run is not ours to change): one line naming the damage and, if there is
    one, the newest intact checkpoint to give instead. Only the files a transfer reads are
    checked: a CRC of a long run's replay.npz would cost minutes."""
    read = ("state.eqx", "host.json")
    if (problem := damage(ckpt, read)) is None:
        return
    intact = next((c for c in checkpoint_folders(ckpt.parent) if damage(c, read) is None), None)
    instead = f"give an intact one: {flag} {intact}" if intact else "that run has no intact checkpoint"
    raise ConfigError(f"{flag}: checkpoint {ckpt} is damaged ({problem}); {instead}")


def load_checkpoint(run_dir: Path, state_like: PyTree) -> tuple[PyTree, dict, Path | None]:
    """The newest intact checkpoint's state (shaped as `state_like`), host dict, and its
    replay.npz if it has one."""
    ckpt = intact_checkpoint(run_dir)
    try:
        state = eqx.tree_deserialise_leaves(ckpt / "state.eqx", state_like)
    except Exception as error:  # noqa: BLE001 (any shape or structure mismatch; the files are intact)
        raise ConfigError(
            f"checkpoint {ckpt} does not match this configuration ({type(error).__name__}); "
            f"resume with the arguments in {run_dir / 'config.json'} (a checkpoint written before "
            "2026-12-05 stores Linear weights (out, in) and cannot be loaded: start the run anew)"
        ) from None
    host = json.loads((ckpt / "host.json").read_text())
    return state, host, ckpt / "replay.npz" if (ckpt / "replay.npz").exists() else None


def ring_fields(buffer: tuple) -> tuple[str, ...]:
    """The stored fields of a replay of per-task rings: every field but `position` and `size`."""
    return tuple(f for f in buffer._fields if f not in ("position", "size"))


def ring_arrays(buffer: tuple) -> dict[str, np.ndarray]:
    """What a checkpoint's replay.npz holds of a replay of per-task rings (`buffer`: a NamedTuple of fields shaped
    [tasks, capacity, ...], then `position` and `size` per task): each task's slots so far, and
    the rings' state."""
    size = int(jnp.max(buffer.size))
    return {**{f: np.asarray(getattr(buffer, f)[:, :size]) for f in ring_fields(buffer)},
            "position": np.asarray(buffer.position), "size": np.asarray(buffer.size)}  # fmt: skip


def restore_ring(path: Path, buffer: tuple) -> tuple:
    """`ring_arrays`' file loaded into `buffer`, whose capacity may differ from the saved run's
    (capacity is min(--buffer-size, --total-steps), and --total-steps may grow on resume).

    Each task's slots are put back in chronological order from slot 0 (a full ring starts at
    its write position), so the next insert goes right after the newest."""
    fields = ring_fields(buffer)
    capacity = getattr(buffer, fields[0]).shape[1]
    with np.load(path) as data:
        position, size = data["position"], data["size"]
        saved = data[fields[0]].shape[1]  # the largest task size, the saved capacity if any task is full
        if int(size.max()) > capacity:
            raise ConfigError(
                f"{path} holds {int(size.max())} slots per task, more than this run's replay "
                f"capacity {capacity}; resume with --total-steps of at least {int(size.max())}"
            )
        restored = {}
        for field in fields:
            rows = [np.roll(data[field][t], -int(position[t]) if size[t] == saved else 0, axis=0)
                    for t in range(len(size))]  # fmt: skip
            restored[field] = getattr(buffer, field).at[:, :saved].set(np.stack(rows))
    position, size = jnp.asarray(size % capacity, jnp.int32), jnp.asarray(size, jnp.int32)
    return buffer._replace(**restored, position=position, size=size)


def append_line(path: Path, line: str, run_dir: Path) -> None:
    """Append `line` to `path` in one write; if it fails (a full disk), the file is cut back to
    what it held, so that it never ends in half a record, and the run ends with `WriteError`."""
    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) < len(data):
                raise OSError(errno.ENOSPC, "No space left on device (a partial write)", str(path))
        except OSError as error:
            os.ftruncate(fd, size)
            raise write_failed(path, error, run_dir) from None
    finally:
        os.close(fd)


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """On resume: metrics.jsonl keeps the records up to the checkpoint's step, so that the stream
    has each step once. A line that is not a record (cut short or zero-filled when the machine
    died mid-write) is dropped with a warning instead of blocking the resume."""
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.exists():
        return
    kept, unreadable = [], []
    for number, line in enumerate(metrics_path.read_text(errors="replace").splitlines(), 1):
        try:
            if line.strip() and json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            unreadable.append(number)
    if unreadable:
        print(f"warning: {metrics_path}: dropped line(s) {', '.join(map(str, unreadable))}, not whole records "
              "(cut short when the run was killed?)", file=sys.stderr)  # fmt: skip
    atomic_write_text(metrics_path, "".join(line + "\n" for line in kept))


class EpisodeReturns:
    """Each task's running training-episode return, and its last 10 finished ones (`recent`):
    the online returns of the console line and the evaluation record."""

    def __init__(self, num_tasks: int):
        self.running, self.recent = np.zeros(num_tasks), [deque(maxlen=10) for _ in range(num_tasks)]

    def add(self, reward: np.ndarray, ended: np.ndarray) -> None:
        self.running += reward
        for i in np.flatnonzero(ended):
            self.recent[i].append(self.running[i])
            self.running[i] = 0.0


class Stopped(Exception):
    """The run stopped on a signal after writing a checkpoint; `code` is the exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def run_main(main, args, user_errors: tuple[type[Exception], ...]) -> None:
    """A script's entry point: `main(args)`, where bad input (`user_errors`) ends the process with
    one `error:` line and exit 2, a stop on a signal with its line and 128 + the signal, and a
    second Ctrl-C with one line and 130 (checkpoints are whole or absent), never a traceback."""
    try:
        main(args)
    except user_errors as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Stopped as stopped:  # SIGTERM or Ctrl-C, after a checkpoint
        print(stopped, file=sys.stderr)
        sys.exit(stopped.code)
    except KeyboardInterrupt:  # the env workers are stopped on the way out
        print("interrupted: --resume RUN_DIR continues from its latest checkpoint, if one was written",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        # not sys.exit: interrupted while JAX compiles, the interpreter's teardown can segfault (XLA's
        # threads still run); everything of ours is closed by now
        os._exit(130)


class StopSignal:
    """Catches the first SIGTERM or SIGINT (`received`, its number) until `restore()`."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        self.restore()  # a second signal acts at once

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stopped(self, step: int, run_dir, unit: str = "step") -> Stopped:
        """The exception to raise once the checkpoint at `step` (counted in `unit`s) is written."""
        name = signal.Signals(self.received).name
        return Stopped(
            f"stopped by {name} at {unit} {step}: checkpoint written; continue with "
            f"python {Path(sys.argv[0]).name} --resume {run_dir}",
            128 + self.received,
        )


class CheckpointSchedule:
    """A checkpoint every `interval` steps, at the last step, and whenever `minutes` of wall time
    have passed since the last one (0: never by time), so a long run at scale, where 100k steps
    can take most of an hour, never has more than `minutes` of work unsaved."""

    def __init__(self, interval: int, last_step: int, minutes: float):
        self.interval, self.last_step, self.seconds = interval, last_step, 60.0 * minutes
        self.written_at = time.monotonic()

    def due(self, step: int) -> bool:
        return (
            step % self.interval == 0
            or step == self.last_step
            or (self.seconds > 0 and time.monotonic() - self.written_at >= self.seconds)
        )

    def written(self) -> None:
        self.written_at = time.monotonic()


_HELD: dict[Path, int | None] = {}  # run directory -> its lock's file descriptor


def hold(run_dir: Path) -> int | None:
    """An exclusive lock on `run_dir` for the life of this process (the kernel drops it when the
    process ends, killed or not): a second process on the same run, such as a --resume while the
    run still runs or two resumes at once, is refused instead of interleaving their records and
    checkpoints. None where the file system has no locks."""
    if run_dir.resolve() in _HELD:  # this process holds it already (main called twice in one process)
        return _HELD[run_dir.resolve()]
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"{run_dir} is in use by another process (PID {holder}): let it end, or stop it, "
                          "before resuming") from None  # fmt: skip
    except OSError:  # no locks on this file system (some network mounts)
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[run_dir.resolve()] = fd
    return fd


class RunDir:
    """A run's directory and what every script writes to it: config.json, metrics.jsonl (and
    wandb with --track), and the console's progress line. `args` is the script's dataclass of
    flags (with `resume`, `run_name`, `log_interval` and, if it logs to wandb, `track`); each
    script's `Run` adds its own checkpoint contents and console fields."""

    def __init__(self, args, run_dir: Path, resumed: bool, total: int, tasks: list | None, restarted: bool = False):
        self.args, self.dir, self.resumed, self.total, self.tasks = args, run_dir, resumed, total, tasks
        self.restarted = restarted  # --resume of a run stopped before its first checkpoint: from step 0
        self.wandb, self.to_close = None, []
        self.lock = hold(run_dir) if resumed or restarted else None  # a new run's, once its directory exists

    @classmethod
    def open(
        cls, args, default_name: str, resumable: set[str], total: int, tasks: list | None = None
    ) -> "RunDir":
        """--resume's directory after checking that its config matches, else runs/<--run-name or
        `default_name`> (created by `create`, once the configuration is known to be valid); a run
        of `total` steps on `tasks`."""
        if args.resume:
            check_resume(args, Path(args.resume), resumable)
            checkpoints = Path(args.resume) / "checkpoints"
            # stopped before its first checkpoint: it starts again, so that a requeued job cannot fail forever
            if not (checkpoints / "latest").exists() and not checkpoint_folders(checkpoints):
                run = cls(args, Path(args.resume), False, total, tasks, restarted=True)
                print(f"warning: {args.resume} stopped before its first checkpoint: it starts again from step 0",
                      file=sys.stderr)  # fmt: skip
                return run
            if (recorded := getattr(args, "save_buffer", None)) and not Path(recorded).is_dir():
                raise ConfigError(f"--resume {args.resume}: the run records its transitions in --save-buffer "
                                  f"{recorded}, which is not there: put it back, or resume from the folder "
                                  "the run was started in")  # fmt: skip
            if recorded:  # before anything is loaded or rewritten
                try:
                    check_recorder(Path(recorded), Path(args.resume))
                except DatasetError as error:
                    raise ConfigError(str(error)) from None
            return cls(args, Path(args.resume), True, total, tasks)
        run_dir = Path("runs") / (args.run_name or default_name)
        if run_dir.exists():
            raise ConfigError(f"{run_dir} exists already; pick another --run-name or pass --resume {run_dir}")
        return cls(args, run_dir, False, total, tasks)

    def create(self) -> None:
        """A new run's directory, which appears with its config.json in it (made aside, then
        renamed), so that a run stopped at any moment can be resumed; a restart's records start
        over."""
        if self.restarted:
            (self.dir / "metrics.jsonl").unlink(missing_ok=True)
            remove_partial_checkpoints(self.dir)
            self.record_config()
        elif not self.resumed:
            aside = self.dir.with_name(f".tmp_{self.dir.name}")
            shutil.rmtree(aside, ignore_errors=True)
            aside.mkdir(parents=True)
            self.record_config(aside)
            try:
                os.rename(aside, self.dir)
            except OSError:  # another process made it since `open` looked
                shutil.rmtree(aside, ignore_errors=True)
                raise ConfigError(f"{self.dir} exists already; pick another --run-name") from None
            self.lock = hold(self.dir)

    def record_config(self, folder: Path | None = None) -> None:
        """config.json: the arguments of the latest launch, so that a bare `--resume` (a requeued
        job) continues with the --total-steps it was last given. A resumed run rewrites it once
        its checkpoint has loaded: a refused resume changes nothing."""
        atomic_write_text((folder or self.dir) / "config.json", json.dumps(dataclasses.asdict(self.args), indent=2))

    def start(self, step: int) -> None:
        """The clocks of the progress line, wandb with --track, and (for a script with
        `--checkpoint-minutes`) the checkpoint schedule and the stop signal, until `close`."""
        if getattr(self.args, "track", False):
            import wandb  # installed: check_run_args

            self.wandb = wandb.init(project="brc", name=self.dir.name, config=dataclasses.asdict(self.args),
                                    resume="allow")  # fmt: skip
        self.start_time = self.last_log_time = time.time()
        self.start_step = step
        self.learning_since = None  # (time, step) of the first update of this process
        if hasattr(self.args, "checkpoint_minutes"):
            a = self.args
            self.schedule = CheckpointSchedule(a.checkpoint_interval, self.total, a.checkpoint_minutes)
            self.stop = StopSignal()  # SIGTERM (preemption) or Ctrl-C: finish the step, checkpoint, exit

    def started(self, step: int) -> "RunDir":
        """`with run.started(step):` the training loop, after `start`; on the way out, whatever
        happens, what `closing` was given (env workers, the video process) and `close`."""
        self.start(step)
        return self

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        for thing in reversed(self.to_close):
            thing.close()
        self.close()

    def closing(self, thing):
        """`thing` (None, or anything with `close()`), closed when the `with` block ends."""
        if thing is not None:
            self.to_close.append(thing)
        return thing

    def checkpoint_due(self, step: int) -> bool:
        """Every --checkpoint-interval steps, at the end, every --checkpoint-minutes, and on a stop
        signal."""
        return self.stop.received is not None or self.schedule.due(step)

    def checkpoint_written(self, step: int, unit: str = "step") -> None:
        """After a checkpoint: the schedule restarts; on a stop signal the run ends here (`Stopped`)."""
        self.schedule.written()
        if self.stop.received is not None:
            raise self.stop.stopped(step, self.dir, unit)

    def resume(
        self, state: PyTree, buffer: tuple, replicate, normalizer, rng, restore_replay=restore_ring
    ) -> tuple[PyTree, tuple, int, PRNGKeyArray, int]:
        """An online run's resume from its latest checkpoint: the state and replay
        (`restore_replay(path, buffer)`), placed on the devices by `replicate`; the return
        normaliser, whose running episodes end as truncated (the envs restart from a reset), and
        the NumPy stream, in place; the env step and action key; and the step until which the
        run only collects (without a saved replay, --learning-starts more steps). metrics.jsonl
        keeps the records up to that step."""
        state, host, replay_file = load_checkpoint(self.dir, state)
        if replay_file is not None:
            buffer = restore_replay(replay_file, buffer)
        state, buffer = replicate((state, buffer))
        normalizer.load_state_dict(host["normalizer"])
        normalizer.truncate_all()
        env_step = host["env_step"]
        rng.bit_generator.state = host["numpy_rng"]
        act_key = jax.random.wrap_key_data(jnp.asarray(host["act_key"], jnp.uint32))
        collect_until = env_step + (0 if replay_file is not None else self.args.learning_starts)
        replay = "restored" if replay_file is not None else "refilled"
        print(f"resumed {self.dir} at step {env_step}; replay buffer {replay}")
        drop_metrics_after(self.dir, env_step)
        self.record_config()
        return state, buffer, env_step, act_key, collect_until

    def checkpoint_online(self, env_step: int, state: PyTree, replay: dict | None, metrics: dict | None,
                          normalizer, rng: np.random.Generator, act_key: PRNGKeyArray) -> None:  # fmt: skip
        """An online run's checkpoint: the state, the replay arrays (or None), and on the host the
        env step, the normaliser, the NumPy stream and the action key. Never of a diverged learner;
        on a stop signal the run ends here (`Stopped`)."""
        if metrics is not None:
            check_finite(metrics, env_step, self.dir)
        host = {
            "env_step": env_step,
            "normalizer": normalizer.state_dict(),
            "numpy_rng": rng.bit_generator.state,
            "act_key": np.asarray(jax.random.key_data(act_key)).tolist(),
        }
        save_checkpoint(self.dir, env_step, state, host, replay, self.args.keep_checkpoints)
        self.checkpoint_written(env_step)

    def log_progress(self, step: int, returns: EpisodeReturns, metrics: dict | None, *fields: str,
                     label: str = "train return") -> None:  # fmt: skip
        """An online run's console line: the progress, `fields`, the mean over tasks of the recent
        training episodes' `returns`, and the update's metrics."""
        line = self.progress(step, *fields)
        done_returns = [np.mean(r) for r in returns.recent if r]
        if done_returns:
            line += f" | {label} {np.mean(done_returns):.1f}"
        if metrics is not None:
            host_metrics = check_finite(metrics, step, self.dir)
            line += " | " + " ".join(f"{k} {float(v):.3g}" for k, v in host_metrics.items())
        print(line, flush=True)

    def record(self, step: int, results: dict, metrics: dict | None, unit: str = "step", **fields) -> dict:
        """A metrics.jsonl record of an evaluation: the step, the per-task `results` and their mean
        score, `fields`, the rate since this process started, and the update's metrics."""
        record = {"step": step, **fields, "tasks": results,
                  "mean_score": float(np.mean([r["score"] for r in results.values()])),
                  "sps": (step - self.start_step) / (time.time() - self.start_time), "time": time.time()}  # fmt: skip
        if metrics is not None:
            record.update({k: float(v) for k, v in check_finite(metrics, step, self.dir, unit).items()})
        return record

    def log_evaluation(self, record: dict, summary: str, decimals: int = 1) -> None:
        """Append `record` to metrics.jsonl (and wandb, --track); one console line: `summary`, then
        the first tasks' return and success rate, each named."""
        self.write(record)
        named = lambda r: f"return {r['return']:.{decimals}f}" + (
            f", success {r['success']:.2f}" if r.get("success") is not None else "")  # fmt: skip
        tasks = "; ".join(f"{n}: {named(r)}" for n, r in list(record["tasks"].items())[:8])
        print(f"{summary} | {tasks}", flush=True)

    def learning(self, step: int, starts: int) -> bool:
        """Whether the run updates at `step` (from `starts` on); the first such step starts the
        ETA's clock."""
        if step >= starts and self.learning_since is None:
            self.learning_since = (time.time(), step)
        return step >= starts

    def progress(self, step: int, *fields: str) -> str:
        """The start of a progress line: steps/s over the last interval, `fields`, elapsed time, and
        an ETA at the rate since learning began (evaluations and checkpoints included)."""
        now = time.time()
        sps = self.args.log_interval / (now - self.last_log_time)
        self.last_log_time = now
        line = " | ".join([f"step {step}/{self.total}", f"{sps:.1f} steps/s", *fields])
        line += f" | {clock(now - self.start_time)} elapsed"
        if self.learning_since is not None and step > self.learning_since[1]:
            rate = (step - self.learning_since[1]) / (now - self.learning_since[0])
            line += f", ETA {clock((self.total - step) / rate)}"
        return line

    def write(self, record: dict) -> None:
        """Append `record` to metrics.jsonl, and with --track log it to wandb: its scalars, each
        task's results as `<task>/<metric>`, and its videos."""
        append_line(self.dir / "metrics.jsonl", json.dumps(record), self.dir)
        if self.wandb is not None:
            import wandb

            self.wandb.log({k: v for k, v in record.items() if k not in ("tasks", "videos")} | {
                f"{name}/{m}": v for name, r in record["tasks"].items() for m, v in r.items() if v is not None
            } | {
                f"video/{name}": wandb.Video(str(self.dir / "videos" / file), format="mp4")
                for name, file in record.get("videos", {}).items()
            }, step=record["step"])  # fmt: skip

    def close(self) -> None:
        if hasattr(self, "stop"):
            self.stop.restore()
        if self.wandb is not None:
            self.wandb.finish()
