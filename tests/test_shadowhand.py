"""ShadowHand (common/shadowhand.py, the worker adapter in common/envs.py, the SH suites).

CI has no clone of the authors' repository: these tests run gymnasium-robotics' own hand
objects (block, egg, pen) through the code path the 85 shapes use, and build small asset
folders of their own from the package's files. With $BRC_SHADOWHAND_ASSETS pointing at the
authors' assets, `test_every_authors_shape_builds_and_steps` checks all 114 shapes.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from common import shadowhand
from common.envs import MultiTaskEnv, run_episodes, with_shadowhand_assets
from common.suites import SH_TRAIN, SH_TRANSFER_TEST, SUITES, TASKS, normalized_score, resolve_tasks

TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--batch-size", "32"]


def test_suites_are_the_authors_lists():
    assert len(SH_TRAIN) == len(set(SH_TRAIN)) == 85 and len(SH_TRANSFER_TEST) == len(set(SH_TRANSFER_TEST)) == 29
    assert not set(SH_TRAIN) & set(SH_TRANSFER_TEST)
    assert [t.name for t in resolve_tasks("sh")][:3] == ["sh-e_toy_airplane", "sh-knife", "sh-flat_screwdriver"]
    assert [t.name for t in resolve_tasks("sh-transfer-test")][-1] == "sh-plum"
    assert SUITES["sh-cube"] == ("sh-cube",) and "hammer" in SUITES and "sh-hammer" in SUITES  # no clash with MT50
    for name in SUITES["sh"] + SUITES["sh-transfer-test"] + ("sh-block",):
        spec = TASKS[name]
        assert (spec.obs_dim, spec.act_dim, spec.max_episode_steps, spec.has_success) == (68, 20, 100, True)
    assert normalized_score(TASKS["sh-cube"], -37.0, 1.0) == 1.0  # the score is the success rate


def test_observation_is_the_hand_and_object_state_and_goal():
    """61 = robot joint qpos (24) + qvel (24) + object qvel (6) + object qpos (7), read here
    through MuJoCo's named joints, not through the adapter's index tables."""
    env = shadowhand.make("block", None)
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    data, names = env.unwrapped.data, env.unwrapped._model_names.joint_names
    robot = [n for n in names if n.startswith("robot")]
    expected = np.concatenate(
        [np.concatenate([data.joint(n).qpos for n in robot]), np.concatenate([data.joint(n).qvel for n in robot]),
         data.joint("object:joint").qvel, data.joint("object:joint").qpos]
    )  # fmt: skip
    assert len(robot) == 24 and obs["observation"].shape == (61,) and obs["desired_goal"].shape == (7,)
    np.testing.assert_array_equal(obs["observation"], expected)
    # v1: the goal keeps the object's position and rotates it about z only (unit quaternion)
    goal = obs["desired_goal"]
    assert goal[4] == goal[5] == 0.0 and np.isclose(np.linalg.norm(goal[3:]), 1.0)
    assert reward in (-1.0, 0.0) and not terminated and not truncated and set(info) == {"is_success"}


@pytest.mark.parametrize("shape", ["block", "egg", "pen"])
def test_bundled_shapes_through_the_worker(shape):
    """obs 68, action 20, sparse reward in {-1, 0} with success at reward 0, truncation at 100."""
    env = MultiTaskEnv(resolve_tasks(f"sh-{shape}"), envs_per_task=2, seed=1)
    try:
        obs = env.reset()
        assert obs.shape == (2, 68) and env.act_dim == 20
        rng = np.random.default_rng(0)
        for t in range(1, 101):
            out = env.step(rng.uniform(-1, 1, (2, 20)))
            assert set(np.unique(out.reward)) <= {-1.0, 0.0}
            np.testing.assert_array_equal(out.success, out.reward == 0.0)
            assert not out.terminated.any() and out.truncated.all() == (t == 100)
        assert not np.array_equal(out.obs, out.next_obs)  # the next episode began within the step
    finally:
        env.close()


def rollout(seed: int, steps: int = 30) -> np.ndarray:
    env = MultiTaskEnv(resolve_tasks("sh-block"), envs_per_task=2, seed=seed)
    try:
        frames = [env.reset()]
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, 2, 20))
        frames += [env.step(a).obs for a in actions]
        return np.stack(frames)
    finally:
        env.close()


def test_seeding_is_repeatable_and_copies_differ():
    first, again, other = rollout(5), rollout(5), rollout(6)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0, 0], first[0, 1])  # two copies: their own initial rotation and goal
    assert not np.allclose(first[0], other[0])


def authors_style_assets(tmp_path: Path, shape: str = "testshape") -> Path:
    """An assets folder laid out like the authors' (hand/, stls/hand/, textures/), built from
    gymnasium-robotics' files; its shape's model has `<option apirate>` as theirs do."""
    root = tmp_path / "assets"
    shutil.copytree(shadowhand.bundled_assets() / "hand", root / "hand")
    shutil.copytree(shadowhand.bundled_assets() / "stls" / "hand", root / "stls" / "hand")
    shutil.copytree(shadowhand.bundled_assets() / "textures", root / "textures")
    text = (root / "hand" / "manipulate_block.xml").read_text()
    assert "apirate" not in text
    (root / "hand" / f"manipulate_{shape}.xml").write_text(text.replace('iterations="20"', 'iterations="20" apirate="200"'))
    return root


def test_authors_model_text_is_rewritten_in_memory_only(tmp_path):
    root = authors_style_assets(tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    import mujoco

    with pytest.raises(ValueError, match="apirate"):  # what MuJoCo 3.16 says about the file as it is
        mujoco.MjModel.from_xml_path(str(root / "hand" / "manipulate_testshape.xml"))
    env = shadowhand.make("testshape", root)
    obs, _ = env.reset(seed=0)
    assert obs["observation"].shape == (61,)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing written
    # found from the clone's root too, and through the environment variable
    clone = tmp_path / "clone" / "dex_envs"
    clone.mkdir(parents=True)
    root.rename(clone / "assets")
    assert shadowhand.assets_dir(str(tmp_path / "clone")) == (clone / "assets").resolve()


def test_missing_mesh_is_named_and_a_suite_goes_on_without_it(tmp_path, monkeypatch, capsys):
    root = authors_style_assets(tmp_path, "cube")
    (root / "hand" / "manipulate_knife.xml").write_text(
        (root / "hand" / "manipulate_cube.xml").read_text().replace("</asset>", '<mesh name="x" file="ycb/knife.stl"/></asset>', 1)
    )  # fmt: skip
    tasks = resolve_tasks("", ("sh-cube", "sh-knife"))
    with pytest.raises(ValueError, match=r"sh-knife: .*stls/hand/ycb/knife\.stl.*git clone"):
        with_shadowhand_assets(tasks, str(root), whole_suite=False)
    assert with_shadowhand_assets(tasks, str(root), whole_suite=True) == tasks[:1]
    assert "1 shape(s) left out" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sh-knife"):  # a suite with nothing left to run
        with_shadowhand_assets(tasks[1:], str(root), whole_suite=True)
    with pytest.raises(shadowhand.AssetsError, match="knife.stl"):
        shadowhand.make("knife", root)
    monkeypatch.delenv(shadowhand.ASSETS_ENV_VAR, raising=False)
    with pytest.raises(ValueError, match="git clone https://github.com/naumix/BiggerRegularizedCategorical"):
        with_shadowhand_assets(tasks, None, whole_suite=True)
    monkeypatch.setenv(shadowhand.ASSETS_ENV_VAR, str(root))
    assert with_shadowhand_assets(tasks[:1], None, whole_suite=False) == tasks[:1]
    monkeypatch.delenv(shadowhand.ASSETS_ENV_VAR)
    bundled = resolve_tasks("sh-block")
    assert with_shadowhand_assets(bundled, None, whole_suite=False) == bundled  # no assets needed


@pytest.mark.slow
def test_missing_assets_stop_sac_brc_before_training_with_one_line(run, tmp_path, monkeypatch):
    monkeypatch.delenv(shadowhand.ASSETS_ENV_VAR, raising=False)
    out = run("sac_brc.py", "--suite", "sh-cube")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "git clone" in lines[0] and "--shadowhand-assets" in lines[0], out.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sac_brc_on_a_bundled_shape_end_to_end(run, tmp_path):
    out = run(
        "sac_brc.py", "--suite", "sh-block", *TINY, "--total-steps", "300", "--learning-starts", "100",
        "--eval-interval", "300", "--eval-episodes", "2", "--log-interval", "100", "--run-name", "sh",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / "sh" / "metrics.jsonl").read_text().splitlines()[-1])
    result = record["tasks"]["sh-block"]
    assert record["step"] == 300 and result["score"] == result["success"]
    assert -100.0 <= result["return"] <= 0.0 and result["success"] in (0.0, 0.5, 1.0)


@pytest.mark.slow
def test_a_shape_that_fails_in_its_worker_ends_the_run_with_one_message(run, tmp_path):
    """Every file is there, but one shape's model does not compile (a corrupt download): the
    worker's MuJoCo error ends the run with one line naming the shape, exit code 2, no
    traceback from any worker process, and the run directory's config.json intact."""
    root = authors_style_assets(tmp_path, "cube")
    broken = (root / "hand" / "manipulate_cube.xml").read_text().replace('type="box"', 'type="no-such-type"', 1)
    assert 'type="no-such-type"' in broken
    (root / "hand" / "manipulate_knife.xml").write_text(broken)
    out = run(
        "sac_brc.py", "--tasks", "sh-cube", "sh-knife", "--shadowhand-assets", str(root), *TINY,
        "--total-steps", "300", "--learning-starts", "100", "--run-name", "broken",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sh-knife: ValueError: XML Error"), out.stderr[-3000:]
    assert "no-such-type" in lines[0] and "Traceback" not in out.stderr + out.stdout
    config = json.loads((tmp_path / "runs" / "broken" / "config.json").read_text())
    assert config["tasks"] == ["sh-cube", "sh-knife"]


@pytest.mark.skipif(not os.environ.get(shadowhand.ASSETS_ENV_VAR), reason="needs the authors' assets")
def test_every_authors_shape_builds_and_steps():
    root = shadowhand.assets_dir(None)
    for shape in SH_TRAIN + SH_TRANSFER_TEST:
        missing = shadowhand.missing_files(shape, root)
        if missing:
            with pytest.raises(shadowhand.AssetsError, match=missing[0].name):
                shadowhand.make(shape, root)
            continue
        env = shadowhand.make(shape, root)
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, reward, *_ = env.step(env.action_space.sample())
        assert obs["observation"].shape == (61,) and np.isfinite(obs["observation"]).all() and reward in (-1.0, 0.0)


def test_run_episodes_counts_success_at_any_step():
    env = MultiTaskEnv(resolve_tasks("sh-egg"), envs_per_task=1, seed=2)
    try:
        returns, success = run_episodes(env, lambda obs: np.zeros((len(obs), 20)), episodes=2)
    finally:
        env.close()
    # a step with reward 0 is a success step: an episode with return above -100 succeeded somewhere
    np.testing.assert_array_equal(success, returns > -100.0)
