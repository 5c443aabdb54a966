"""HumanoidBench adapter (common/envs.py), the suites of paper Appendix E and their scores.

HumanoidBench cannot be installed here: tests/standin/humanoid_bench is a toy package with
HB's ids and interface (see its docstring), put on PYTHONPATH for the worker processes.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.envs import EnvError, MultiTaskEnv
from common.suites import CONTINUOUS, HB_SCORES, MT50, SUITES, TASKS, normalized_score, resolve_tasks

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "standin"
TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--batch-size", "64"]


@pytest.fixture
def standin(monkeypatch):
    """Makes the stand-in `humanoid_bench` importable here and in worker processes."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(STANDIN), str(REPO), os.environ.get("PYTHONPATH", "")]))


def run_sac(*argv: str, cwd: Path, with_standin: bool, env: dict | None = None) -> subprocess.CompletedProcess:
    path = [str(STANDIN), str(REPO)] if with_standin else [str(REPO)]
    env = dict(env or os.environ, PYTHONPATH=os.pathsep.join(path), PYTHONWARNINGS="ignore", MUJOCO_GL="disable")
    return subprocess.run(
        [sys.executable, str(REPO / "sac_brc.py"), *argv],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


# --------------------------------------------------------------- suites of paper Appendix E


def names(suite: str) -> list[str]:
    return [t.name for t in resolve_tasks(suite)]


def test_suites_are_the_papers_lists():
    h1 = ["walk", "stand", "run", "stair", "crawl", "pole", "slide", "hurdle", "maze"]
    assert names("hb-medium") == [f"h1-{t}" for t in h1]
    hard = h1 + ["sit_simple", "sit_hard", "balance_simple", "balance_hard", "reach", "spoon", "window",
                 "insert_small", "insert_normal", "bookshelf_simple", "bookshelf_hard"]  # fmt: skip
    assert names("hb-hard") == [f"h1hand-{t}" for t in hard]
    # Appendix E.2
    mw_test = ["assembly", "disassemble", "dial-turn", "lever-pull", "push-back"]
    assert names("mw-transfer-test") == mw_test
    assert names("mw-transfer-train") == [t for t in MT50 if t not in mw_test]
    assert len(names("mw-transfer-train")) == 45
    medium_train = ("walk", "stand", "stair", "crawl", "pole", "slide")
    assert names("hb-medium-transfer-train") == [f"h1-{t}" for t in medium_train]
    assert names("hb-medium-transfer-test") == ["h1-run", "h1-hurdle", "h1-maze"]
    hard_test = ["truck", "powerlift", "room", "door", "basketball", "push", "cabinet"]
    assert names("hb-hard-transfer-test") == [f"h1hand-{t}" for t in hard_test]
    assert not set(names("hb-hard-transfer-test")) & set(names("hb-hard"))
    # Figure 10: 3 and 6 of HB-MEDIUM's tasks
    assert names("hb-medium-subset3") == ["h1-walk", "h1-stair", "h1-slide"]
    assert names("hb-medium-subset6") == names("hb-medium-transfer-train")


@pytest.mark.parametrize(("suite", "sizes"), [
    ("hb-medium", (51, 19)), ("hb-hard", (308, 61)), ("mw-dmc", (39, 6)), ("mw", (39, 4)), ("sh", (68, 20)),
])  # fmt: skip
def test_suite_sizes(suite, sizes):
    """Paper Appendix E.1 gives the largest sizes (HB-HARD: 307 there; HB's bookshelf task
    class gives 151 + 2 * 84 - 12 + 1 = 308, see docs/suites.md)."""
    tasks = resolve_tasks(suite)
    assert (max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)) == sizes


def test_help_lists_every_suite():
    out = subprocess.run(
        [sys.executable, str(REPO / "sac_brc.py"), "--help"], capture_output=True, text=True, check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out.stdout).split())
    listed = set(re.findall(r"[a-z0-9-]+", text))
    # every multi-task suite sac_brc.py trains (the Atari ones belong to drq_brc.py)
    multi_task = [s for s in SUITES if s not in TASKS and TASKS[SUITES[s][0]].domain != "atari"]
    missing = [s for s in multi_task if s not in listed]
    assert not missing, f"--suite help text lacks {missing}"


