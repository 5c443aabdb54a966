import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(*argv: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python <script> argv...` in `cwd` (runs/ lands there) and capture its output."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(REPO / argv[0]), *argv[1:]],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def run(tmp_path):
    return lambda *argv, **kw: run_script(*argv, cwd=tmp_path, **kw)
