"""Learning curves of BRC runs, scored and aggregated as in the paper (Appendix D, E.3).

Reads the `metrics.jsonl` that `sac_brc.py` writes into each run directory and draws, into
an output folder (`--out`; default `plots/` inside the first run directory or folder given):

- `tasks.png`: one panel per task, `--metric` (the normalised score by default; or the
  return, or the success rate) against env steps per task;
- `aggregate.png`, for two or more tasks: the mean over tasks, with a 95% bootstrap
  confidence interval over seeds when there are two or more (the paper's aggregate curves,
  e.g. Figure 9);
- `diagnostics.png`: if the runs logged `--diagnostics`, the spreads across tasks of TD loss,
  gradient norm and policy entropy (paper Figure 3) and the gradient-conflict rate (Figure 5);
- `table.md`, with `--table` and `--reference`: for every evaluation step that a run group and a
  published curve both have, the mean and bootstrap CI of each, per task and aggregated over
  the tasks, and whether the two intervals overlap.

Runs are grouped by configuration (their `config.json` without the seed and the fields that
only affect logging), so several seeds of one configuration become one curve with a
confidence band, and several configurations become several curves. `--reference DIR`
overlays the published curves stored as `<suite>/<variant>/<task>.npy` arrays of shape
(seeds, points), evaluated every `--reference-interval` steps.

    python plot.py runs/mw__w4096__s0 runs/mw__w4096__s1 --reference ~/BiggerRegularizedCategorical/results
    python plot.py runs/ --out plots/width --labels "width 1024" "width 4096"
    python plot.py runs/quickstart --metric return   # one run: its return, into runs/quickstart/plots/
    python plot.py runs/mw-easy__* --reference ~/BiggerRegularizedCategorical/results --table
"""

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import tyro
from jaxtyping import Float
from matplotlib.ticker import FuncFormatter

from common.suites import SH_TRAIN, TASKS, normalized_score, score_meaning


@dataclass
class Args:
    runs: tyro.conf.Positional[tuple[str, ...]]
    """run directories written by sac_brc.py (a folder holding run directories stands for all of them)"""
    metric: Literal["score", "return", "success"] = "score"
    """what to plot: score (the paper's normalised score, Appendix E.3: the success rate on MetaWorld and ShadowHand, return / 1000 on DMC), return (mean evaluation return) or success (success rate, for tasks that report one)"""
    out: str | None = None
    """output folder for the PNGs (created if missing; existing PNGs of the same name are replaced); default plots/ inside the first run directory or folder given"""
    labels: tuple[str, ...] = ()
    """one legend label per configuration group, in the order the groups first appear; default: the settings that differ"""
    reference: str | None = None
    """folder of published curves: results/ of a clone of github.com/naumix/BiggerRegularizedCategorical (<suite>/<variant>/<task>.npy, shape (seeds, points))"""
    reference_variants: tuple[str, ...] = ("BRC_multitask",)
    """which <variant> folders of --reference to overlay"""
    reference_interval: int = 25_000
    """env steps per task between two points of a reference curve (the first point is at this step); the published ShadowHand file's is 2k, always"""
    max_step: int | None = None
    """crop the x axis (and the reference curves) at this many env steps per task"""
    confidence: float = 0.95
    """confidence level of the bootstrap intervals"""
    bootstrap_samples: int = 10_000
    """bootstrap resamples of the seeds"""
    seed: int = 0
    """seed of the bootstrap resampling"""
    table: bool = False
    """also write table.md: ours against the published curves at every step both evaluated (needs --reference)"""


# config.json fields that do not change what is learned: runs differing only in these are seeds
# of one configuration. They include every flag a --resume may change but --overlap, so a seed
# resumed to train longer or with more env workers stays in its group.
NOT_CONFIGURATION = {"seed", "run_name", "resume", "track", "num_devices", "total_steps", "num_updates",
                     "eval_interval", "eval_episodes", "log_interval", "checkpoint_interval", "checkpoint_minutes",
                     "keep_checkpoints", "checkpoint_replay", "env_workers", "prefetch", "shadowhand_assets",
                     "dataset_info", "diagnostics", "diagnostics_batch_size", "capture_video", "video_tasks"}  # fmt: skip

