"""Checkpoints after a fault (common/run.py): the newest --keep-checkpoints kept, each with a
manifest written last; --resume verifies it and passes over a damaged checkpoint for the one
before with one warning line; a checkpoint, a metrics record or a dataset chunk that cannot be
written (a full disk) ends the run with one line and exit 2, leaving what was written before."""

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from common import run as harness
from common.run import ConfigError, WriteError, append_line, load_checkpoint, save_checkpoint
from conftest import REPO, run_script

STATE = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
REPLAY = {"obs": np.arange(12.0).reshape(2, 6), "position": np.array([1, 2]), "size": np.array([3, 3])}


def write(run_dir: Path, *steps: int, keep: int = 2) -> None:
    for step in steps:
        save_checkpoint(run_dir, step, jax_tree(step), {"env_step": step}, REPLAY, keep)


def jax_tree(step: int) -> dict:
    return {k: v + step for k, v in STATE.items()}


def test_the_newest_checkpoints_are_kept_each_with_a_manifest_of_sizes_and_crc32(tmp_path):
    write(tmp_path, 100, 200, 300)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000000200", "step_000000300"]
    assert (root / "latest").read_text() == "step_000000300"
    manifest = json.loads((root / "step_000000300" / "manifest.json").read_text())
    assert manifest["step"] == 300 and set(manifest["files"]) == {"state.eqx", "replay.npz", "host.json"}
    for name, entry in manifest["files"].items():
        data = (root / "step_000000300" / name).read_bytes()
        assert entry == {"bytes": len(data), "crc32": zlib.crc32(data)}  # by hand, the whole file at once
    write(tmp_path, 400, keep=1)
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000000400"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "state.eqx truncated": ("state.eqx", truncate, "state.eqx has"),
    "replay.npz truncated": ("replay.npz", truncate, "replay.npz has"),
    "host.json missing": ("host.json", Path.unlink, "host.json missing"),
    "state.eqx one byte changed": ("state.eqx", flip_a_byte, "state.eqx fails its CRC-32 check"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before_with_one_warning(tmp_path, capsys, case):
    name, hurt, said = DAMAGE[case]
    write(tmp_path, 100, 200)
    root = tmp_path / "checkpoints"
    hurt(root / "step_000000200" / name)
    state, host, replay = load_checkpoint(tmp_path, STATE)
    assert host == {"env_step": 100} and replay == root / "step_000000100" / "replay.npz"
    np.testing.assert_array_equal(np.asarray(state["b"]), np.asarray(STATE["b"]) + 100)
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"warning: checkpoint {root / 'step_000000200'} is damaged ({said}")
    assert warning.endswith("resuming from step_000000100 instead: steps 101-200 are lost and will be run again")
    # never chosen again; the next checkpoint written starts from the intact one
    assert (root / "latest").read_text() == "step_000000100" and (root / "damaged_step_000000200").is_dir()


@pytest.mark.parametrize("latest", ["", "\x00" * 14, "step_000000300", None])
def test_a_latest_that_names_no_checkpoint_resumes_from_the_newest_intact_one(tmp_path, capsys, latest):
    """`latest` left empty or zero-filled by a machine that died while replacing it (a file
    system without ext4's rename safeguard), or naming a checkpoint that never reached the disk:
    the newest checkpoint that verifies is used, with a warning, and `latest` is written again."""
    write(tmp_path, 100, 200)
    root = tmp_path / "checkpoints"
    (root / "latest").write_text(latest) if latest is not None else (root / "latest").unlink()  # None: died before it
    state, host, _ = load_checkpoint(tmp_path, STATE)
    assert host == {"env_step": 200} and (root / "latest").read_text() == "step_000000200"
    np.testing.assert_array_equal(np.asarray(state["b"]), np.asarray(STATE["b"]) + 200)
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert "resuming from" in warning and ("step_000000300 is damaged (not there)" in warning) == (latest == "step_000000300")


