"""benchmarks/gpu_check.py end to end on a CPU at tiny sizes: the same code a GPU user runs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_scale import nominal_peak
from gpu_check import evaluation_protocol


@pytest.mark.slow
def test_gpu_check_prints_the_whole_report(tmp_path):
    # a stand-in for the published curves: success 1 in 3 of 5 seeds at every point
    folder = tmp_path / "results" / "metaworld" / "BRC_multitask"
    folder.mkdir(parents=True)
    np.save(folder / "reach.npy", np.tile(np.array([[1.0], [1.0], [1.0], [0.0], [0.0]]), (1, 4)))
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--reference", str(tmp_path / "results"),
         "--out", str(tmp_path / "check"), "--width", "32", "--batch", "32", "--calls", "2", "--matmul-size", "256",
         "--suite", "reach", "--train-width", "32", "--total-steps", "1000", "--learning-starts", "200",
         "--eval-interval", "500", "--log-interval", "100", "--reference-interval", "500",
         "--trace", str(tmp_path / "trace"), "--batch-size", "32", "--eval-episodes", "1", "--precision", "bf16"],
        capture_output=True, text=True, timeout=None, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = out.stdout
    assert report == (tmp_path / "check" / "report.md").read_text()
    assert "JAX " in report and "cpu" in report
    for precision in ("f32", "bf16"):
        assert f"| {precision} | " in report
        assert list((tmp_path / "trace" / precision).rglob("perfetto_trace.json.gz")), precision
    assert re.search(r"act, the action copied to the host [\d.]+ ms; G copied to the device [\d.]+ ms; insert", report)
    rate = re.search(r"median ([\d.]+) over (\d+) intervals", report)
    assert rate and float(rate.group(1)) > 0 and int(rate.group(2)) >= 3
    assert "end to end is" in report  # same width in both parts: the fraction of the update-alone rate
    # sac_brc.py's own flags reach it, --precision too (not taken for gpu_check's --precisions)
    assert "(--trace" not in report and "--precision bf16" in report
    run = tmp_path / "check" / "runs" / "reach__w32__gpu_check"
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    # how the run evaluated, from its config.json, then the published side at 500 and 1,000
    # steps: 3 of 5 seeds succeed, mean 0.60
    assert "This run: --eval-protocol published, --eval-episodes 1, MetaWorld --mw-layouts per-episode" in report
    assert "| 500 | " in report and "| 1k | " in report
    rows = [line for line in report.splitlines() if line.startswith("| 1k | ")]
    assert rows and "0.60 [" in rows[0].split("|")[3]


def test_nominal_peak_tells_the_h100s_apart():
    # the names CUDA gives these GPUs; the PCIe and NVL H100s have lower peaks than the SXM one
    assert nominal_peak("NVIDIA H100 80GB HBM3") == (989.0, 494.7)
    assert nominal_peak("NVIDIA H100 PCIe") == (756.0, 378.0)
    assert nominal_peak("NVIDIA H100 NVL") == (835.0, 417.5)
    assert nominal_peak("NVIDIA H200") == (989.0, 494.7)
    assert nominal_peak("cpu") is None


def test_the_evaluation_protocol_names_metaworld_flags_only_for_metaworld_tasks():
    config = {"eval_protocol": "published", "eval_episodes": 10, "mw_layouts": "per-episode",
              "mw_backend": "metaworld"}  # fmt: skip
    plain = "This run: --eval-protocol published, --eval-episodes 10"
    mw = plain + ", MetaWorld --mw-layouts per-episode on --mw-backend metaworld."
    assert evaluation_protocol({**config, "suite": "mw", "tasks": []}) == mw
    # --tasks, when given, are the tasks (the suite is then unused)
    assert evaluation_protocol({**config, "suite": "dmc-hard", "tasks": ["reach", "dog-run"]}) == mw
    assert evaluation_protocol({**config, "suite": "dmc-hard", "tasks": []}) == plain + "."
    assert evaluation_protocol({**config, "suite": "mw", "tasks": ["dog-run"]}) == plain + "."