# Metric stored in each suite folder of the published results: success rate or episode return.
REFERENCE_SUCCESS_SUITES = {"metaworld", "shadowhand"}


class PlotError(Exception):
    """A user error: printed as one line, exit code 2."""


# ---------------------------------------------------------------- aggregation


def bootstrap_ci(
    samples: Float[np.ndarray, "seeds points"],
    confidence: float,
    num_resamples: int,
    rng: np.random.Generator,
) -> tuple[Float[np.ndarray, " points"], Float[np.ndarray, " points"]]:
    """Percentile bootstrap interval of the mean over seeds (axis 0), for every point.

    Each resample draws `seeds` rows with replacement; the same rows are used at every point,
    so a resample is a whole learning curve. With one seed the interval is that seed's value.
    """
    num_seeds = samples.shape[0]
    rows = rng.integers(0, num_seeds, (num_resamples, num_seeds))
    means = samples[rows].mean(axis=1)  # (resamples, points)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return low, high


def aggregate(
    scores: Float[np.ndarray, "seeds tasks points"],
    confidence: float,
    num_resamples: int,
    rng: np.random.Generator,
) -> tuple[Float[np.ndarray, " points"], Float[np.ndarray, " points"], Float[np.ndarray, " points"]]:
    """Paper Appendix D: mean normalised score over tasks per seed, then the mean over seeds and
    its bootstrap confidence interval over seeds."""
    per_seed = scores.mean(axis=1)
    low, high = bootstrap_ci(per_seed, confidence, num_resamples, rng)
    return per_seed.mean(axis=0), low, high


# ---------------------------------------------------------------- runs


@dataclass
class Run:
    path: Path
    config: dict
    steps: np.ndarray  # (points,) env steps per task
    scores: dict[str, np.ndarray]  # task -> (points,) the --metric (the normalised score by default)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (points,), if logged


def task_score(name: str, result: dict) -> float:
    """The normalised score of one evaluation, from `common.suites.normalized_score` when the task
    is known (so runs and references share one definition), else the score the run stored."""
    if name in TASKS:
        success = math.nan if result.get("success") is None else result["success"]
        return normalized_score(TASKS[name], result["return"], success)
    return float(result["score"])


def task_value(name: str, result: dict, metric: str) -> float:
    """One evaluation's `metric` of a task: its normalised score, mean return or success rate."""
    if metric == "return":
        return float(result["return"])
    if metric == "success":
        if result.get("success") is None:
            raise PlotError(f"--metric success: {name} reports no success; plot --metric return or score")
        return float(result["success"])
    return task_score(name, result)


def metric_label(metric: str, tasks: list[str]) -> str:
    """The y-axis label: what the numbers are, for these tasks."""
    if metric != "score":
        return {"return": "evaluation return", "success": "success rate"}[metric]
    known = [TASKS[t] for t in tasks if t in TASKS]
    return f"normalised score ({score_meaning(known) if len(known) == len(tasks) else 'as the runs stored it'})"


def load_run(path: Path, metric: str = "score") -> Run:
    metrics_path, config_path = path / "metrics.jsonl", path / "config.json"
    if not metrics_path.exists() or not config_path.exists():
        raise PlotError(
            f"{path} has no metrics.jsonl and config.json; give run directories written by sac_brc.py"
        )
    lines = metrics_path.read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records += [json.loads(line)] if line.strip() else []
        except ValueError:
            if number < len(lines):
                raise PlotError(f"{metrics_path}: line {number} is not a JSON record; remove it") from None
            print(f"{metrics_path}: left out its last line, not a whole record (the run is writing it, "
                  "or was killed mid-write)")  # fmt: skip
    if not records:
        raise PlotError(f"{metrics_path} is empty: the run has not evaluated yet")
    by_step = {r["step"]: r for r in records}  # a resumed run may repeat a step: keep the last
    steps = np.array(sorted(by_step))
    tasks = list(by_step[steps[0]]["tasks"])
    scores = {t: np.array([task_value(t, by_step[s]["tasks"][t], metric) for s in steps]) for t in tasks}
    diagnostics = {}
    if all("diagnostics" in by_step[s] for s in steps):
        for name in ("td_loss", "grad_norm", "entropy"):
            spread = [by_step[s]["diagnostics"]["spread"][name] for s in steps]
            diagnostics[f"{name} spread"] = np.array(spread)
        conflict = [by_step[s]["diagnostics"]["conflict_rate"] for s in steps]
        if all(c is not None for c in conflict):
            diagnostics["gradient conflict rate"] = np.array(conflict, float)
    try:
        config = json.loads(config_path.read_text())
    except ValueError as error:
        raise PlotError(f"{config_path} cannot be read ({error})") from None
    return Run(path, config, steps, scores, diagnostics)


