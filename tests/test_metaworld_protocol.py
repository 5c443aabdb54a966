"""benchmarks/metaworld_protocol.py: the checks behind the default MetaWorld layouts."""

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "metaworld_protocol.py"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, check=False)


def test_fractions_counts_the_evaluations_strictly_between_0_and_1(tmp_path):
    # a stand-in for the published arrays (seeds, points): 3 of 8 and 0 of 4 strictly between
    folder = tmp_path / "metaworld" / "BRC_multitask"
    folder.mkdir(parents=True)
    np.save(folder / "reach-v2-goal-observable.npy", np.array([[0.0, 0.1, 1.0, 0.5], [1.0, 0.0, 0.9, 1.0]]))
    np.save(folder / "push-v2-goal-observable.npy", np.array([[0.0, 1.0], [1.0, 0.0]]))
    out = run("fractions", "--reference", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "| BRC_multitask | 2 | 12 | 3 (25.0%) |" in out.stdout
    missing = run("fractions", "--reference", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_the_installed_metaworld_repeats_a_frozen_layouts_episode_exactly():
    """The premise of docs/suites.md's argument: on one frozen layout, the expert's episodes after
    `reset(seed=...)` are the same episode (checked here on two tasks of metaworld 3); with a
    new layout per episode they differ, and the check says so."""
    out = run("determinism", "--tasks", "reach,push", "--episodes", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reach: expert success 2/2, largest difference from episode 1 0\n" in out.stdout
    assert "metaworld v3, frozen layouts: 0 task(s) whose episodes differ\n" in out.stdout
    redrawn = run("determinism", "--tasks", "reach,push", "--episodes", "2", "--layouts", "per-episode")
    assert redrawn.returncode == 1, redrawn.stdout + redrawn.stderr
    assert "per-episode layouts: 2 task(s) whose episodes differ: reach, push" in redrawn.stdout
    unknown = run("determinism", "--tasks", "reach,reech")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown task(s) reech")
