"""Learning side by side with the authors' code: same configuration, same seeds, one table.

Runs sac_brc.py and the authors' implementation (naumix/BiggerRegularizedCategorical, driven
by benchmarks/authors_driver.py in its own virtual environment; set-up: docs/side-by-side.md)
on identical configurations and seeds, then prints, per configuration, per seed and as the mean
over seeds with a 95% bootstrap CI: the deterministic evaluation return (10 episodes) at the
common evaluation steps and the online return of the last 10 training episodes, the
difference ours - authors' with its CI, and env steps/s while training from runs taken alone
(`--timing`, which also times the update call alone: ours and theirs in turn, three times, each 3
rounds of `--update-calls` calls after warm-up, on random transitions of the configuration's
sizes); and draws both learning curves into `<out>/side_by_side.png`.

    python benchmarks/side_by_side.py --authors-dir ~/BiggerRegularizedCategorical \\
        --authors-python ~/brc-authors-venv/bin/python --configs cartpole --seeds 0 1 2 --jobs 2
    python benchmarks/side_by_side.py --configs cartpole --timing      # steps/s and update calls, each alone
    python benchmarks/side_by_side.py --report                         # table and PNG only

Finished runs are kept and skipped, so the command can be repeated to add seeds; a run left
unfinished (interrupted) is started again from scratch.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plot import bootstrap_ci  # noqa: E402

# The authors' train.py fixes the batch at 256 single-task and 1024 multi-task; UTD 2,
# replay 1e6, 5,000 random steps are both codes' defaults.
CONFIGS = {
    "cartpole": {"authors_env": "cartpole-swingup", "tasks": ["cartpole-swingup"], "batch_size": 256,
                 "total_steps": 20_000, "learning_starts": 5_000, "eval_interval": 5_000},
    # TEST_MULTI_VARYING in their jaxrl/env_names.py
    "two-task": {"authors_env": "TEST_MULTI_VARYING", "tasks": ["cheetah-run", "cartpole-swingup"],
                 "batch_size": 1024, "total_steps": 20_000, "learning_starts": 5_000, "eval_interval": 5_000},
}  # fmt: skip
IMPLEMENTATIONS = ("ours", "authors")
CONFIDENCE, RESAMPLES = 0.95, 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-dir", type=Path, help="a clone of naumix/BiggerRegularizedCategorical")
    parser.add_argument("--authors-python", type=Path, help="the python of the authors' virtual environment")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "side-by-side", help="where runs and results go")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["cartpole"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=256, help="critic width, both implementations")
    parser.add_argument("--total-steps", type=int, help="env steps per task (default: the configuration's)")
    parser.add_argument("--learning-starts", type=int, help="random steps before training (default: the configuration's)")
    parser.add_argument("--eval-interval", type=int, help="env steps between evaluations (default: the configuration's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (at most the number of cores)")
    parser.add_argument("--timing", action="store_true",
                        help="instead: one short run of each implementation alone, for env steps/s while training")  # fmt: skip
    parser.add_argument("--update-calls", type=int, default=20, help="--timing: update calls per timed round")
    parser.add_argument("--report", action="store_true", help="only print the table and draw the PNG from --out")
    parser.add_argument("--time-our-update", type=Path, help=argparse.SUPPRESS)  # a child of --timing: ours, into this file
    args = parser.parse_args()
    if args.time_our_update:
        return time_our_update(args)

    if not args.report:
        if args.authors_dir is None or args.authors_python is None:
            sys.exit("error: give --authors-dir (a clone of the authors' repository) and --authors-python "
                     "(its virtual environment's python): docs/side-by-side.md; or --report")  # fmt: skip
        if not (args.authors_dir / "jaxrl" / "agent" / "brc_learner.py").exists():
            sys.exit(f"error: --authors-dir {args.authors_dir}: no jaxrl/agent/brc_learner.py there; "
                     "clone https://github.com/naumix/BiggerRegularizedCategorical")  # fmt: skip
        if not os.access(args.authors_python, os.X_OK):
            sys.exit(f"error: --authors-python {args.authors_python} is not an executable python")
        jobs = [job for config in args.configs for job in plan(config, args)]
        run_all(jobs, 1 if args.timing else args.jobs)
        if args.timing:
            for config in args.configs:
                time_updates(config, args)
    print(report(args.out, args.configs))


# ---------------------------------------------------------------- running


def settings(config: str, args) -> dict:
    c = dict(CONFIGS[config])
    c["total_steps"] = args.total_steps or c["total_steps"]
    c["learning_starts"] = args.learning_starts if args.learning_starts is not None else c["learning_starts"]
    c["eval_interval"] = args.eval_interval or c["eval_interval"]
    c["eval_episodes"] = 10
    if args.timing:  # enough training steps for a steady rate between evaluations at both ends
        c["eval_interval"] = 1_000 if len(c["tasks"]) == 1 else 500  # divides learning_starts
        c["total_steps"] = c["learning_starts"] + c["eval_interval"]
        c["eval_episodes"] = 1
    return c


def plan(config: str, args) -> list[dict]:
    """One job per (implementation, seed): its command, where it writes, and its last eval step."""
    c, folder = settings(config, args), args.out / config
    jobs = []
    for seed in [0] if args.timing else args.seeds:
        name = "timing_{}" if args.timing else "{}_s" + str(seed)  # {} = the implementation
        ours = folder / "runs" / name.format("ours")
        jobs.append({"log": ours / "metrics.jsonl", "cwd": folder, "done_step": c["total_steps"], "clear": ours,
                     "command": [sys.executable, str(REPO / "sac_brc.py"), "--tasks", ",".join(c["tasks"]),
                                 "--width", str(args.width), "--batch-size", str(c["batch_size"]), "--utd", "2",
                                 "--total-steps", str(c["total_steps"]), "--learning-starts", str(c["learning_starts"]),
                                 "--eval-interval", str(c["eval_interval"]), "--eval-episodes", str(c["eval_episodes"]),
                                 "--checkpoint-interval", str(c["total_steps"]), "--seed", str(seed),
                                 "--run-name", name.format("ours")]})  # fmt: skip
        theirs = folder / f"{name.format('authors')}.jsonl"
        jobs.append({"log": theirs, "cwd": folder, "done_step": c["total_steps"], "clear": theirs,
                     "command": [str(args.authors_python), str(REPO / "benchmarks" / "authors_driver.py"),
                                 "--authors-dir", str(args.authors_dir), "--env-names", c["authors_env"],
                                 "--seed", str(seed), "--width-critic", str(args.width),
                                 "--max-steps", str(c["total_steps"]), "--start-training", str(c["learning_starts"]),
                                 "--eval-interval", str(c["eval_interval"]), "--eval-episodes", str(c["eval_episodes"]),
                                 "--out", str(theirs)]})  # fmt: skip
    return jobs


def last_eval_step(log: Path) -> int:
    if not log.exists():
        return -1
    steps = [r["step"] for r in map(json.loads, log.read_text().splitlines()) if r.get("kind", "eval") == "eval"]
    return max(steps, default=-1)


def run_all(jobs: list[dict], parallel: int) -> None:
    """Runs the unfinished jobs, `parallel` at a time; each one's output goes to `<log>.out`."""
    todo = [j for j in jobs if last_eval_step(j["log"]) < j["done_step"]]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs done already; running {len(todo)}, {parallel} at a time")
    running: list[tuple[dict, subprocess.Popen, float]] = []
    failed = []
    while todo or running:
        while todo and len(running) < parallel:
            job = todo.pop(0)
            if job["clear"].exists():  # an unfinished run of this benchmark: start it again
                print(f"restarting unfinished {job['clear']}")
                shutil.rmtree(job["clear"]) if job["clear"].is_dir() else job["clear"].unlink()
            job["cwd"].mkdir(parents=True, exist_ok=True)
            output = open(job["cwd"] / f"{job['clear'].name}.out", "w")
            running.append((job, subprocess.Popen(job["command"], cwd=job["cwd"], stdout=output, stderr=subprocess.STDOUT), time.time()))  # fmt: skip
            print(f"started {job['clear'].name} in {job['cwd']}", flush=True)
        time.sleep(5)
        for entry in list(running):
            job, process, start = entry
            if process.poll() is not None:
                running.remove(entry)
                ok = process.returncode == 0 and last_eval_step(job["log"]) >= job["done_step"]
                print(f"{'finished' if ok else 'FAILED'} {job['clear'].name} in {time.time() - start:.0f} s", flush=True)
                if not ok:
                    failed.append(job)
    if failed:
        logs = ", ".join(str(j["cwd"] / f"{j['clear'].name}.out") for j in failed)
        sys.exit(f"error: {len(failed)} run(s) failed; see {logs}")