def find_runs(paths: tuple[str, ...]) -> list[Path]:
    """The run directories among `paths` and their sub-folders, each once."""
    if not paths:
        raise PlotError("give one or more run directories (e.g. runs/<name>), or runs/ for all of them")
    found = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise PlotError(f"{p} is not a directory; give run directories written by sac_brc.py")
        if (p / "metrics.jsonl").exists():
            found.append(p)
        else:
            children = sorted(c for c in p.iterdir() if (c / "metrics.jsonl").exists())
            if not children:
                raise PlotError(f"{p} holds no metrics.jsonl, nor do its sub-folders; is it a run directory?")
            found.extend(children)
    return list({p.resolve(): p for p in found}.values())  # a folder named twice is one run


@dataclass
class Group:
    label: str
    runs: list[Run]
    tasks: list[str]
    steps: np.ndarray  # the steps every run of the group has evaluated
    scores: np.ndarray  # (seeds, tasks, points)


def group_runs(runs: list[Run], labels: tuple[str, ...]) -> list[Group]:
    """Runs whose configs agree outside NOT_CONFIGURATION are seeds of one group."""
    keys: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.config.items() if k not in NOT_CONFIGURATION}, sort_keys=True)
        keys.setdefault(key, []).append(run)
    if labels and len(labels) != len(keys):
        raise PlotError(
            f"--labels gives {len(labels)} label(s) but the runs form {len(keys)} configuration group(s)"
        )
    configs = [json.loads(k) for k in keys]
    differing = sorted({k for c in configs for k in c if any(c.get(k) != o.get(k) for o in configs)})
    groups = []
    for i, members in enumerate(keys.values()):
        config = configs[i]
        if labels:
            label = labels[i]
        elif 0 < len(differing) <= 4:
            label = ", ".join(f"{k}={config.get(k)}" for k in differing)
        elif differing:  # e.g. runs of different scripts: a legend line per setting would fill the figure
            label = members[0].path.name
        else:
            label = (",".join(config["tasks"]) if config.get("tasks") else config.get("suite")
                     or (f"offline on {config['dataset']}" if config.get("dataset") else "run"))  # fmt: skip
        tasks = list(members[0].scores)
        for run in members[1:]:
            if list(run.scores) != tasks:
                raise PlotError(
                    f"{run.path} and {members[0].path} have the same configuration but other tasks"
                )
        seeds = [run.config.get("seed") for run in members]
        if len(set(seeds)) < len(seeds):  # a copy, or a rerun: not another sample of the seed distribution
            twice = [str(run.path) for run, seed in zip(members, seeds) if seeds.count(seed) > 1]
            raise PlotError(f"{', '.join(twice)} are one configuration with the same --seed: counting them as "
                            "seeds would narrow the confidence interval; plot them apart")  # fmt: skip
        steps = members[0].steps
        for run in members[1:]:
            steps = np.intersect1d(steps, run.steps)
        if len(steps) == 0:
            raise PlotError(f"the runs of group '{label}' ({', '.join(str(run.path) for run in members)}) share "
                            "no evaluation step: give runs evaluated at the same steps (--eval-interval)")  # fmt: skip
        scores = np.stack([
            np.stack([run.scores[t][np.searchsorted(run.steps, steps)] for t in tasks]) for run in members
        ])  # fmt: skip
        label += f" ({len(members)} seed{'s' * (len(members) > 1)})"
        groups.append(Group(label, members, tasks, steps, scores))
    return groups


# ---------------------------------------------------------------- published reference curves


# The published ShadowHand curves are one file per variant, shadowhand/<variant>/aggregate.npy,
# (seeds, points, 85 shapes) with the shapes in SH_TRAIN's order, a point every 2k env steps.
SH_REFERENCE_INTERVAL = 2_000


