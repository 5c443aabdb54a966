"""plot.py: bootstrap confidence intervals, aggregation, run grouping, reference curves, PNGs."""

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

import plot
from common.suites import SH_TRAIN

# the published curves: the results/ folder of a clone of github.com/naumix/BiggerRegularizedCategorical
REAL_REFERENCE = Path(os.environ["BRC_REFERENCE"]) if os.environ.get("BRC_REFERENCE") else None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bootstrap_ci_by_hand():
    rng = np.random.default_rng(0)
    # one seed: every resample is that seed
    low, high = plot.bootstrap_ci(np.array([[0.3, 0.7]]), 0.95, 1000, rng)
    np.testing.assert_array_equal(low, [0.3, 0.7])
    np.testing.assert_array_equal(high, [0.3, 0.7])
    # two seeds a < b: the resample mean is a, (a+b)/2, b with probability 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are a and b
    low, high = plot.bootstrap_ci(np.array([[0.0], [1.0]]), 0.95, 10_000, rng)
    assert (low[0], high[0]) == (0.0, 1.0)


def test_bootstrap_ci_matches_the_exact_bootstrap_distribution():
    """Five seeds: all 5^5 equally likely resamples enumerated; the Monte Carlo percentiles
    approach the exact quantiles of that distribution."""
    seeds = np.array([[0.1, 0.0], [0.4, 0.2], [0.5, 0.9], [0.8, 0.3], [1.0, 0.6]])
    exact = np.array([seeds[list(rows)].mean(axis=0) for rows in itertools.product(range(5), repeat=5)])
    low, high = plot.bootstrap_ci(seeds, 0.9, 200_000, np.random.default_rng(1))
    for point in range(2):
        values = np.sort(exact[:, point])
        cdf = np.arange(1, len(values) + 1) / len(values)
        lower_quantile = values[np.searchsorted(cdf, 0.05)]
        upper_quantile = values[np.searchsorted(cdf, 0.95)]
        assert low[point] == pytest.approx(lower_quantile, abs=0.02)
        assert high[point] == pytest.approx(upper_quantile, abs=0.02)


def test_aggregate_is_the_mean_over_tasks_then_seeds():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 4, 5))  # seeds, tasks, points
    mean, low, high = plot.aggregate(scores, 0.95, 2000, np.random.default_rng(2))
    for p in range(5):
        per_seed = [sum(scores[s, t, p] for t in range(4)) / 4 for s in range(3)]
        assert mean[p] == pytest.approx(sum(per_seed) / 3)
        assert min(per_seed) - 1e-12 <= low[p] <= mean[p] <= high[p] <= max(per_seed) + 1e-12


