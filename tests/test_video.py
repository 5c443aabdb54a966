"""common/video.py and --capture-video: evaluation episodes filmed headless (EGL or OSMesa)."""

import json

import numpy as np
import pytest

from common.suites import resolve_tasks
from common.video import HEIGHT, WIDTH, VideoError, VideoRecorder, read_mp4

TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--batch-size", "32"]


def test_short_videos_of_a_dmc_and_a_metaworld_task(tmp_path):
    """20 steps of cartpole-swingup (dm_control) and reach (metaworld package): 21 frames each
    (the reset and every step), 240x320 RGB, read back with the library that wrote them; the
    policy sees the task's observation zero-padded to the width it reads."""
    tasks = resolve_tasks("", ("cartpole-swingup", "reach"))
    seen = []

    def policy(obs):
        seen.append(obs.copy())
        return np.full((1, 6), 0.5, np.float32)

    recorder = VideoRecorder(tasks, [3, 4], obs_dim=45)
    try:
        for k, task in enumerate(tasks):
            out = recorder.record(k, policy, tmp_path / f"{task.name}.mp4", max_steps=20)
            frames = read_mp4(tmp_path / f"{task.name}.mp4")
            assert out["frames"] == 21 and frames.shape == (21, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
            assert frames.std() > 5 and not np.array_equal(frames[0], frames[-1])  # a scene that moves
            assert not list(tmp_path.glob("*.tmp.mp4"))
    finally:
        recorder.close()
    assert len(seen) == 40 and all(o.shape == (1, 45) for o in seen)
    assert np.abs(seen[0][0, :5]).sum() > 0 and not seen[0][0, 5:].any()  # cartpole: 5 numbers, then padding
    assert np.abs(seen[20][0, :39]).sum() > 0 and not seen[20][0, 39:].any()  # reach: 39


def test_no_headless_gl_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    with pytest.raises(VideoError, match=r"neither EGL nor OSMesa.*apt-get install libosmesa6.*no-such-backend"):
        VideoRecorder(resolve_tasks("", ("cartpole-swingup",)), [0], obs_dim=5)


def test_a_video_process_that_dies_is_one_clear_error(tmp_path):
    recorder = VideoRecorder(resolve_tasks("", ("cartpole-swingup",)), [0], obs_dim=5)
    recorder._process.kill()
    with pytest.raises(VideoError, match=r"the video process stopped \(exit code -9\)"):
        recorder.record(0, lambda obs: np.zeros((1, 1), np.float32), tmp_path / "x.mp4")
    recorder.close()
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_sac_brc_films_its_evaluations(run, tmp_path):
    """--capture-video on a ShadowHand shape (100-step episodes): one MP4 per evaluation, named
    in metrics.jsonl, of the whole episode."""
    out = run(
        "sac_brc.py", "--suite", "sh-block", *TINY, "--total-steps", "200", "--learning-starts", "100",
        "--eval-interval", "100", "--eval-episodes", "1", "--log-interval", "100", "--capture-video",
        "--run-name", "filmed",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "filmed"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["videos"] for r in records] == [{"sh-block": "sh-block_step100.mp4"}, {"sh-block": "sh-block_step200.mp4"}]
    for step in (100, 200):
        assert read_mp4(run_dir / "videos" / f"sh-block_step{step}.mp4").shape == (101, HEIGHT, WIDTH, 3)


@pytest.mark.slow
def test_drq_brc_films_the_first_evaluation_game(run, tmp_path):
    """drq_brc.py --capture-video: the agent's own 84x84 frames of the first evaluation game of
    the first --video-tasks games, shown at 168x168: one frame per step, --max-episode-steps here."""
    out = run(
        "drq_brc.py", "--channels", "4", "8", "8", "--width", "16", "--num-atoms", "11", "--batch-size", "8",
        "--tasks", "pong,breakout", "--learning-starts", "40", "--total-steps", "60", "--eval-interval", "60",
        "--eval-episodes", "2", "--max-episode-steps", "30", "--capture-video", "--video-tasks", "1",
        "--run-name", "filmed",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "filmed"
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["videos"] == {"pong": "pong_step60.mp4"}
    frames = read_mp4(run_dir / "videos" / "pong_step60.mp4")
    assert frames.shape == (30, 168, 168, 3)  # the game is cut at its 30th step
    assert (frames[..., 0] == frames[..., 1]).mean() > 0.95  # grey