def test_the_papers_suite_names_are_accepted_and_a_script_offers_only_suites_it_runs():
    assert resolve_tasks("MT50") == resolve_tasks("mw") and len(resolve_tasks("mt50")) == 50
    assert resolve_tasks("MT80") == resolve_tasks("mw-dmc") and len(resolve_tasks("MT80")) == 80
    assert resolve_tasks("HB-Medium") == resolve_tasks("hb-medium")
    with pytest.raises(ValueError) as continuous:
        resolve_tasks("mt-50", (), CONTINUOUS)
    assert "Valid suites: mw, " in str(continuous.value) and "mt50 = mw" in str(continuous.value)
    assert "atari" not in str(continuous.value)
    with pytest.raises(ValueError) as games:
        resolve_tasks("pong-typo", (), frozenset({"atari"}))
    assert "Valid suites: atari, atari-transfer, or any" in str(games.value) and "mw" not in str(games.value)


def test_hb_normalized_score_is_paper_table_2():
    # (return - random) / (success - random), by hand from Table 2's rows
    assert normalized_score(TASKS["h1-walk"], 2.377, 0.0) == pytest.approx(0.0)
    assert normalized_score(TASKS["h1-walk"], 700.0, 1.0) == pytest.approx(1.0)
    assert normalized_score(TASKS["h1-crawl"], 500.0, 0.0) == pytest.approx((500 - 272.658) / (700 - 272.658))
    assert normalized_score(TASKS["h1hand-push"], 0.0, 0.0) == pytest.approx(526.8 / 1226.8)
    assert normalized_score(TASKS["h1hand-reach"], 6000.0, 0.0) == pytest.approx(6050.024 / 12050.024)
    assert len(HB_SCORES) == 37  # Table 2's 36 rows + cabinet
    # cabinet, not in Table 2: the authors' score table (their results/score_normalization.py)
    assert normalized_score(TASKS["h1hand-cabinet"], 187.9, 0.0) == pytest.approx((187.9 - 37.733) / (2500 - 37.733))
    for name, task in TASKS.items():
        if task.domain == "humanoidbench":
            assert name in HB_SCORES, name
    assert all(spec.has_success for spec in TASKS.values() if spec.domain == "humanoidbench")


# --------------------------------------------------------------- HumanoidBench adapter


