"""README.md and docs/ stay honest where a machine can check them: every flag a documented
command passes to one of the scripts exists in that script's `--help`, and every relative link
points at a file of the repository."""

import re
from functools import cache
from pathlib import Path

import pytest

from tests.test_cli import help_flags

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCRIPTS = ("sac_brc", "drq_brc", "offline_brc_bc", "transfer_embedding", "plot")


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(script, flags) of every `python <script>.py ...` in the page's code blocks and inline
    code, a backslash-continued line joined, stopping at `#`, `|`, `&&`, `;` or `)`."""
    found = []
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for m in re.finditer(rf"python (?:\S*/)?({'|'.join(SCRIPTS)})\.py([^#|&;)]*)", line):
                found.append((m.group(1), re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", m.group(2))))
    return found


@cache
def flags_of(script: str) -> frozenset[str]:
    return frozenset(help_flags(script))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_flag_exists(page):
    wrong = [f"python {script}.py {flag}" for script, flags in commands(page.read_text())
             for flag in flags if flag not in flags_of(script)]  # fmt: skip
    assert not wrong, f"{page.name} passes flags its script does not have: {wrong}"


def test_the_check_sees_a_misspelt_flag():
    (script, flags), = commands("```bash\npython sac_brc.py --suite mw \\\n    --widht 4096  # MT50\n```")
    assert script == "sac_brc" and flags == ["--suite", "--widht"]
    assert "--widht" not in flags_of("sac_brc") and "--width" in flags_of("sac_brc")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)]
    broken = [t for t in links if t and not re.match(r"[a-z]+:", t) and not (page.parent / t).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"