def is_shadowhand(task: str) -> bool:
    return task in TASKS and TASKS[task].domain == "shadowhand"


def reference_interval(task: str, args: Args) -> int:
    """Env steps per task between two points of the task's published curve."""
    return SH_REFERENCE_INTERVAL if is_shadowhand(task) else args.reference_interval


def reference_file(root: Path, variant: str, task: str) -> Path | None:
    """Our task name -> the published file: MetaWorld tasks are stored as `<task>-v2-goal-observable`,
    HumanoidBench ones with their gymnasium id `h1-*-v0` (our name with or without `-v0`), DMC as is,
    the ShadowHand training shapes as columns of one file."""
    if is_shadowhand(task):
        path = root / "shadowhand" / variant / "aggregate.npy"
        return path if TASKS[task].envpool_id in SH_TRAIN and path.exists() else None
    candidates = (task, f"{task}-v2-goal-observable", f"{task}-v0")
    for suite in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in candidates:
            if (suite / variant / f"{name}.npy").exists():
                return suite / variant / f"{name}.npy"
    return None


def load_reference(root: Path, variant: str, task: str) -> np.ndarray | None:
    """Published curve of one task, normalised like our runs: (seeds, points), or None if absent."""
    path = reference_file(root, variant, task)
    if path is None:
        return None
    values = np.load(path)
    if is_shadowhand(task):
        if values.ndim != 3 or values.shape[2] != len(SH_TRAIN):
            raise PlotError(f"{path} has shape {values.shape}; expected (seeds, points, {len(SH_TRAIN)} shapes)")
        values = values[:, :, SH_TRAIN.index(TASKS[task].envpool_id)]
    if values.ndim != 2:
        raise PlotError(f"{path} has shape {values.shape}; reference curves must be (seeds, points)")
    if task not in TASKS:
        return None  # no normalisation known for it
    is_success = path.parent.parent.name in REFERENCE_SUCCESS_SUITES
    task_spec = TASKS[task]
    # the stored metric goes in as success rate or as return; the other argument is unknown
    score = lambda v: normalized_score(task_spec, *((math.nan, v) if is_success else (v, math.nan)))
    return np.vectorize(score, otypes=[float])(values)


# ---------------------------------------------------------------- drawing


def steps_label(x: float, _pos=None) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


def draw_curve(ax, steps, samples: np.ndarray, args: Args, rng, **style):
    """Mean over seeds (rows), with its bootstrap confidence band if there are two or more."""
    (line,) = ax.plot(steps, samples.mean(axis=0), **style)
    if len(samples) > 1:
        low, high = bootstrap_ci(samples, args.confidence, args.bootstrap_samples, rng)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def aggregate_title(groups: list[Group], tasks: list[str], args: Args) -> str:
    """The aggregate plot's title: a confidence interval is claimed only where a group has two
    or more seeds."""
    what = {"score": "normalised score", "return": "return", "success": "success rate"}[args.metric]
    title = f"mean {what} over {len(tasks)} tasks"
    if any(len(g.runs) > 1 for g in groups):
        return title + f", {args.confidence:.0%} bootstrap CI over seeds"
    return title + " (one seed: no confidence interval)"


def crop(steps: np.ndarray, samples: np.ndarray, max_step: int | None):
    keep = steps <= max_step if max_step is not None else np.ones(len(steps), bool)
    return steps[keep], samples[:, keep]


def save_figure(fig, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)


