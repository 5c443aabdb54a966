"""README.md and docs/ stay honest where a machine can check them: every flag a documented
command passes to one of the scripts exists in that script's `--help`, and every relative link
points at a file of the repository and, with a `#fragment`, at one of that page's headings."""

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


def anchor(heading: str) -> str:
    """GitHub's id for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path, _, fragment = target.partition("#")
        if re.match(r"[a-z]+:", target):
            continue
        linked = page.parent / path if path else page
        if not linked.exists() or (fragment and linked.suffix == ".md" and fragment not in anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = broken_links(page)
    assert not broken, f"{page.name} links to missing files or headings: {broken}"


def test_the_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    assert anchor("MT50 at the paper's scale") == "mt50-at-the-papers-scale"
    assert anchor("`sac_brc.py`: SAC + BRC") == "sac_brcpy-sac--brc"
    (tmp_path / "a.md").write_text("# Set up\n\n## Resume, preemption and faults\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#resume-preemption-and-faults) [ok](#top) [no](a.md#resume) [no](c.md)\n\n# Top\n")
    assert broken_links(page) == ["a.md#resume", "c.md"]