def test_resume_removes_a_checkpoint_left_half_written(tmp_path):
    """A run killed while writing step 300 leaves checkpoints/.tmp_step_000000300, a full-size
    copy of the state and replay that nothing would ever remove."""
    write(tmp_path, 100, 200)
    half = tmp_path / "checkpoints" / ".tmp_step_000000300"
    half.mkdir()
    (half / "state.eqx").write_bytes(b"half")
    _, host, _ = load_checkpoint(tmp_path, STATE)
    assert host == {"env_step": 200} and not half.exists()


@dataclasses.dataclass
class Flags:
    resume: str | None = None
    run_name: str | None = "x"


def test_a_new_run_directory_appears_with_its_config_json(tmp_path, monkeypatch):
    """A run stopped at any moment of its start leaves either no run directory (it may simply
    be run again) or one with its config.json (it may be resumed), never a directory that can be
    neither; the aside folder of a creation that died is replaced."""
    monkeypatch.chdir(tmp_path)
    real_rename = os.rename

    def die(*_):
        raise KeyboardInterrupt  # the signal lands between the aside folder and the rename

    monkeypatch.setattr(harness.os, "rename", die)
    with pytest.raises(KeyboardInterrupt):
        harness.RunDir.open(Flags(), "x", set(), 10).create()
    assert not (tmp_path / "runs" / "x").exists()
    monkeypatch.setattr(harness.os, "rename", real_rename)
    harness.RunDir.open(Flags(), "x", set(), 10).create()
    assert json.loads((tmp_path / "runs" / "x" / "config.json").read_text()) == {"resume": None, "run_name": "x"}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["x"]


def test_a_run_directory_is_held_by_one_process_at_a_time(tmp_path):
    """A second process on a run that one still runs (a --resume by hand, a requeued job that
    overlaps) is refused in one line naming the holder; the lock goes when the holder ends."""
    assert harness.hold(tmp_path) == harness.hold(tmp_path)  # this process may take it again
    other = f"import sys; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path; from common.run import hold; hold(Path({str(tmp_path)!r}))"
    out = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=False)
    assert f"ConfigError: {tmp_path} is in use by another process (PID {os.getpid()})" in out.stderr
    os.close(harness._HELD.pop(tmp_path.resolve()))  # as when this process ends
    out = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_only_checkpoint_is_refused_in_one_line(tmp_path, case):
    name, hurt, said = DAMAGE[case]
    write(tmp_path, 100)
    hurt(tmp_path / "checkpoints" / "step_000000100" / name)
    with pytest.raises(ConfigError, match=f"no intact checkpoint in .*step_000000100: {said}") as error:
        load_checkpoint(tmp_path, STATE)
    assert "\n" not in str(error.value) and "configuration" not in str(error.value)


def test_an_intact_checkpoint_of_another_configuration_is_a_configuration_error(tmp_path):
    write(tmp_path, 100)
    with pytest.raises(ConfigError, match="does not match this configuration"):
        load_checkpoint(tmp_path, {"w": jnp.zeros((3, 3)), "b": jnp.ones(3)})


def full_disk_after(limit: int):
    """A writer that writes `limit` bytes of what it is given, then fails as a full disk does."""

    def savez(file, **arrays):
        Path(file).write_bytes(b"PK\x03\x04"[:limit])
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    return savez


def test_a_checkpoint_that_meets_a_full_disk_is_one_line_and_leaves_the_last_good_one(tmp_path, monkeypatch):
    write(tmp_path, 100)
    monkeypatch.setattr(harness.np, "savez", full_disk_after(3))
    with pytest.raises(WriteError) as error:
        write(tmp_path, 200)
    message = str(error.value)
    assert "\n" not in message and "No space left on device" in message and "step_000000200" in message
    assert f"the last good checkpoint: {tmp_path / 'checkpoints' / 'step_000000100'}" in message
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000000100"]  # no temporary folder
    assert load_checkpoint(tmp_path, STATE)[1] == {"env_step": 100}


