"""benchmarks/side_by_side.py: the table from synthetic logs of both implementations, and its
refusals. The runs themselves need the authors' stack (docs/side-by-side.md), not CI."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import side_by_side  # noqa: E402

STEPS = (5000, 10000)
TASKS = ("cheetah-run", "cartpole-swingup")


def eval_return(impl, seed, step, task):
    return {"ours": 100.0, "authors": 40.0}[impl] + 10 * seed + step / 1000 + (5 if task == TASKS[1] else 0)


def write_ours(folder: Path, seed: int, tasks=TASKS, steps=STEPS):
    run = folder / "runs" / f"ours_s{seed}"
    run.mkdir(parents=True)
    records = [{"step": s, "tasks": {t: {"return": eval_return("ours", seed, s, t)} for t in tasks},
                "train_return": {t: 7.0 + seed for t in tasks}, "time": 100.0 + s / 10, "eval_seconds": 20.0}
               for s in steps]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "config.json").write_text(json.dumps({"learning_starts": steps[0]}))


def write_authors(folder: Path, seed: int, tasks=TASKS, steps=STEPS):
    lines = []
    for episode in range(12):  # one episode per 1000 steps: the last 10 before 10k are 0..9 -> 2..11
        for t in tasks:
            lines.append({"kind": "episode", "step": 1000 * (episode + 1) - 1, "task": t, "return": float(episode)})
    for s in steps:
        lines.append({"kind": "eval", "step": s, "eval_seconds": 5.0, "train_seconds": s / 20,
                      "tasks": {t: {"return": eval_return("authors", seed, s, t)} for t in tasks}})  # fmt: skip
    lines.sort(key=lambda r: r["step"])
    (folder / f"authors_s{seed}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_table_means_differences_online_returns_and_rates(tmp_path):
    folder = tmp_path / "two-task"
    for seed in (0, 1, 2):
        write_ours(folder, seed)
        write_authors(folder, seed)
    write_authors(folder, 3)  # a seed only one implementation has is left out
    text = side_by_side.report(tmp_path, ["two-task"])
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in text.splitlines() if line.startswith("| ") and "---" not in line}  # fmt: skip
    # means over seeds 0..2: ours 100 + 10 + step/1000 (+5 on cartpole), authors 40 + 10 + ...
    assert rows[("cheetah-run", "ours")][0].startswith("115 [")
    assert rows[("cheetah-run", "authors")][1].startswith("60 [")
    assert rows[("cartpole-swingup", "ours")][1].startswith("125 [")
    assert rows[("mean over tasks", "ours - authors'")][0].startswith("+60 [")
    # online: ours 7 + seed -> 8; authors: episodes ended by 10k are 0..9, the last 10 average 4.5
    assert rows[("cheetah-run", "ours")][2].startswith("8 [")
    assert rows[("cheetah-run", "authors")][2].startswith("4 [") or rows[("cheetah-run", "authors")][2].startswith("5 [")
    # per seed rows
    assert rows[("2", "authors")][:2] == [f"{np.mean([eval_return('authors', 2, s, t) for t in TASKS]):.0f}" for s in STEPS]
    assert "seeds 0, 1, 2" in text and (tmp_path / "side_by_side.png").exists()
    # env steps/s: ours 5000 steps in 500 s of clock less 20 s of evaluation; theirs s / 20 s of training
    assert side_by_side.read_ours(folder / "runs" / "ours_s0")["sps"] == pytest.approx(5000 / 480)
    assert side_by_side.read_authors(folder / "authors_s0.jsonl")["sps"] == pytest.approx(20.0)


def test_training_rate_excludes_evaluations():
    records = [{"step": 5000, "time": 0.0, "eval_seconds": 30.0},
               {"step": 6000, "time": 130.0, "eval_seconds": 30.0},
               {"step": 7000, "time": 230.0, "eval_seconds": 0.0}]  # fmt: skip
    # 2000 steps in 230 s of which 30 s evaluating after the first record
    assert side_by_side.training_rate(records, lambda r: r["time"], lambda r: r["eval_seconds"]) == pytest.approx(10.0)
    assert side_by_side.training_rate(records[:1], lambda r: r["time"], lambda r: r["eval_seconds"]) is None


def test_only_common_steps_and_seeds(tmp_path):
    folder = tmp_path / "cartpole"
    write_ours(folder, 0, tasks=TASKS[1:], steps=(5000, 10000, 15000))  # ours ran further
    write_authors(folder, 0, tasks=TASKS[1:])
    write_ours(folder, 1, tasks=TASKS[1:], steps=(5000,))  # seed 1 still running
    write_authors(folder, 1, tasks=TASKS[1:], steps=(5000,))
    text = side_by_side.report(tmp_path, ["cartpole"])
    assert "eval @ 10k" in text and "15k" not in text
    assert "seeds 0\n" in text and "Left out, not (yet) at step 10,000 in both: seeds 1." in text


def test_missing_runs_and_bad_paths_say_what_to_do(tmp_path, run):
    assert "no finished runs of both implementations" in side_by_side.report(tmp_path, ["cartpole"])
    out = run("benchmarks/side_by_side.py", "--configs", "cartpole")
    assert out.returncode != 0 and "--authors-dir" in out.stderr and "Traceback" not in out.stderr
    out = run("benchmarks/side_by_side.py", "--authors-dir", str(tmp_path), "--authors-python", sys.executable)
    assert out.returncode != 0 and "no jaxrl/agent/brc_learner.py" in out.stderr and "Traceback" not in out.stderr
    out = run("benchmarks/authors_driver.py", "--authors-dir", str(tmp_path), "--out", str(tmp_path / "x.jsonl"))
    assert out.returncode != 0 and "no jaxrl/agent/brc_learner.py" in out.stderr and "Traceback" not in out.stderr
