"""common/run.py: the console clock, the checkpoint schedule, and the first SIGTERM or SIGINT caught, the
second not."""

import json
import os
import signal
import sys
import types

import pytest

from common import run
from common.run import CheckpointSchedule, StopSignal, clock


def test_checkpoint_schedule_by_steps_at_the_end_and_by_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: now[0])
    schedule = CheckpointSchedule(interval=100, last_step=250, minutes=30.0)
    assert [s for s in range(1, 251) if schedule.due(s)] == [100, 200, 250]
    now[0] += 30 * 60 - 1
    assert not schedule.due(7)
    now[0] += 1  # 30 minutes since the last one
    assert schedule.due(7)
    schedule.written()
    assert not schedule.due(8)
    never = CheckpointSchedule(interval=100, last_step=250, minutes=0.0)
    now[0] += 1e6
    assert not never.due(7) and never.due(100)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_is_caught_and_the_second_acts(signum, code, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/sac_brc.py"])  # the script the message names
    before = signal.getsignal(signum)
    stop = StopSignal()
    try:
        assert stop.received is None
        os.kill(os.getpid(), signum)
        assert stop.received == signum
        assert signal.getsignal(signum) is before  # a second one acts as without StopSignal
        stopped = stop.stopped(1234, "runs/x")
        assert stopped.code == code
        assert str(stopped) == (f"stopped by {signal.Signals(signum).name} at step 1234: checkpoint written; "
                                "continue with python sac_brc.py --resume runs/x")  # fmt: skip
    finally:
        stop.restore()
    assert signal.getsignal(signum) is before


def test_a_negative_flag_is_named_alone_with_its_value():
    args = types.SimpleNamespace(depth=2, seed=-1, learning_starts=0)
    with pytest.raises(run.ConfigError, match=r"^--seed must be >= 0, got -1$"):
        run.check_nonnegative(args, "depth", "learning_starts", "seed")
    run.check_nonnegative(args, "depth", "learning_starts")  # zero is allowed


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"v_max": float("nan")}, "--v-max must be positive, got nan"),  # nan > 0 is False: caught
        ({"v_max": float("inf")}, "--v-max must be positive, got inf"),
        ({"weight_decay": float("nan")}, "--weight-decay must be >= 0, got nan"),
        ({"gamma": 1.0}, "--gamma must be in (0, 1), got 1.0"),
        ({"tau": 0.0}, "--tau must be in (0, 1] (1: copy the critic), got 0.0"),
        ({"tau": 2.0}, "--tau must be in (0, 1] (1: copy the critic), got 2.0"),
    ],
)
def test_float_flags_refuse_nan_infinity_and_out_of_range(flags, message):
    args = types.SimpleNamespace(**({"v_max": 10.0, "weight_decay": 0.0, "gamma": 0.99, "tau": 1.0} | flags))
    with pytest.raises(run.ConfigError) as info:
        run.check_positive(args, "v_max")
        run.check_nonnegative(args, "weight_decay")
        run.check_discount_and_tau(args)
    assert str(info.value) == message


def test_track_without_wandb_is_refused_with_the_flags(monkeypatch):
    """Refused while the flags are checked, before the run directory exists: a run name is never
    taken by a run that could not start."""
    found = run.importlib.util.find_spec
    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None if name == "wandb" else found(name))
    with pytest.raises(run.ConfigError, match="--track needs wandb: pip install wandb"):
        run.check_run_args(run.RunArgs(track=True))
    run.check_run_args(run.RunArgs(track=False))


def test_console_clock_by_hand():
    seconds = (0.0, 59.9, 60.0, 185.2, 3599.0, 3600.0, 7620.0, 90_000.0)
    assert [clock(s) for s in seconds] == ["0s", "59s", "1m00s", "3m05s", "59m59s", "1h00m", "2h07m", "25h00m"]


def test_the_evaluation_line_names_its_numbers(tmp_path, capsys):
    run_dir = run.RunDir(types.SimpleNamespace(track=False), tmp_path, False, 100, None)
    record = {"step": 100, "tasks": {"reach": {"return": 1191.06, "success": 0.2, "score": 0.2},
                                     "cheetah-run": {"return": 23.25, "success": None, "score": 0.023}}}  # fmt: skip
    run_dir.log_evaluation(record, "eval step 100: mean score 0.112 (paper App. E.3)")
    assert capsys.readouterr().out.strip() == ("eval step 100: mean score 0.112 (paper App. E.3) | "
                                              "reach: return 1191.1, success 0.20; cheetah-run: return 23.2")  # fmt: skip
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == record
