"""The command line of the training scripts: tyro, plus `--resume RUN_DIR` on its own.

With `--resume RUN_DIR`, the run's config.json supplies every default, so `--resume RUN_DIR`
alone continues the run as it was started and any flag given overrides its saved value;
each script's main then refuses a flag outside its RESUMABLE_FIELDS that differs from the
checkpoint's, as it always has.
"""

import dataclasses
import json
import sys
from pathlib import Path

import tyro


def own_flags_first(args_class: type) -> type:
    """A dataclass decorator: the class's own fields before those it inherits (RunArgs, EnvArgs),
    so that --help and config.json start with the script's method flags."""
    own = args_class.__dict__.get("__annotations__", {})
    fields = args_class.__dataclass_fields__
    inherited = {name: field for name, field in fields.items() if name not in own}
    args_class.__dataclass_fields__ = {name: fields[name] for name in own} | inherited
    return args_class


def resume_dir_in(argv: list[str]) -> str | None:
    """The value of the last `--resume DIR` or `--resume=DIR` in argv, if any."""
    found = None
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--resume="):
            found = arg.split("=", 1)[1]
    return found


# Flags added after runs were started without them: the value such a run has, so that its
# config.json resumes it as it ran.
ADDED_FLAGS = {"mw_layouts": "frozen"}


def missing_flags(saved: dict, names) -> str | None:
    """The flags among `names` (a script's fields) that a run's config.json `saved` lacks, as
    '--a, --b, --c, ...'; None when it has them all, as every run of that script does (the
    flags of ADDED_FLAGS aside)."""
    missing = [name for name in names if name not in saved and name not in ADDED_FLAGS]
    return ", ".join(f"--{name.replace('_', '-')}" for name in missing[:3]) + ", ..." * (len(missing) > 3) or None


def saved_config(run_dir: Path) -> dict:
    """A run directory's config.json, with ADDED_FLAGS' values where it predates them."""
    return ADDED_FLAGS | json.loads((Path(run_dir) / "config.json").read_text())


def saved_args(args_class: type, run_dir: Path):
    """The Args a run directory's config.json records (JSON lists back to tuples; fields this
    version no longer has are dropped, fields it added keep their defaults but ADDED_FLAGS')."""
    saved = saved_config(run_dir)
    known = {f.name for f in dataclasses.fields(args_class)}
    return args_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})


def parse_args(args_class: type, argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    resume = resume_dir_in(argv)
    default = None
    if resume is not None and (Path(resume) / "config.json").exists():  # else main says what is wrong
        try:
            flags = missing_flags(saved_config(Path(resume)), [f.name for f in dataclasses.fields(args_class)])
            if flags:
                print(f"error: --resume {resume}: its config.json has no {flags}, which every "
                      f"{Path(sys.argv[0]).name} run records: another script wrote it; resume it with that one",
                      file=sys.stderr)  # fmt: skip
                sys.exit(2)
            default = dataclasses.replace(saved_args(args_class, Path(resume)), resume=resume)
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            print(f"error: --resume {resume}: its config.json cannot be read ({error}); "
                  "give a run directory this script wrote", file=sys.stderr)  # fmt: skip
            sys.exit(2)
    return tyro.cli(args_class, args=argv, default=default)
