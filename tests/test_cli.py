"""common/cli.py: `--resume RUN_DIR` alone takes every other argument from the run's config.json; every
script's command line keeps its flags."""

import dataclasses
import importlib
import inspect
import json
import os
import re
import subprocess
import sys

import pytest

import drq_brc
import offline_brc_bc
import sac_brc
from common.cli import parse_args, resume_dir_in
from common.run import ConfigError, check_resume
from conftest import REPO


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


def test_a_run_from_before_mw_layouts_resumes_with_the_frozen_layouts_it_had(tmp_path):
    """Runs started before --mw-layouts existed had frozen MetaWorld layouts: --resume alone keeps
    them, and asking for the new default is refused as any other changed flag is."""
    saved = dataclasses.asdict(dataclasses.replace(sac_brc.Args(), run_name="old"))
    del saved["mw_layouts"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    args = parse_args(sac_brc.Args, ["--resume", str(tmp_path)])
    assert args.mw_layouts == "frozen"
    check_resume(args, tmp_path, sac_brc.RESUMABLE_FIELDS)
    with pytest.raises(ConfigError, match="--mw-layouts 'frozen' \\(checkpoint\\) vs 'per-episode' \\(now\\)"):
        check_resume(dataclasses.replace(args, mw_layouts="per-episode"), tmp_path, sac_brc.RESUMABLE_FIELDS)


def test_resuming_another_scripts_run_is_one_line_naming_what_it_lacks(tmp_path, capsys):
    """sac_brc.py's config.json handed to drq_brc.py and offline_brc_bc.py, and theirs to
    sac_brc.py: refused before the saved flags are read (they ended in a TypeError or in an
    argument-mismatch line that hid the real mistake)."""
    for writer, reader in [(sac_brc, drq_brc), (sac_brc, offline_brc_bc), (offline_brc_bc, sac_brc), (drq_brc, sac_brc)]:
        run_dir = tmp_path / f"{writer.__name__}-{reader.__name__}"
        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(writer.Args())))
        with pytest.raises(SystemExit) as exit_info:
            parse_args(reader.Args, ["--resume", str(run_dir)])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"error: --resume {run_dir}: its config.json has no --") and "another script" in err


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


# Every script's flags before the one-harness issue (commit bc804a2), and the ones it added: a
# refactor of the harness must not change a command line users have in their scripts.
FLAGS_BEFORE = {
    "sac_brc": (
        "--actor-depth --actor-width --batch-size --buffer-size --capture-video --checkpoint-interval "
        "--checkpoint-replay --depth --diagnostics --diagnostics-batch-size --embedding-dim --env-workers "
        "--eval-episodes --eval-interval --eval-protocol --gamma --help --init-buffer "
        "--init-buffer-per-task --init-from --init-temperature --learning-rate --learning-starts "
        "--log-interval --loss --mw-backend --no-capture-video --no-checkpoint-replay --no-diagnostics "
        "--no-overlap --no-track --num-atoms --num-devices --overlap --precision --resume --run-name "
        "--save-buffer --seed --shadowhand-assets --suite --task-conditioning --tasks --tau "
        "--temperature-learning-rate --total-steps --track --transfer-temperature --utd --v-max "
        "--video-tasks --weight-decay --width"
    ).split(),
    "drq_brc": (
        "--adam-eps --batch-size --buffer-size --capture-video --channels --checkpoint-interval "
        "--checkpoint-replay --clip-rewards --depth --embedding-dim --end-epsilon --epsilon-decay-steps "
        "--eval-episodes --eval-epsilon --eval-interval --gamma --help --learning-rate --learning-starts "
        "--log-interval --max-episode-steps --n-step --no-capture-video --no-checkpoint-replay "
        "--no-clip-rewards --no-overlap --no-terminal-on-life-loss --no-track --num-atoms --num-devices "
        "--overlap --precision --resume --run-name --seed --shift-pad --start-epsilon --suite --tasks "
        "--tau --terminal-on-life-loss --total-steps --track --utd --v-max --video-tasks --weight-decay "
        "--width"
    ).split(),
    "offline_brc_bc": (
        "--actor-depth --actor-width --batch-size --bc-weight --checkpoint-interval --dataset "
        "--dataset-info --depth --embedding-dim --env-workers --eval-episodes --eval-interval "
        "--eval-protocol --gamma --help --init-temperature --learning-rate --log-interval --loss "
        "--max-transitions-per-task --mw-backend --no-dataset-info --num-atoms --num-devices "
        "--num-updates --precision --prefetch --q-weight --resume --run-name --seed --shadowhand-assets "
        "--task-conditioning --tau --temperature-learning-rate --updates-per-call --v-max --weight-decay "
        "--width"
    ).split(),
    "transfer_embedding": (
        "--batch-size --budget --checkpoint --env-workers --eval-episodes --eval-protocol --help --mode "
        "--mw-backend --run-name --seed --shadowhand-assets --suite --tasks --tune-learning-rate "
        "--tune-steps"
    ).split(),
}
FLAGS_ADDED = {s: ["--checkpoint-minutes", "--keep-checkpoints"] for s in ("sac_brc", "drq_brc", "offline_brc_bc")}
FLAGS_ADDED["offline_brc_bc"] += ["--track", "--no-track"]  # RunArgs: every trainer can log to wandb
FLAGS_ADDED["transfer_embedding"] = ["--few-shot-criterion"]  # the paper's literal few-shot choice, as an option
for script in ("sac_brc", "offline_brc_bc", "transfer_embedding"):  # EnvArgs: layouts per episode, or frozen
    FLAGS_ADDED[script].append("--mw-layouts")


def help_flags(script: str) -> set[str]:
    """The flags on the option lines of `python <script>.py --help`."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    command = [sys.executable, str(REPO / f"{script}.py"), "--help"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    found = set()
    for line in out.splitlines():
        if m := re.match(r"^│ (?:-h, )?(--[a-z0-9-]+(?:, --[a-z0-9-]+)*)", line):
            found |= set(m.group(1).split(", "))
    return found


@pytest.mark.parametrize("script", sorted(FLAGS_BEFORE))
def test_every_script_keeps_its_flags(script):
    assert help_flags(script) == set(FLAGS_BEFORE[script]) | set(FLAGS_ADDED.get(script, []))


@pytest.mark.parametrize("script", sorted(FLAGS_BEFORE))
def test_help_gives_every_argument_a_text(script):
    Args = importlib.import_module(script).Args
    flags = help_flags(script)
    for field in dataclasses.fields(Args):
        assert f"--{field.name.replace('_', '-')}" in flags, field.name
        # a docstring line directly under the field in the class that declares it (the script's
        # Args, or RunArgs or EnvArgs in common/), which tyro turns into the help text
        owner = next(c for c in Args.__mro__ if field.name in c.__dict__.get("__annotations__", {}))
        after = inspect.getsource(owner).split(f"    {field.name}:", 1)[1].splitlines()[1].strip()
        assert after.startswith('"""') and len(after) > 10, f"{field.name} has no help text"
