"""What transfer starts from (paper Section 4, "Transfer learning"; docs/transfer.md), read and
checked before any network exists, on plain dicts and arrays: a multi-task run's checkpoint for
model transfer (`--init-from`) and a recorded dataset for data transfer (`--init-buffer`), and
the padded observation and action sizes the new run's networks then read."""

import json
import sys
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import numpy as np
from jaxtyping import Float, PyTree

from common.cli import missing_flags
from common.dataset import Dataset, DatasetError, index_dataset, load_dataset
from common.run import ConfigError, require_intact
from common.suites import TaskSpec, resolve_tasks

# The flags that fix the shapes or the meaning of a checkpoint's networks: they must match for --init-from.
NETWORK_FIELDS = ("width", "depth", "actor_width", "actor_depth", "embedding_dim", "num_atoms", "v_max",
                  "loss", "task_conditioning")  # fmt: skip


class Pretrained(NamedTuple):
    """--init-from: the checkpoint to start from and the tasks of the run that wrote it."""

    checkpoint: Path
    tasks: list[TaskSpec]
    obs_dim: int  # the padded sizes its networks read; the new tasks are read at them
    act_dim: int


class Transfer(NamedTuple):
    """What --init-from and --init-buffer bring to a run, and the sizes its networks read."""

    pretrained: Pretrained | None  # --init-from
    prior: Dataset | None  # --init-buffer
    obs_dim: int  # padded sizes: the checkpoint's, or the largest of the tasks' and the prior data's
    act_dim: int


def read_pretrained(config: dict, obs_dim: int, act_dim: int, defaults: dict | None = None) -> Pretrained:
    """The --init-from checkpoint of a run with flags `config`, after checking that the two runs'
    networks have the same shapes and the new tasks (`obs_dim`, `act_dim`) fit its inputs. A flag
    the checkpoint's config.json lacks (written before the flag existed) takes its value from
    `defaults`, the flags' defaults, as `--resume` reads an old config.json."""
    path = Path(config["init_from"])
    run_dir, ckpt = (path.parent.parent, path) if (path / "state.eqx").exists() else (path, None)
    if ckpt is None and (run_dir / "checkpoints" / "latest").exists():
        ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    if ckpt is None or not (run_dir / "config.json").exists():
        raise ConfigError(
            f"--init-from {path}: give a sac_brc.py run directory (config.json and checkpoints/latest) "
            "or one of its checkpoints/step_N folders"
        )
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except ValueError as error:
        raise ConfigError(f"--init-from {path}: its config.json cannot be read ({error})") from None
    if flags := missing_flags(saved, ("actor_width", "utd", "total_steps")):  # drq_brc, offline_brc_bc: not all three
        raise ConfigError(f"--init-from {path}: its config.json has no {flags}, which every sac_brc.py run "
                          "records: give a multi-task sac_brc.py run")  # fmt: skip
    saved = (defaults or {}) | saved
    diffs = [f"--{k.replace('_', '-')} {saved.get(k)!r} (checkpoint) vs {config[k]!r} (now)"
             for k in NETWORK_FIELDS if saved.get(k) != config[k]]  # fmt: skip
    if diffs:
        raise ConfigError(
            f"--init-from {path} has other networks than this run: {'; '.join(diffs)}. "
            "Pass the checkpoint's network flags (see its config.json)"
        )
    try:
        pre_tasks = resolve_tasks(saved.get("suite", ""), tuple(saved.get("tasks", ())))
    except ValueError as error:
        raise ConfigError(f"--init-from {path}: its config.json names unknown tasks ({error})") from None
    if len(pre_tasks) < 2 or saved["task_conditioning"] != "embedding":
        raise ConfigError(
            f"--init-from {path} is not a multi-task run with task embeddings; model transfer starts from one"
        )
    pre_obs, pre_act = network_sizes(saved, run_dir, pre_tasks)
    if obs_dim > pre_obs or act_dim > pre_act:
        raise ConfigError(
            f"these tasks need observations {obs_dim} / actions {act_dim}, more than the --init-from network "
            f"reads ({pre_obs} / {pre_act}); transfer to tasks no larger than the pretraining suite's"
        )
    require_intact(ckpt, "--init-from")
    return Pretrained(ckpt, pre_tasks, pre_obs, pre_act)