def time_updates(config: str, args) -> None:
    """The update call alone, ours and theirs in turn (three times each, alone on the machine), into
    `<out>/<config>/update_timing.json`. Theirs first, so ours runs at the sizes theirs reports."""
    c, folder = settings(config, args), args.out / config
    folder.mkdir(parents=True, exist_ok=True)
    results = {"ours": [], "authors": []}
    for turn in range(3):
        theirs = folder / f"update_timing_authors_{turn}.jsonl"
        subprocess.run([str(args.authors_python), str(REPO / "benchmarks" / "authors_driver.py"), "--authors-dir",
                        str(args.authors_dir), "--env-names", c["authors_env"], "--width-critic", str(args.width),
                        "--time-update", str(args.update_calls), "--out", str(theirs)],
                       cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        record = json.loads(theirs.read_text().splitlines()[-1])
        results["authors"].append(record)
        ours = folder / f"update_timing_ours_{turn}.json"
        subprocess.run([sys.executable, __file__, "--time-our-update", str(ours), "--configs", config, "--width",
                        str(args.width), "--update-calls", str(args.update_calls)], check=True)  # fmt: skip
        results["ours"].append(json.loads(ours.read_text()))
        print(f"update call, turn {turn + 1}: ours {ms_range(results['ours'][-1]['update_ms'])} ms, "
              f"authors' {ms_range(record['update_ms'])} ms", flush=True)  # fmt: skip
    (folder / "update_timing.json").write_text(json.dumps(results, indent=1))


def time_our_update(args) -> None:
    """ms per call of sac_brc's jitted update (UTD updates, minibatches sampled inside) on
    random transitions, 3 rounds of --update-calls after warm-up, at the configuration's sizes."""
    import jax
    import jax.numpy as jnp

    from common.suites import resolve_tasks
    from sac_brc import Args, make_agent, replay_buffer_init

    c = CONFIGS[args.configs[0]]
    tasks = resolve_tasks("", tuple(c["tasks"]))
    num_tasks, batch = len(tasks), c["batch_size"]
    obs_dim, act_dim = max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)
    state, fns = make_agent(Args(width=args.width, batch_size=batch, utd=2), num_tasks, obs_dim, act_dim, batch,
                            jax.random.key(0))  # fmt: skip
    buffer = replay_buffer_init(num_tasks, 20_000, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        buffer = fns.insert(buffer, obs, rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
                            rng.normal(size=num_tasks).astype(np.float32), obs, np.zeros(num_tasks, bool))  # fmt: skip
    g = jnp.full(num_tasks, 50.0)
    for _ in range(5):  # compile, then warm
        state, metrics = fns.update(state, buffer, g, jax.random.key(1))
    jax.block_until_ready(metrics)
    update_ms = []
    for _ in range(3):
        tic = time.perf_counter()
        for _ in range(args.update_calls):
            state, metrics = fns.update(state, buffer, g, jax.random.key(1))
        jax.block_until_ready((state, metrics))
        update_ms.append((time.perf_counter() - tic) / args.update_calls * 1e3)
    args.time_our_update.write_text(json.dumps({"implementation": "ours", "batch_size": batch, "obs_dim": obs_dim,
                                                "act_dim": act_dim, "jax": jax.__version__, "update_ms": update_ms}))  # fmt: skip


def ms_range(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


# ---------------------------------------------------------------- reading


def read_ours(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: {t: v["return"] for t, v in r["tasks"].items()} for r in records}
    online = {r["step"]: r.get("train_return", {}) for r in records}
    starts = json.loads((run_dir / "config.json").read_text())["learning_starts"]
    training = [r for r in records if r["step"] >= starts]  # as theirs: evaluations from the first update on
    return {"eval": evals, "online": online, "sps": training_rate(training, lambda r: r["time"], lambda r: r["eval_seconds"])}


def read_authors(log: Path) -> dict:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    records = [r for r in lines if r["kind"] == "eval"]
    episodes = [r for r in lines if r["kind"] == "episode"]
    evals = {r["step"]: {t: v["return"] for t, v in r["tasks"].items()} for r in records}
    online = {}  # as ours: the mean of each task's last 10 episodes ended by that step
    for r in records:
        online[r["step"]] = {}
        for task in r["tasks"]:
            done = [e["return"] for e in episodes if e["task"] == task and e["step"] <= r["step"]][-10:]
            if done:
                online[r["step"]][task] = float(np.mean(done))
    return {"eval": evals, "online": online,
            "sps": training_rate(records, lambda r: r["train_seconds"], lambda r: 0.0)}  # their clock excludes evaluations


def training_rate(records: list[dict], clock, eval_seconds) -> float | None:
    """Env steps per second between the first and the last evaluation, evaluations excluded
    (the first evaluation comes right after the first update, so compilation is inside)."""
    if len(records) < 2:
        return None
    first, last = records[0], records[-1]
    seconds = clock(last) - clock(first) - sum(eval_seconds(r) for r in records[1:])
    return (last["step"] - first["step"]) / seconds


def load(out: Path, config: str) -> dict[str, dict[int, dict]]:
    folder = out / config
    found = {impl: {} for impl in IMPLEMENTATIONS}
    for run_dir in sorted((folder / "runs").glob("ours_s*")):
        if (run_dir / "metrics.jsonl").exists():
            found["ours"][int(run_dir.name.split("_s")[1])] = read_ours(run_dir)
    for log in sorted(folder.glob("authors_s*.jsonl")):
        found["authors"][int(log.stem.split("_s")[1])] = read_authors(log)
    timing = {"ours": folder / "runs" / "timing_ours", "authors": folder / "timing_authors.jsonl"}
    rates = {}
    if (timing["ours"] / "metrics.jsonl").exists():
        rates["ours"] = read_ours(timing["ours"])["sps"]
    if timing["authors"].exists():
        rates["authors"] = read_authors(timing["authors"])["sps"]
    return found, rates


# ---------------------------------------------------------------- the table


def ci_text(values: np.ndarray, rng) -> str:
    low, high = bootstrap_ci(values[:, None], CONFIDENCE, RESAMPLES, rng)
    return f"{values.mean():.0f} [{low[0]:.0f}, {high[0]:.0f}]"


def difference_text(ours: np.ndarray, theirs: np.ndarray, rng) -> str:
    """Mean difference with a percentile bootstrap CI, seeds resampled within each implementation."""
    a = ours[rng.integers(0, len(ours), (RESAMPLES, len(ours)))].mean(axis=1)
    b = theirs[rng.integers(0, len(theirs), (RESAMPLES, len(theirs)))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(a - b, [tail, 100 - tail])
    return f"{ours.mean() - theirs.mean():+.0f} [{low:+.0f}, {high:+.0f}]"


def report(out: Path, configs: list[str]) -> str:
    rng = np.random.default_rng(0)
    lines, curves = [], {}
    for config in configs:
        found, rates = load(out, config)
        if not all(found.values()):
            lines.append(f"\n{config}: no finished runs of both implementations under {out / config} yet")
            if rates:
                lines.append(f"{config}: env steps/s while training (--timing, alone): "
                             + ", ".join(f"{impl} {rate:.1f}" for impl, rate in rates.items() if rate))  # fmt: skip
            continue
        # the seeds both implementations ran, at the evaluation steps both reached; a seed that
        # is behind the furthest one (still running) is left out rather than cutting the table
        reached = {s: set(found["ours"][s]["eval"]) & set(found["authors"][s]["eval"])
                   for s in set(found["ours"]) & set(found["authors"])}  # fmt: skip
        furthest = max(reached.values(), key=lambda steps: max(steps, default=-1), default=set())
        seeds = sorted(s for s, steps in reached.items() if steps >= furthest and steps)
        steps = sorted(furthest)
        if not seeds or not steps:
            lines.append(f"\n{config}: no seed or evaluation step common to both implementations yet")
            continue
        behind = sorted((set(found["ours"]) | set(found["authors"])) - set(seeds))
        tasks = list(found["ours"][seeds[0]]["eval"][steps[0]])
        views = [(t, [t]) for t in tasks] + ([("mean over tasks", tasks)] if len(tasks) > 1 else [])
        final = steps[-1]

        def values(impl, kind, step, which):
            return np.array([np.mean([found[impl][s][kind][step][t] for t in which]) for s in seeds])

        lines.append(f"\n### {config}: {', '.join(tasks)}; seeds {', '.join(map(str, seeds))}\n")
        if behind:
            lines.append(f"Left out, not (yet) at step {steps[-1]:,} in both: seeds {', '.join(map(str, behind))}.\n")
        lines.append("Deterministic evaluation return (10 episodes), mean over seeds [95% bootstrap CI]; online "
                     f"return: mean of the last 10 training episodes at step {final:,}.\n")  # fmt: skip
        head = "| task | implementation | " + " | ".join(f"eval @ {s // 1000}k" for s in steps)
        lines.append(head + " | online return | env steps/s (alone) |")
        lines.append("|" + "---|" * (len(steps) + 4))
        for label, which in views:
            for impl in IMPLEMENTATIONS:
                cells = [ci_text(values(impl, "eval", s, which), rng) for s in steps]
                online = ci_text(values(impl, "online", final, which), rng)
                rate = f"{rates[impl]:.1f}" if impl in rates and label == views[0][0] else ""
                lines.append(f"| {label} | {impl} | " + " | ".join(cells) + f" | {online} | {rate} |")
            diff = [difference_text(values("ours", "eval", s, which), values("authors", "eval", s, which), rng) for s in steps]
            online = difference_text(values("ours", "online", final, which), values("authors", "online", final, which), rng)
            lines.append(f"| {label} | ours - authors' | " + " | ".join(diff) + f" | {online} | |")
        lines.append("\nPer seed (eval return at each step; online return):\n")
        lines.append("| seed | implementation | " + " | ".join(f"{s // 1000}k" for s in steps) + " | online |")
        lines.append("|" + "---|" * (len(steps) + 3))
        for seed in seeds:
            for impl in IMPLEMENTATIONS:
                r = found[impl][seed]
                cells = [f"{np.mean([r['eval'][s][t] for t in tasks]):.0f}" for s in steps]
                online = np.mean([r["online"][final][t] for t in tasks])
                lines.append(f"| {seed} | {impl} | " + " | ".join(cells) + f" | {online:.0f} |")
        curves[config] = (found, seeds, steps, views)
    for config in configs:
        timing = out / config / "update_timing.json"
        if timing.exists():
            t = json.loads(timing.read_text())
            ours = [ms for r in t["ours"] for ms in r["update_ms"]]
            theirs = [ms for r in t["authors"] for ms in r["update_ms"]]
            sample = [ms for r in t["authors"] for ms in r["sample_ms"]]
            lines.append(f"\n{config}: update call alone (UTD 2, batch {t['ours'][0]['batch_size']}), ms per call over "
                         f"{len(ours)} rounds, median [range]: ours {np.median(ours):.1f} [{ms_range(ours)}] (sampling "
                         f"inside); authors' {np.median(theirs):.1f} [{ms_range(theirs)}] with the batch handed from "
                         f"the host, plus {np.median(sample):.1f} to sample and normalise it")  # fmt: skip
    if curves:
        path = draw(out, curves, rng)
        lines.append(f"\nlearning curves: {path}")
    return "\n".join(lines)


def draw(out: Path, curves: dict, rng) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(config, label, which) for config, (_, _, _, views) in curves.items() for label, which in views]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.5 * len(panels), 6.5), squeeze=False)
    for col, (config, label, which) in enumerate(panels):
        found, seeds, steps, _ = curves[config]
        for row, kind in enumerate(("eval", "online")):
            ax = axes[row, col]
            for impl, color in zip(IMPLEMENTATIONS, ("tab:blue", "tab:orange")):
                points = [s for s in steps if all(all(t in found[impl][seed][kind][s] for t in which) for seed in seeds)]
                samples = np.array([[np.mean([found[impl][seed][kind][s][t] for t in which]) for s in points] for seed in seeds])
                if not points:
                    continue
                low, high = bootstrap_ci(samples, CONFIDENCE, RESAMPLES, rng)
                ax.plot(points, samples.mean(axis=0), color=color, marker="o", label=f"{impl} ({len(seeds)} seeds)")
                ax.fill_between(points, low, high, color=color, alpha=0.2)
            ax.set_title(f"{config}: {label}" if row == 0 else "")
            ax.set_xlabel("env steps per task")
            ax.set_ylabel("evaluation return" if kind == "eval" else "online return (last 10 episodes)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "side_by_side.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