def write_run(root: Path, name: str, config: dict, records: list[tuple[int, dict]]) -> Path:
    """A run directory as sac_brc.py writes it: `records` is [(step, {task: (return, success)})]."""
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    lines = []
    for step, tasks in records:
        results = {t: {"return": r, "success": s, "score": -1.0} for t, (r, s) in tasks.items()}
        lines.append(json.dumps({"step": step, "tasks": results}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def two_configs(root: Path) -> list[Path]:
    """Width 32 with seeds 0, 1 and width 64 with seed 0, on reach (MW) and cheetah-run (DMC)."""
    paths = []
    for width, seed, offset in ((32, 0, 0.0), (32, 1, 0.2), (64, 0, 0.4)):
        config = {"suite": "mw", "tasks": ["reach", "cheetah-run"], "width": width, "seed": seed,
                  "run_name": f"w{width}s{seed}", "total_steps": 300}  # fmt: skip
        steps = (100, 200, 300) if seed == 0 else (100, 200)
        records = [(s, {"reach": (1.0, offset + s / 1000), "cheetah-run": (100.0 * s / 100 + 1000 * offset, None)})
                   for s in steps]  # fmt: skip
        paths.append(write_run(root, f"w{width}s{seed}", config, records))
    return paths


def test_what_a_resume_may_change_does_not_split_a_group():
    """A resume records its flags in config.json: a seed resumed to train longer, or with other
    run flags, must stay a seed of its configuration. --overlap changes what the update samples."""
    import drq_brc
    import offline_brc_bc
    import sac_brc
    from common.run import RUN_FIELDS

    resumable = sac_brc.RESUMABLE_FIELDS | drq_brc.RESUMABLE_FIELDS | offline_brc_bc.RESUMABLE_FIELDS
    assert (RUN_FIELDS | resumable) - {"overlap"} <= plot.NOT_CONFIGURATION


def test_runs_grouped_by_configuration_and_scored_by_the_suite(tmp_path):
    groups = plot.group_runs([plot.load_run(p) for p in two_configs(tmp_path)], ())
    assert [g.label for g in groups] == ["width=32 (2 seeds)", "width=64 (1 seed)"]
    first = groups[0]
    np.testing.assert_array_equal(first.steps, [100, 200])  # steps both seeds evaluated
    assert first.scores.shape == (2, 2, 2) and first.tasks == ["reach", "cheetah-run"]
    # reach: the success rate; cheetah-run: return / 1000 (the stored score -1 is not used)
    np.testing.assert_allclose(first.scores[1, 0], [0.3, 0.4])
    np.testing.assert_allclose(first.scores[1, 1], [0.3, 0.4])
    labelled = plot.group_runs([plot.load_run(p) for p in two_configs(tmp_path / "again")], ("small", "big"))
    assert [g.label for g in labelled] == ["small (2 seeds)", "big (1 seed)"]
    many = [write_run(tmp_path / "many", f"r{k}", {"suite": "mw", "tasks": ["reach"], "seed": 0, "width": 32 + k,
                      "depth": k, "utd": k, "gamma": k, "tau": k}, [(100, {"reach": (1.0, 0.5)})]) for k in range(2)]  # fmt: skip
    assert [g.label for g in plot.group_runs([plot.load_run(p) for p in many], ())] == ["r0 (1 seed)", "r1 (1 seed)"]
    with pytest.raises(plot.PlotError, match="--labels gives 1 label"):
        plot.group_runs([plot.load_run(p) for p in two_configs(tmp_path / "once more")], ("one",))


def test_one_run_is_one_seed_and_a_rerun_of_a_seed_is_refused(tmp_path):
    paths = two_configs(tmp_path)
    # the same folder named twice, and through a second path, is counted once
    found = plot.find_runs((str(paths[0]), str(paths[0]), str(tmp_path / "." / paths[0].name)))
    assert len(found) == 1
    with pytest.raises(plot.PlotError, match="give one or more run directories"):
        plot.find_runs(())
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "w32s0").mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (copy / "w32s0" / name).write_text((paths[0] / name).read_text())
    with pytest.raises(plot.PlotError, match="same --seed") as info:
        plot.group_runs([plot.load_run(p) for p in [*paths, copy / "w32s0"]], ())
    assert str(paths[0]) in str(info.value) and str(copy / "w32s0") in str(info.value)
    late = write_run(tmp_path / "late", "w32s2", json.loads((paths[0] / "config.json").read_text()) | {"seed": 2},
                     [(250, {"reach": (1.0, 0.5), "cheetah-run": (10.0, None)})])  # fmt: skip
    with pytest.raises(plot.PlotError, match=r"share no evaluation step") as info:
        plot.group_runs([plot.load_run(p) for p in [paths[0], late]], ())
    assert str(late) in str(info.value)


def test_offline_runs_are_plotted_in_updates_and_never_beside_online_runs(tmp_path, capsys):
    online = two_configs(tmp_path)[0]
    records = [(100, {"reach": (1.0, 0.0)}), (200, {"reach": (2.0, 1.0)})]
    offline = write_run(tmp_path, "off", {"dataset": "data/easy", "num_updates": 200, "seed": 0}, records)
    groups = plot.group_runs([plot.load_run(offline)], ())
    assert plot.step_unit(groups[0].runs) == "gradient updates" and groups[0].label == "offline on data/easy (1 seed)"
    assert plot.step_unit([plot.load_run(online)]) == "env steps per task"
    with pytest.raises(plot.PlotError, match="count gradient updates and online runs env steps"):
        plot.main(plot.Args(runs=(str(online), str(offline)), out=str(tmp_path / "plots")))
    with pytest.raises(plot.PlotError, match="--reference does not apply to offline_brc_bc.py runs"):
        plot.main(plot.Args(runs=(str(offline),), out=str(tmp_path / "plots"), reference=str(tmp_path)))


def test_flags_that_would_silently_do_nothing_are_refused(tmp_path):
    paths = two_configs(tmp_path)
    with pytest.raises(plot.PlotError, match="--reference-variants picks folders of --reference"):
        plot.main(plot.Args(runs=tuple(map(str, paths)), reference_variants=("BRC_singletask",)))
    with pytest.raises(plot.PlotError, match="--max-step 50 is before the first evaluation \\(step 100\\)"):
        plot.main(plot.Args(runs=tuple(map(str, paths)), out=str(tmp_path / "plots"), max_step=50))
    assert not (tmp_path / "plots").exists()


def test_metric_return_and_success_are_what_the_runs_logged(tmp_path):
    paths = two_configs(tmp_path)
    returns = plot.load_run(paths[1], "return")  # seed 1, offset 0.2
    np.testing.assert_allclose(returns.scores["reach"], [1.0, 1.0])
    np.testing.assert_allclose(returns.scores["cheetah-run"], [300.0, 400.0])
    assert plot.metric_label("return", ["reach"]) == "evaluation return"
    assert plot.metric_label("score", ["reach"]) == "normalised score (success rate)"
    assert plot.metric_label("score", ["cheetah-run"]) == "normalised score (return / 1000)"
    with pytest.raises(plot.PlotError, match="--metric success: cheetah-run reports no success"):
        plot.load_run(paths[1], "success")


def test_a_last_line_cut_short_is_left_out_and_a_broken_line_before_it_named(tmp_path, capsys):
    """A run that is writing its record, or was killed mid-write, ends metrics.jsonl in half a
    line: plotted without it, with a note. Any other line that is not a record is an error."""
    path = two_configs(tmp_path)[1]  # seed 1: steps 100 and 200
    whole = (path / "metrics.jsonl").read_text()
    (path / "metrics.jsonl").write_text(whole + '{"step": 300, "tasks": {"rea')
    assert plot.load_run(path, "return").steps.tolist() == [100, 200]
    assert "left out its last line, not a whole record" in capsys.readouterr().out
    (path / "metrics.jsonl").write_text("\x00" * 8 + "\n" + whole)
    with pytest.raises(plot.PlotError, match="metrics.jsonl: line 1 is not a JSON record; remove it"):
        plot.load_run(path, "return")
    (path / "metrics.jsonl").write_text(whole)
    (path / "config.json").write_text('{"suite": "m')  # a copy cut short
    with pytest.raises(plot.PlotError, match="config.json cannot be read \\(Unterminated string"):
        plot.load_run(path, "return")


def test_the_aggregate_title_claims_a_confidence_interval_only_with_two_seeds(tmp_path):
    args = plot.Args(runs=("x",))
    groups = plot.group_runs([plot.load_run(p) for p in two_configs(tmp_path)], ())  # 2 seeds and 1 seed
    assert plot.aggregate_title(groups, ["reach", "cheetah-run"], args).endswith("95% bootstrap CI over seeds")
    one_seed = plot.aggregate_title(groups[1:], ["reach", "cheetah-run"], args)
    assert "CI" not in one_seed.replace("no confidence interval", "") and one_seed.endswith("no confidence interval)")


def test_one_task_one_seed_plots_beside_the_run_without_an_aggregate(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "quick", {"suite": "reach", "tasks": ["reach"], "seed": 0},
                    [(100, {"reach": (200.0, 0.0)}), (200, {"reach": (900.0, 0.1)})])  # fmt: skip
    plot.main(plot.Args(runs=(str(run),), metric="return"))
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["tasks.png"]  # no aggregate of one task
    assert capsys.readouterr().out.strip() == f"wrote {run / 'plots' / 'tasks.png'}"
    with pytest.raises(plot.PlotError, match="need --metric score"):
        plot.main(plot.Args(runs=(str(run),), metric="return", reference=str(tmp_path)))


def fake_reference(root: Path) -> Path:
    """The published layout: <suite>/<variant>/<task>.npy, shape (seeds, points)."""
    (root / "metaworld" / "BRC_multitask").mkdir(parents=True)
    (root / "dmc" / "BRC_multitask").mkdir(parents=True)
    np.save(root / "metaworld" / "BRC_multitask" / "reach-v2-goal-observable.npy", np.array([[0.5, 1.0], [0.0, 1.0]]))
    np.save(root / "dmc" / "BRC_multitask" / "cheetah-run.npy", np.array([[200.0, 400.0], [400.0, 800.0]]))
    return root


def test_reference_curves_are_found_by_task_name_and_normalised(tmp_path):
    root = fake_reference(tmp_path / "ref")
    np.testing.assert_array_equal(plot.load_reference(root, "BRC_multitask", "reach"), [[0.5, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(plot.load_reference(root, "BRC_multitask", "cheetah-run"), [[0.2, 0.4], [0.4, 0.8]])
    assert plot.load_reference(root, "BRC_multitask", "dog-run") is None


def test_shadowhand_reference_is_a_column_of_the_aggregate_file(tmp_path):
    """shadowhand/<variant>/aggregate.npy: (seeds, points, 85) in SH_TRAIN's order, every 2k steps."""
    (tmp_path / "shadowhand" / "BRC_multitask").mkdir(parents=True)
    values = np.zeros((2, 3, len(SH_TRAIN)))
    values[:, :, SH_TRAIN.index("cube")] = [[0.0, 0.5, 1.0], [0.5, 0.5, 0.5]]
    np.save(tmp_path / "shadowhand" / "BRC_multitask" / "aggregate.npy", values)
    np.testing.assert_array_equal(plot.load_reference(tmp_path, "BRC_multitask", "sh-cube"), [[0.0, 0.5, 1.0], [0.5] * 3])
    assert not plot.load_reference(tmp_path, "BRC_multitask", "sh-knife").any()
    assert plot.load_reference(tmp_path, "BRC_multitask", "sh-dice") is None  # a transfer shape: no curve
    assert plot.reference_interval("sh-cube", plot.Args(runs=())) == 2_000
    assert plot.reference_interval("reach", plot.Args(runs=())) == 25_000
    np.save(tmp_path / "shadowhand" / "BRC_multitask" / "aggregate.npy", values[:, :, :10])
    with pytest.raises(plot.PlotError, match="85 shapes"):
        plot.load_reference(tmp_path, "BRC_multitask", "sh-cube")


@pytest.mark.skipif(not (REAL_REFERENCE and REAL_REFERENCE.is_dir()), reason="set BRC_REFERENCE to the authors' results/ folder")
def test_real_reference_layout():
    reach = plot.load_reference(REAL_REFERENCE, "BRC_multitask", "reach")
    assert reach.shape == (5, 20) and 0 <= reach.min() and reach.max() <= 1
    dog = plot.load_reference(REAL_REFERENCE, "BRC_multitask", "dog-run")
    assert dog.shape == (5, 20) and 0.2 < dog[:, -1].mean() < 0.6  # 390 / 1000 (reference README)
    final = [plot.load_reference(REAL_REFERENCE, "BRC_multitask", f"sh-{shape}")[:, -1].mean() for shape in SH_TRAIN]
    assert 0.80 < np.mean(final) < 0.87  # 0.838 over the 85 shapes at 1M steps


@pytest.mark.slow
def test_plot_writes_pngs_and_refuses_bad_input(run, tmp_path):
    two_configs(tmp_path / "runs")
    ref = fake_reference(tmp_path / "ref")
    out = run("plot.py", str(tmp_path / "runs"), "--out", str(tmp_path / "plots"), "--reference", str(ref),
              "--bootstrap-samples", "200")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("tasks.png", "aggregate.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "plots" / "diagnostics.png").exists()  # no run logged --diagnostics
    for argv, message in [
        ([str(tmp_path / "nowhere")], "is not a directory"),
        ([str(ref)], "holds no metrics.jsonl"),
        ([str(tmp_path / "runs"), "--labels", "a"], "--labels gives 1 label(s) but the runs form 2"),
        ([str(tmp_path / "runs"), "--reference", str(ref), "--reference-variants", "BRC_x"], "found BRC_multitask"),
        ([str(tmp_path / "runs"), "--confidence", "95"], "--confidence must be in (0, 1)"),
    ]:
        bad = run("plot.py", *argv, "--out", str(tmp_path / "bad"))
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr[-2000:]
        assert message in lines[0]


def test_table_against_published_curves_by_hand(run, tmp_path):
    """Two seeds, one of them stopped early; the published curves every 10 steps; cheetah-run has
    no published curve. With two seeds, a 95% bootstrap interval is [min, max] of the seeds (each
    of them is the whole resample with probability 1/4), so every cell can be computed by hand."""
    runs = tmp_path / "runs"
    returns = {  # step -> task -> return, for seeds 0 and 1
        0: {5: (0, 0, 0), 10: (100, 0, 500), 15: (0, 0, 0), 20: (300, 0, 700), 25: (0, 0, 0)},
        1: {5: (0, 0, 0), 10: (300, 0, 700), 15: (0, 0, 0), 20: (400, 0, 1000)},  # a partial run
    }
    tasks = ["cartpole-swingup", "cheetah-run", "walker-walk"]
    for seed, by_step in returns.items():
        config = {"suite": "dmc-easy", "tasks": tasks, "width": 32, "seed": seed, "run_name": f"s{seed}"}
        records = [(step, {t: (r, None) for t, r in zip(tasks, rs)}) for step, rs in by_step.items()]
        write_run(runs, f"s{seed}", config, records)
    ref = tmp_path / "ref" / "dmc" / "BRC_multitask"
    ref.mkdir(parents=True)
    np.save(ref / "cartpole-swingup.npy", np.array([[200.0, 600.0], [400.0, 800.0]]))
    np.save(ref / "walker-walk.npy", np.array([[400.0, 960.0], [600.0, 1000.0]]))
    np.save(ref / "finger-spin.npy", np.zeros((2, 2)))  # a task we did not run
    common = ["plot.py", str(runs), "--reference", str(tmp_path / "ref"), "--reference-interval", "10",
              "--labels", "tiny", "--table", "--out"]  # fmt: skip
    out = run(*common, str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr[-3000:]
    expected = """# Ours against the published curves

Normalised scores (paper Appendix E.3): mean over seeds [95% bootstrap CI over seeds]. `overlap`: whether the two intervals overlap. Only the evaluation steps both have are compared.

## tiny (2 seeds) against published BRC_multitask

No published curve for cheetah-run: left out.
Ours: 2 seed(s), trained on 3 task(s) together. Published: 2 seed(s); `dmc/BRC_multitask` holds 3 tasks.

Mean over the 2 task(s) with a published curve:

| env steps per task | ours | published | overlap |
|---|---|---|---|
| 10 | 0.40 [0.30, 0.50] | 0.40 [0.30, 0.50] | yes |
| 20 | 0.60 [0.50, 0.70] | 0.84 [0.78, 0.90] | no |

Per task:

| task | env steps per task | ours | published | overlap |
|---|---|---|---|---|
| cartpole-swingup | 10 | 0.20 [0.10, 0.30] | 0.30 [0.20, 0.40] | yes |
| cartpole-swingup | 20 | 0.35 [0.30, 0.40] | 0.70 [0.60, 0.80] | no |
| walker-walk | 10 | 0.60 [0.50, 0.70] | 0.50 [0.40, 0.60] | yes |
| walker-walk | 20 | 0.85 [0.70, 1.00] | 0.98 [0.96, 1.00] | yes |
"""
    assert (tmp_path / "plots" / "table.md").read_text() == expected
    # cropped before the first published point: nothing to compare, and it says why
    out = run(*common, str(tmp_path / "early"), "--max-step", "5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "No evaluation step in common: ours evaluated at 5, the published curves every 10 steps." in (
        tmp_path / "early" / "table.md"
    ).read_text()
    bad = run("plot.py", str(runs), "--table", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --table compares with the published curves: give --reference DIR too"
