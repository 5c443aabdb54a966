"""What a forker gets: no reference to a file outside the repository, and common/ standing on
its own (it imports no script, so any script can be copied out with common/ alone)."""

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"sac_brc", "drq_brc", "offline_brc_bc", "transfer_embedding", "plot", "benchmarks"}
# notes a forker does not have, and absolute paths of one machine
OUTSIDE = re.compile(r"\b(STYLE|DESIGN)\.md\b|(?<![\w.-])notes/[\w-]+\.md|\bshared/reference\b|(?<![\w.])/work/")


def tracked_text_files() -> list[Path]:
    """git's tracked files; in a copy without .git (a release archive), every file outside
    hidden folders and runs/."""
    if (REPO / ".git").exists():
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    else:
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
        names = [n for n in names if not any(part.startswith(".") or part == "runs" for part in Path(n).parts[:-1])]
        names += [".ci/run"] if (REPO / ".ci/run").exists() else []
    return [REPO / n for n in names if n.endswith((".py", ".md", ".toml", ".txt", ".cff")) or n == ".ci/run"]


def test_no_reference_outside_the_repository():
    found = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_pattern_finds_what_it_should():
    for line in ["see STYLE.md 7", "(DESIGN.md)", "notes/jax-cpu-facts.md", "../shared/reference/x", "/work/a"]:
        assert OUTSIDE.search(line), line
    for line in ["docs/reproducing.md", "release-notes/v1.md", "common/run.py", "a/work/b"]:
        assert not OUTSIDE.search(line), line


def test_common_imports_no_script():
    for path in sorted((REPO / "common").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in SCRIPTS, f"{path.name} imports {name}"


def test_flag_help_is_one_line_so_the_help_screen_can_wrap_it():
    """tyro keeps a field docstring's line breaks in --help, so a docstring wrapped in the source
    prints as ragged half lines; every field's help is one line and tyro wraps it."""
    wrapped = []
    for path in sorted([*REPO.glob("*.py"), *REPO.glob("common/*.py"), *REPO.glob("benchmarks/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for field, doc in zip(node.body, node.body[1:]):
                    text = doc.value.value if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) else None
                    if isinstance(field, ast.AnnAssign) and isinstance(text, str) and "\n" in text.strip():
                        wrapped.append(f"{path.relative_to(REPO)}: {node.name}.{ast.unparse(field.target)}")
    assert not wrapped, wrapped