def launched_path(path: str, run_dir: Path) -> Path:
    """A path the run in `run_dir` was given: a relative one was relative to where it started,
    the parent of runs/."""
    return Path(path) if Path(path).is_absolute() else run_dir.resolve().parent.parent / path


def dataset_folder(path: Path) -> Path:
    """--init-buffer's dataset folder: `path` itself, or the --save-buffer folder that the run
    directory `path` recorded."""
    if not (path / "config.json").exists() or (path / "metadata.json").exists():
        return path
    try:
        run_config = json.loads((path / "config.json").read_text())
    except ValueError as error:
        raise ConfigError(f"--init-buffer {path}: its config.json cannot be read ({error})") from None
    saved = run_config.get("save_buffer")
    if not saved and run_config.get("dataset"):  # an offline_brc_bc.py run: its input is a dataset
        raise ConfigError(f"--init-buffer {path}: an offline_brc_bc.py run, trained on the dataset "
                          f"{run_config['dataset']}: pass --init-buffer {run_config['dataset']}")  # fmt: skip
    if not saved:
        raise ConfigError(f"--init-buffer {path}: that run did not record its data (run it with --save-buffer)")
    return launched_path(saved, path)


def network_sizes(saved: dict, run_dir: Path, tasks: list[TaskSpec]) -> tuple[int, int]:
    """The padded observation and action sizes that the networks of the sac_brc.py run in
    `run_dir` (flags `saved`, tasks `tasks`) read: read_transfer's rule applied to that run, so
    a run that itself transferred can be transferred from. Its tasks' largest sizes, or those of
    its own --init-from checkpoint, widened by its --init-buffer data's; those sources must
    still be where it found them."""
    obs_dim, act_dim = max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)

    def unreadable(flag: str, error: Exception) -> ConfigError:
        return ConfigError(
            f"{run_dir} was trained with --{flag.replace('_', '-')} {saved[flag]}, which fixes the input sizes of "
            f"its networks and cannot be read now ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            f"put it back where that run found it (relative to {run_dir.resolve().parent.parent})"
        )

    if saved.get("init_from"):
        path = launched_path(saved["init_from"], run_dir)
        source_dir = path.parent.parent if (path / "state.eqx").exists() else path
        try:
            config = json.loads((source_dir / "config.json").read_text())
            source_tasks = resolve_tasks(config.get("suite", ""), tuple(config.get("tasks", ())))
        except (OSError, ValueError) as error:  # ValueError: also a broken config.json
            raise unreadable("init_from", error) from None
        obs_dim, act_dim = network_sizes(config, source_dir, source_tasks)
    if saved.get("init_buffer"):
        try:
            index = index_dataset(dataset_folder(launched_path(saved["init_buffer"], run_dir)))
        except (OSError, ValueError, DatasetError) as error:
            raise unreadable("init_buffer", error) from None
        obs_dim, act_dim = max(obs_dim, index.obs_dim), max(act_dim, index.act_dim)
    return obs_dim, act_dim


def load_pretrained_state(pretrained: Pretrained, like: PyTree) -> PyTree:
    """The --init-from checkpoint's state, shaped as `like`."""
    try:
        return eqx.tree_deserialise_leaves(pretrained.checkpoint / "state.eqx", like)
    except Exception as error:  # noqa: BLE001 (any shape or structure mismatch)
        raise ConfigError(
            f"--init-from checkpoint {pretrained.checkpoint} does not match its config.json "
            f"({type(error).__name__}); use a checkpoint together with the config.json of the run that wrote it "
            "(one written before 2026-12-05 stores Linear weights (out, in) and cannot be loaded)"
        ) from None