def test_missing_humanoid_bench_is_one_line_exit_2(tmp_path):
    out = run_sac("--suite", "hb-medium", cwd=tmp_path, with_standin=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "git clone" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


SHIM_CHECK = """
import sys, gymnasium
from common import envs
step = sys.argv[1]
if step in ("stub", "full"):
    sys.modules["humanoid_bench.mjx.flax_to_torch"] = type(sys)("humanoid_bench.mjx.flax_to_torch")
    sys.modules["humanoid_bench.mjx.flax_to_torch"].TorchModel = None
    sys.modules["humanoid_bench.mjx.flax_to_torch"].TorchPolicy = None
if step == "full":
    del sys.modules["humanoid_bench.mjx.flax_to_torch"]
    envs._humanoidbench_shim()
import humanoid_bench
gymnasium.make("h1-walk-v0", render_mode=None)
print("built")
"""


@pytest.mark.parametrize(("step", "expected"), [
    ("none", "No module named 'humanoid_bench.mjx'"), ("stub", "tex_rgb"), ("full", "built"),
])  # fmt: skip
def test_the_shim_is_what_makes_the_package_load(step, expected):
    """The stand-in reproduces both import-time problems of the published package; without
    the torch stub the import fails, with only the stub the field table fails, with the
    whole shim the env builds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STANDIN), str(REPO)]), MUJOCO_GL="disable")
    out = subprocess.run([sys.executable, "-c", SHIM_CHECK, step], capture_output=True, text=True, env=env,
                         check=False)  # fmt: skip
    assert expected in out.stdout + out.stderr, out.stdout + out.stderr


def test_hb_episode_semantics(standin):
    """Lockstep send/recv with the other tasks, fall -> terminated, time limit -> truncated,
    reset within the step that ends an episode, success = episode return >= success_bar at the
    last step."""
    tasks = resolve_tasks("", ("h1-walk", "h1-stand", "cartpole-swingup"))
    env = MultiTaskEnv(tasks, seed=3)
    twin = MultiTaskEnv(tasks[:1], seed=3)  # same seed for h1-walk: same np.random draws
    try:
        obs = env.reset()
        assert obs.shape == (3, 51) and obs.dtype == np.float32
        np.testing.assert_array_equal(twin.reset()[0], obs[0])
        assert obs[0, 0] == 0.0 and np.abs(obs[0, 1:]).max() <= 1 and not obs[2, 5:].any()
        a = np.zeros((3, 19), np.float32)
        # h1-walk falls at its 3rd step (action[1] > 0.9); h1-stand earns 0.5 a step
        a[1, 0] = -0.5
        returns = np.zeros(3)
        for t in range(1, 1001):
            a[0, 1] = 1.0 if t == 3 else 0.0
            out = env.step(a)
            returns += out.reward
            if t == 3:
                assert out.terminated[0] and not out.truncated[0] and not out.success[0]
                assert out.reward[0] == 1.0 and returns[0] == 3.0
                assert out.obs[0, 0] == 0.0 and out.next_obs[0, 0] != 0.0  # reset within the step
                returns[0] = 0
            if t < 1000:
                assert not out.truncated[1] and not out.terminated[1]
        # step 1000: h1-stand hits its time limit with return 500 < its success_bar 800
        assert out.truncated[1] and not out.terminated[1] and returns[1] == 500.0 and not out.success[1]
        # h1-walk restarted within step 3: 997 steps, return 997 >= 700, but not at its time limit yet
        assert not out.truncated[0] and returns[0] == 997.0 and not out.success[0]
        for _ in range(3):
            out = env.step(np.zeros((3, 19), np.float32))
        assert out.truncated[0] and out.success[0]  # episode return 1000 >= success_bar 700
        assert out.obs[0, 0] == 0.0 and not env.step(a).truncated[0]
    finally:
        env.close()
        twin.close()


def test_hb_size_mismatch_is_one_clear_error(standin):
    wrong = dataclasses.replace(TASKS["h1-walk"], obs_dim=50)
    env = MultiTaskEnv([wrong, TASKS["h1-stand"]], seed=0)
    with pytest.raises(EnvError, match=r"h1-walk: the env gives observations \(51,\).*expects \(50,\)"):
        env.reset()
    assert not any(w._process.is_alive() for w in env._workers)  # workers are stopped, not leaked
    wrong_limit = dataclasses.replace(TASKS["h1-walk"], max_episode_steps=500)
    env = MultiTaskEnv([wrong_limit], seed=0)
    with pytest.raises(EnvError, match="time limit is 1000 steps, common/suites.py says 500"):
        env.reset()


@pytest.mark.slow
def test_sac_brc_hb_medium_end_to_end(tmp_path):
    out = run_sac(
        "--suite", "hb-medium", *TINY, "--total-steps", "200", "--learning-starts", "100",
        "--eval-interval", "200", "--eval-episodes", "1", "--log-interval", "100", "--run-name", "hb",
        cwd=tmp_path, with_standin=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / "hb" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 200 and list(record["tasks"]) == list(SUITES["hb-medium"])
    for name, result in record["tasks"].items():
        assert result["success"] in (0.0, 1.0)
        random_return, success_return = HB_SCORES[name]
        expected = (result["return"] - random_return) / (success_return - random_return)
        assert result["score"] == pytest.approx(expected)
        assert 0.0 <= result["return"] <= 2000.0  # the stand-in's reward is 1 + action[0]


@pytest.mark.slow
@pytest.mark.parametrize("fail_at, cause", [(0, "at construction"), (150, "at step 150")])
def test_a_failing_env_worker_ends_the_run_with_one_message(tmp_path, fail_at, cause):
    """An exception inside one worker (the stand-in's h1-stand raises when built, or at its
    150th step, mid-run): exit code 2, one line naming the task and the cause, no traceback
    from any worker process (training or evaluation envs), and what the run wrote before
    (config, checkpoints) is intact."""
    env = dict(os.environ, STANDIN_FAIL=f"h1-stand-v0:{fail_at}")
    out = run_sac(
        "--suite", "hb-medium", *TINY, "--total-steps", "300", "--learning-starts", "100",
        "--eval-interval", "1000", "--checkpoint-interval", "50", "--log-interval", "100", "--run-name", "fail",
        cwd=tmp_path, with_standin=True, env=env,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: h1-stand"), out.stderr[-3000:]
    assert f"RuntimeError: stand-in failure {cause}" in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    run_dir = tmp_path / "runs" / "fail"
    assert json.loads((run_dir / "config.json").read_text())["suite"] == "hb-medium"
    written = {p.name for p in (run_dir / "checkpoints").iterdir()} if fail_at else set()
    assert written == ({"latest", "step_000000050", "step_000000100"} if fail_at else set())  # the newest 2
    if fail_at:
        assert (run_dir / "checkpoints" / "latest").read_text() == "step_000000100"