def references(args: Args, tasks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """variant -> task -> normalised published curve, for the tasks that have one."""
    if args.reference is None:
        return {}
    root = Path(args.reference)
    if not root.is_dir():
        raise PlotError(f"--reference {root} is not a directory (expected <suite>/<variant>/<task>.npy)")
    found = {}
    for variant in args.reference_variants:
        if not any((suite / variant).is_dir() for suite in root.iterdir()):
            suites = [s for s in root.iterdir() if s.is_dir()]
            variants = sorted({v.name for s in suites for v in s.iterdir() if v.is_dir()})
            raise PlotError(
                f"--reference-variants {variant}: no such folder under {root}; found {', '.join(variants)}"
            )
        curves = {t: c for t in tasks if (c := load_reference(root, variant, t)) is not None}
        missing = [t for t in tasks if t not in curves]
        if missing:
            print(f"reference {variant}: no published curve for {', '.join(missing)}")
        found[variant] = curves
    return found


def step_unit(runs: list[Run]) -> str:
    """What the runs' `step` counts, for the x axis: env steps per task online, gradient updates
    for offline_brc_bc.py (whose config has --num-updates). Refuses a mix: one axis, one unit."""
    offline = {"num_updates" in run.config for run in runs}
    if len(offline) > 1:
        raise PlotError("offline_brc_bc.py runs count gradient updates and online runs env steps per task: "
                        "plot them apart")  # fmt: skip
    return "gradient updates" if offline == {True} else "env steps per task"


def plot(args: Args, groups: list[Group], published: dict[str, dict[str, np.ndarray]]) -> list[Path]:
    tasks = list(dict.fromkeys(t for g in groups for t in g.tasks))
    unit = step_unit([run for group in groups for run in group.runs])
    rng = np.random.default_rng(args.seed)
    out, label = Path(args.out), metric_label(args.metric, tasks)
    out.mkdir(parents=True, exist_ok=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ref_styles = [dict(color="black", linestyle="--"), dict(color="dimgray", linestyle=":")]
    ref_x = lambda task, n: reference_interval(task, args) * np.arange(1, n + 1)
    written = []

    # per task
    cols = min(len(tasks), 5)
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for k, group in enumerate(groups):
            if task in group.tasks:
                steps, samples = crop(group.steps, group.scores[:, group.tasks.index(task)], args.max_step)
                color = colors[k % len(colors)]
                draw_curve(ax, steps, samples, args, rng, color=color, label=group.label, marker=".")
        for (variant, curves), style in zip(published.items(), ref_styles):
            if task in curves:
                steps, samples = crop(ref_x(task, curves[task].shape[1]), curves[task], args.max_step)
                label = f"published {variant} ({len(samples)} seeds)"
                draw_curve(ax, steps, samples, args, rng, label=label, **style)
        ax.set_title(task, fontsize=10)
        ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(label)
    for ax in axes[-1]:
        ax.set_xlabel(unit)
    handles = {}
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(n, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 3),
               bbox_to_anchor=(0.5, 1.0), frameon=False)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, out / "tasks.png")
    written.append(out / "tasks.png")

    if len(tasks) == 1:  # the aggregate would repeat the task's own plot
        return written + diagnostics_figure(args, groups, out, colors, rng)

    # aggregate over tasks
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, group in enumerate(groups):
        mean, low, high = aggregate(group.scores, args.confidence, args.bootstrap_samples, rng)
        keep = group.steps <= args.max_step if args.max_step is not None else slice(None)
        color = colors[k % len(colors)]
        ax.plot(group.steps[keep], mean[keep], color=color, marker=".", label=group.label)
        if len(group.runs) > 1:
            ax.fill_between(group.steps[keep], low[keep], high[keep], color=color, alpha=0.2, linewidth=0)
    for (variant, curves), style in zip(published.items(), ref_styles):
        same_steps = len({reference_interval(t, args) for t in tasks}) == 1
        if curves and all(t in curves for t in tasks) and same_steps:
            seeds = min(c.shape[0] for c in curves.values())
            points = min(c.shape[1] for c in curves.values())
            stacked = np.stack([curves[t][:seeds, :points] for t in tasks], axis=1)  # (seeds, tasks, points)
            steps, samples = crop(ref_x(tasks[0], points), stacked.mean(axis=1), args.max_step)
            draw_curve(ax, steps, samples, args, rng, label=f"published {variant} ({seeds} seeds)", **style)
        elif curves:
            why = "not every task has a published curve" if same_steps else "the curves' steps differ"
            print(f"reference {variant}: {why}; no aggregate reference drawn")
    ax.set_title(aggregate_title(groups, tasks, args), fontsize=10)
    ax.set_xlabel(unit)
    ax.set_ylabel(label)
    ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "aggregate.png")
    written.append(out / "aggregate.png")
    return written + diagnostics_figure(args, groups, out, colors, rng)