def load_prior_data(config: dict) -> Dataset:
    """--init-buffer: a dataset folder (docs/dataset-format.md), or a run directory whose
    config.json names the --save-buffer folder it wrote; streamed into host memory chunk by
    chunk (at most --init-buffer-per-task random transitions per pretraining task), with G_i of
    each pretraining task from all of its episodes at this run's gamma."""
    folder = dataset_folder(Path(config["init_buffer"]))
    try:
        index = index_dataset(folder)
        prior = load_dataset(index, config["gamma"], config["init_buffer_per_task"], config["seed"],
                             fix="pass --init-buffer-per-task {fit} (or less) to keep a random subset")  # fmt: skip
    except DatasetError as error:
        raise ConfigError(f"--init-buffer {config['init_buffer']}: {error}") from None
    print(f"data transfer: {len(prior.reward):,} of {sum(index.sizes):,} transitions of "
          f"{', '.join(t.name for t in prior.tasks)} from {folder}")  # fmt: skip
    return prior


def prior_data(transfer: Transfer) -> tuple[tuple[np.ndarray, ...] | None, Float[np.ndarray, " prior_tasks"]]:
    """Data transfer's prior buffer (None without --init-buffer): obs, action, reward, next_obs,
    terminated (float) and the pretraining task of each transition, zero-padded to the run's
    sizes; and each pretraining task's G from its own episodes, which follow the new tasks' in
    the update's `max_abs_return`. Our choice (the paper and Ball et al. do not say;
    docs/transfer.md): each task's returns on the fixed support."""
    prior = transfer.prior
    if prior is None:
        return None, np.zeros(0, np.float32)
    pad = lambda x, dim: x if x.shape[1] == dim else np.pad(x, ((0, 0), (0, dim - x.shape[1])))
    obs_dim, act_dim = transfer.obs_dim, transfer.act_dim
    source = np.repeat(np.arange(len(prior.tasks), dtype=np.int32), np.diff(prior.offsets))
    arrays = (pad(prior.obs, obs_dim), pad(prior.action, act_dim), prior.reward, pad(prior.next_obs, obs_dim),
              prior.terminated.astype(np.float32), source)  # fmt: skip
    return arrays, np.array([s.max_abs_return for s in prior.stats], np.float32)


def warn_if_seen(tasks: list[TaskSpec], pretraining: list[TaskSpec], source: str) -> None:
    """A transfer run on tasks the pretraining saw is not a held-out result: say so."""
    seen = [t.name for t in tasks if t.name in {p.name for p in pretraining}]
    if seen:
        print(f"warning: target task(s) {', '.join(seen)} were pretraining tasks of {source}; "
              "results on them are not transfer to held-out tasks (paper Appendix E.2 splits)", file=sys.stderr)  # fmt: skip


def read_transfer(config: dict, tasks: list[TaskSpec], defaults: dict | None = None) -> Transfer:
    """The first half of transfer, for a run with flags `config` (and their `defaults`) on
    `tasks`: read and check the checkpoint and the prior data, and fix the padded sizes."""
    obs_dim, act_dim = max(t.obs_dim for t in tasks), max(t.act_dim for t in tasks)
    pretrained = read_pretrained(config, obs_dim, act_dim, defaults) if config["init_from"] else None
    prior = load_prior_data(config) if config["init_buffer"] else None
    if pretrained is not None:  # the suites' padding rule: the new tasks are read at the checkpoint's sizes
        obs_dim, act_dim = pretrained.obs_dim, pretrained.act_dim
        warn_if_seen(tasks, pretrained.tasks, f"--init-from {config['init_from']}")
    if prior is not None:
        obs_dim, act_dim = max(obs_dim, prior.obs.shape[1]), max(act_dim, prior.action.shape[1])
        if pretrained is not None and (obs_dim, act_dim) != (pretrained.obs_dim, pretrained.act_dim):
            raise ConfigError(
                f"--init-buffer {config['init_buffer']} has larger observations or actions than the --init-from "
                "checkpoint's network can read; use data from the checkpoint's suite"
            )
        warn_if_seen(tasks, prior.tasks, f"--init-buffer {config['init_buffer']}")
    return Transfer(pretrained, prior, obs_dim, act_dim)