def test_a_metrics_record_that_meets_a_full_disk_is_cut_back_and_one_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"step": 1}', tmp_path)
    real_write = os.write
    monkeypatch.setattr(harness.os, "write", lambda fd, data: real_write(fd, data[:5]))  # the disk fills midway
    with pytest.raises(WriteError, match="cannot write .*metrics.jsonl: No space left on device"):
        append_line(path, '{"step": 2, "tasks": {}}', tmp_path)
    assert path.read_text() == '{"step": 1}\n'  # no half record


@pytest.mark.parametrize("tail", ['{"step": 30, "tas', "\x00" * 40], ids=["cut short", "zero-filled"])
def test_resume_drops_a_record_torn_when_the_machine_died(tmp_path, capsys, tail):
    """A process killed mid-write (or a node that died before its page cache reached the disk)
    can leave half a line or NUL bytes at the end of metrics.jsonl: resume keeps the whole
    records up to its checkpoint and names the lines it drops, instead of a JSON traceback."""
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "tasks": {}}) + "\n" for s in (10, 20, 30)) + tail)
    harness.drop_metrics_after(tmp_path, 20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]
    assert "metrics.jsonl: dropped line(s) 4, not whole records" in capsys.readouterr().err


FULL_DISK_AT_SECOND_REPLAY = """
import errno, runpy, sys
import numpy as np
real, calls = np.savez, []
def savez(file, **arrays):
    calls.append(file)
    if len(calls) == 2:  # the second checkpoint's replay: the disk fills midway
        open(file, "wb").write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))
    return real(file, **arrays)
np.savez = savez
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--batch-size", "32", "--tasks",
        "cartpole-swingup", "--learning-starts", "50", "--eval-interval", "100000", "--eval-episodes", "1",
        "--log-interval", "50", "--checkpoint-interval", "100"]  # fmt: skip


def steps_in(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """A tiny sac_brc.py run with checkpoints at steps 100 and 200 (evaluated at 200)."""
    cwd = tmp_path_factory.mktemp("faults")
    out = run_script("sac_brc.py", *TINY, "--total-steps", "200", "--run-name", "base", cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return cwd / "runs" / "base"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["state.eqx truncated", "replay.npz truncated", "host.json missing"])
def test_resume_after_a_damaged_checkpoint_runs_to_the_end_with_each_step_once(two_checkpoints, tmp_path, case):
    name, hurt, said = DAMAGE[case]
    run_dir = tmp_path / "runs" / "base"
    shutil.copytree(two_checkpoints, run_dir)
    hurt(run_dir / "checkpoints" / "step_000000200" / name)
    out = run_script("sac_brc.py", "--resume", str(run_dir), "--total-steps", "300", "--eval-interval", "100",
                     cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (warning,) = [line for line in out.stderr.splitlines() if line.startswith("warning: checkpoint")]
    assert said in warning and "steps 101-200 are lost" in warning
    assert "at step 100; replay buffer restored" in out.stdout
    assert steps_in(run_dir) == [200, 300]  # the step-200 record of the first run was dropped, then re-run
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000000300"


@pytest.mark.slow
def test_a_run_whose_disk_fills_while_checkpointing_ends_in_one_line_and_resumes(tmp_path):
    wrapper = tmp_path / "full_disk.py"
    wrapper.write_text(FULL_DISK_AT_SECOND_REPLAY)
    out = run_script(str(wrapper), str(REPO / "sac_brc.py"), *TINY, "--total-steps", "300", "--run-name", "full",
                     cwd=tmp_path)  # fmt: skip
    run_dir = tmp_path / "runs" / "full"
    assert out.returncode == 2, out.stderr[-3000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write {Path('runs/full/checkpoints/step_000000200')}: No space left")
    assert "the last good checkpoint: runs/full/checkpoints/step_000000100" in line and "--resume runs/full" in line
    root = run_dir / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000000100"]
    resumed = run_script("sac_brc.py", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 100; replay buffer restored" in resumed.stdout
    assert (root / "latest").read_text() == "step_000000300"