def diagnostics_figure(args: Args, groups: list[Group], out: Path, colors: list, rng) -> list[Path]:
    """diagnostics.png (paper Figures 3 and 5), if every run of a group logged them."""
    written = []
    logged = [g for g in groups if all(r.diagnostics for r in g.runs)]
    if logged:
        names = list(dict.fromkeys(n for g in logged for n in g.runs[0].diagnostics))
        fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.2), squeeze=False)
        for ax, name in zip(axes.flat, names):
            for k, group in enumerate(groups):
                if group in logged and all(name in r.diagnostics for r in group.runs):
                    at = lambda r: np.searchsorted(r.steps, group.steps)
                    samples = np.stack([r.diagnostics[name][at(r)] for r in group.runs])
                    steps, samples = crop(group.steps, samples, args.max_step)
                    color = colors[k % len(colors)]
                    draw_curve(ax, steps, samples, args, rng, color=color, label=group.label, marker=".")
            ax.set_title(name + (" (std / |mean| over tasks)" if "spread" in name else ""), fontsize=9)
            ax.set_xlabel("env steps per task")
            ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, out / "diagnostics.png")
        written.append(out / "diagnostics.png")
    return written


# ---------------------------------------------------------------- comparison table


def mean_and_ci(samples: Float[np.ndarray, "seeds points"], args: Args, rng) -> list[tuple[float, float, float]]:
    """(mean, low, high) per point: the mean over seeds and its bootstrap interval."""
    low, high = bootstrap_ci(samples, args.confidence, args.bootstrap_samples, rng)
    return list(zip(samples.mean(axis=0), low, high))


def cell(value: tuple[float, float, float]) -> str:
    mean, low, high = value
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def overlap(ours: tuple[float, float, float], published: tuple[float, float, float]) -> str:
    return "yes" if ours[1] <= published[2] and published[1] <= ours[2] else "no"


def published_suite_size(root: Path, variant: str, task: str) -> tuple[str, int]:
    """The published curve's folder (`<suite>/<variant>`) and how many tasks that folder holds,
    so a table says when ours ran on a different suite (e.g. 4 MetaWorld tasks against MT50)."""
    path = reference_file(root, variant, task)
    if is_shadowhand(task):
        return f"shadowhand/{variant}", len(SH_TRAIN)
    return f"{path.parent.parent.name}/{variant}", len(list(path.parent.glob("*.npy")))


def reached_steps(group: Group, args: Args) -> np.ndarray:
    return group.steps if args.max_step is None else group.steps[group.steps <= args.max_step]


