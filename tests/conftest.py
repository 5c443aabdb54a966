import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(*argv: str, cwd: Path, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `python <script> argv...` in `cwd` (runs/ lands there) and capture its output. No time
    limit by default: the work is bounded by the arguments, and pytest's global timeout
    (pyproject.toml) is the hang guard, far above any test on a busy machine."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(REPO / argv[0]), *argv[1:]],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def donated_inputs(jitted, *args, platform: str = "cuda") -> set[int]:
    """The flattened inputs of `jitted(*args)` that its program, lowered for `platform`, marks to
    be written over by an output (donated and aliased). JAX lowers for CUDA without a GPU."""
    text = jitted.trace(*args).lower(lowering_platforms=(platform,)).as_text()
    signature = re.search(r"func\.func public @main\((.*?)\) ->", text, re.DOTALL).group(1)
    return {int(arg) for arg in re.findall(r"%arg(\d+): [^%]*?tf\.aliasing_output = \d+", signature)}


@pytest.fixture
def run(tmp_path):
    return lambda *argv, **kw: run_script(*argv, cwd=tmp_path, **kw)


def signal_when(*argv: str, cwd: Path, line_start: str, signum: int) -> tuple[int, str]:
    """Start `python <script> argv...` in `cwd`, send `signum` to it and every process it started
    (as a scheduler does to a job) once a line of its output starts with `line_start`, and return
    its exit code and whole output (stdout and stderr together)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, str(REPO / argv[0]), *argv[1:]],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines = []
    for line in process.stdout:  # ends when the script exits, if the line never comes
        lines.append(line)
        if line.startswith(line_start):
            os.killpg(process.pid, signum)
            break
    lines += process.stdout.readlines()
    return process.wait(), "".join(lines)


def stopped_at(code: int, output: str, script: str, unit: str = "step") -> tuple[int, Path]:
    """Where a run stopped on SIGTERM: the step (or update) and run directory of its one line,
    after checking it exited 143."""
    line = re.search(rf"stopped by SIGTERM at {unit} (\d+): checkpoint written; continue with "
                     rf"python {script} --resume (\S+)", output)  # fmt: skip
    assert code == 143 and line, output[-3000:]
    return int(line.group(1)), Path(line.group(2))
