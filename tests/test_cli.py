"""common/cli.py: `--resume RUN_DIR` alone takes every other argument from the run's config.json."""

import dataclasses
import json

import pytest

import drq_brc
import offline_brc_bc
import sac_brc
from common.cli import parse_args, resume_dir_in


def test_resume_alone_restores_the_saved_arguments_and_flags_override(tmp_path):
    for module in (sac_brc, drq_brc, offline_brc_bc):
        saved = dataclasses.replace(module.Args(), width=32, seed=7, run_name="r")
        run_dir = tmp_path / module.__name__
        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(saved)))
        args = parse_args(module.Args, ["--resume", str(run_dir)])
        assert args == dataclasses.replace(saved, resume=str(run_dir)), module.__name__
        steps = "--num-updates" if module is offline_brc_bc else "--total-steps"
        args = parse_args(module.Args, [f"--resume={run_dir}", steps, "400", "--width", "64"])
        assert args.width == 64 and args.seed == 7 and args.resume == str(run_dir)  # main refuses --width
        assert (args.num_updates if module is offline_brc_bc else args.total_steps) == 400
    # a list in config.json (e.g. --tasks) comes back as the tuple the dataclass holds
    saved = dataclasses.replace(sac_brc.Args(), tasks=("reach", "cartpole-swingup"))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "config.json").write_text(json.dumps(dataclasses.asdict(saved)))
    assert parse_args(sac_brc.Args, ["--resume", str(tmp_path / "t")]).tasks == ("reach", "cartpole-swingup")
    # no config.json there: plain defaults, and main says what is wrong
    assert parse_args(sac_brc.Args, ["--resume", "nowhere"]) == dataclasses.replace(sac_brc.Args(), resume="nowhere")


def test_resume_dir_in():
    assert resume_dir_in(["--width", "3"]) is None
    assert resume_dir_in(["--resume", "a", "--resume=b"]) == "b"
    assert resume_dir_in(["--resume"]) is None


def test_resume_with_an_unreadable_config_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(sac_brc.Args, ["--resume", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: --resume {tmp_path}: its config.json cannot be read")