def comparison_rows(
    group: Group, curves: dict[str, np.ndarray], tasks: list[str], args: Args, rng
) -> tuple[list[int], dict[str, list[tuple]], dict[str, list[tuple]]]:
    """The steps that the group and every curve of `tasks` share (cropped at --max-step), and
    per task -> (mean, low, high) at those steps, for ours and for the published curves."""
    ours_at = lambda t: group.scores[:, group.tasks.index(t)]
    steps = reached_steps(group, args)
    for t in tasks:
        steps = np.intersect1d(steps, reference_interval(t, args) * np.arange(1, curves[t].shape[1] + 1))
    ours, published = {}, {}
    for t in tasks:
        ours[t] = mean_and_ci(ours_at(t)[:, np.searchsorted(group.steps, steps)], args, rng)
        published[t] = mean_and_ci(curves[t][:, steps // reference_interval(t, args) - 1], args, rng)
    return [int(s) for s in steps], ours, published


def comparison_table(groups: list[Group], published: dict[str, dict[str, np.ndarray]], args: Args) -> str:
    """Markdown: per group and published variant, an aggregate table (mean score over the tasks
    with a published curve, per seed, then its CI over seeds; the published seeds aggregated
    the same way) and a per-task table, at the evaluation steps both have."""
    rng = np.random.default_rng(args.seed)  # its own stream: the table does not depend on the figures
    level = f"{args.confidence:.0%}"
    lines = [
        "# Ours against the published curves",
        "",
        f"Normalised scores (paper Appendix E.3): mean over seeds [{level} bootstrap CI over seeds]. "
        "`overlap`: whether the two intervals overlap. Only the evaluation steps both have are compared.",
    ]
    for group in groups:
        for variant, curves in published.items():
            tasks = [t for t in group.tasks if t in curves]
            lines += ["", f"## {group.label} against published {variant}", ""]
            missing = [t for t in group.tasks if t not in curves]
            if missing:
                lines.append(f"No published curve for {', '.join(missing)}: left out.")
            if not tasks:
                continue
            seeds = min(curves[t].shape[0] for t in tasks)
            sources = sorted({published_suite_size(Path(args.reference), variant, t) for t in tasks})
            described = "; ".join(f"`{folder}` holds {n} tasks" for folder, n in sources)
            lines.append(
                f"Ours: {len(group.runs)} seed(s), trained on {len(group.tasks)} task(s) together. "
                f"Published: {seeds} seed(s); {described}."
            )
            steps, ours, theirs = comparison_rows(group, curves, tasks, args, rng)
            if not steps:
                lines.append(
                    f"No evaluation step in common: ours evaluated at {', '.join(map(steps_label, reached_steps(group, args)))}, "
                    f"the published curves every {steps_label(reference_interval(tasks[0], args))} steps."
                )
                continue
            # aggregate: per seed the mean over tasks, then the CI over seeds, as in the paper
            at_ours = np.searchsorted(group.steps, steps)
            ours_mean = np.stack([group.scores[:, group.tasks.index(t), at_ours] for t in tasks]).mean(axis=0)
            theirs_mean = np.stack([
                curves[t][:seeds, np.array(steps) // reference_interval(t, args) - 1] for t in tasks
            ]).mean(axis=0)  # fmt: skip
            aggregate_ours, aggregate_theirs = mean_and_ci(ours_mean, args, rng), mean_and_ci(theirs_mean, args, rng)
            lines += [
                "",
                f"Mean over the {len(tasks)} task(s) with a published curve:",
                "",
                "| env steps per task | ours | published | overlap |",
                "|---|---|---|---|",
            ]
            for k, step in enumerate(steps):
                a, b = aggregate_ours[k], aggregate_theirs[k]
                lines.append(f"| {steps_label(step)} | {cell(a)} | {cell(b)} | {overlap(a, b)} |")
            lines += ["", "Per task:", "", "| task | env steps per task | ours | published | overlap |", "|---|---|---|---|---|"]
            for t in tasks:
                for k, step in enumerate(steps):
                    a, b = ours[t][k], theirs[t][k]
                    lines.append(f"| {t} | {steps_label(step)} | {cell(a)} | {cell(b)} | {overlap(a, b)} |")
    return "\n".join(lines) + "\n"


def write_table(args: Args, groups: list[Group], published: dict[str, dict[str, np.ndarray]]) -> Path:
    out = Path(args.out) / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(comparison_table(groups, published, args))
    os.replace(tmp, out)
    return out


def main(args: Args) -> None:
    if not 0 < args.confidence < 1:
        raise PlotError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.bootstrap_samples <= 0 or args.reference_interval <= 0:
        raise PlotError("--bootstrap-samples and --reference-interval must be positive")
    if args.table and args.reference is None:
        raise PlotError("--table compares with the published curves: give --reference DIR too")
    if args.reference_variants != Args.reference_variants and args.reference is None:  # not silently unused
        raise PlotError("--reference-variants picks folders of --reference: give --reference DIR too")
    if args.metric != "score" and (args.reference or args.table):
        raise PlotError("the published curves are normalised scores: --reference and --table need --metric score")
    groups = group_runs([load_run(p, args.metric) for p in find_runs(args.runs)], args.labels)
    first = min(int(group.steps[0]) for group in groups)
    if args.max_step is not None and args.max_step < first:
        raise PlotError(f"--max-step {args.max_step} is before the first evaluation (step {first}): nothing to draw")
    if args.reference and step_unit([run for group in groups for run in group.runs]) == "gradient updates":
        raise PlotError("the published curves are of online runs, in env steps: --reference does not apply to "
                        "offline_brc_bc.py runs")  # fmt: skip
    if args.out is None:  # beside the runs, not wherever plot.py was started
        args = dataclasses.replace(args, out=str(Path(args.runs[0]) / "plots"))
    published = references(args, list(dict.fromkeys(t for g in groups for t in g.tasks)))
    for path in plot(args, groups, published) + ([write_table(args, groups, published)] if args.table else []):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    try:
        main(cli_args)
    except PlotError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
