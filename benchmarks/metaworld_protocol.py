"""The two checks behind the default MetaWorld protocol, a new layout per episode
(docs/suites.md, "MetaWorld: the published protocol"):

    python benchmarks/metaworld_protocol.py fractions --reference ~/BiggerRegularizedCategorical/results
    python benchmarks/metaworld_protocol.py determinism

`fractions`: the share of the published MetaWorld evaluations (task, seed, point) strictly
between 0 and 1. With one frozen layout per eval env, a deterministic env and a deterministic
policy, each would be 0 or 1.

`determinism`: whether the `metaworld` this interpreter imports is deterministic: for each
task, one goal-observable env (frozen layout, as the authors' train.py builds it), its
scripted expert closed-loop for `--episodes` episodes, each after `reset(seed=...)` with a
new seed as their loop does; a task whose episodes differ is listed (`--layouts per-episode`,
sac_brc.py's default, makes every episode differ). For the published
curves' v2, put a checkout of Farama-Foundation/Metaworld at 83ac03ca (the last commit whose
`metaworld.envs` has the v2 goal-observable envs) first on PYTHONPATH, with mujoco==2.3.7
(the version it pins; on MuJoCo 3 its experts fail 17 tasks). Exit status 1 if any
task's episodes differ.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

EPISODE = 200  # MetaWorld episodes are truncated at 200 steps (paper Appendix E)


def fractions(reference: Path) -> int:
    root = reference / "metaworld"
    variants = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    if not variants:
        print(f"error: no metaworld/<variant>/ folders under {reference}; give the authors' results/ folder",
              file=sys.stderr)  # fmt: skip
        return 2
    print("| variant | tasks | evaluations (task, seed, point) | strictly between 0 and 1 |")
    print("|---|---|---|---|")
    for variant in variants:
        arrays = [np.load(f) for f in sorted(variant.glob("*.npy"))]
        values = np.concatenate([a.ravel() for a in arrays])
        between = int(((values > 0) & (values < 1)).sum())
        print(f"| {variant.name} | {len(arrays)} | {values.size} | {between} ({between / values.size:.1%}) |")
    return 0


def goal_observable_envs() -> tuple[dict, str]:
    """The installed metaworld's goal-observable constructors by task name, and its version tag."""
    try:
        from metaworld.envs import ALL_V2_ENVIRONMENTS_GOAL_OBSERVABLE as constructors

        version = "v2"
    except ImportError:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as constructors

        version = "v3"
    suffix = f"-{version}-goal-observable"
    return {key[: -len(suffix)]: constructors[key] for key in constructors}, version


def expert(task: str, version: str):
    from metaworld import policies

    name = "Sawyer" + "".join(w.capitalize() for w in task.split("-")) + f"{version.upper()}Policy"
    name = name.replace("PegInsertSide", "PegInsertionSide")  # the one policy named apart from its task
    return getattr(policies, name)()


def determinism(tasks: list[str] | None, episodes: int, seed: int, layouts: str) -> int:
    constructors, version = goal_observable_envs()
    unknown = sorted(set(tasks or ()) - set(constructors))
    if unknown:
        print(f"error: unknown task(s) {', '.join(unknown)}; known: {', '.join(sorted(constructors))}",
              file=sys.stderr)  # fmt: skip
        return 2
    rng = np.random.default_rng(seed)
    differ = []
    for task in tasks or sorted(constructors):
        env, policy = constructors[task](seed=seed), expert(task, version)
        if layouts == "per-episode":  # as common/envs.py's _MetaWorldEnv
            env._freeze_rand_vec, env.seeded_rand_vec = False, True
        trajectories, successes = [], []
        for _ in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(0, 10**8)))
            observations, success = [obs], False
            for _ in range(EPISODE):
                obs, _, _, _, info = env.step(np.clip(policy.get_action(obs), -1, 1))
                observations.append(obs)
                success |= bool(info["success"])
            trajectories.append(np.stack(observations))
            successes.append(success)
        env.close()
        gap = max(float(np.abs(t - trajectories[0]).max()) for t in trajectories)
        print(f"{task}: expert success {sum(successes)}/{episodes}, largest difference from episode 1 {gap:.3g}")
        if gap > 0:
            differ.append(task)
    listed = f": {', '.join(differ)}" if differ else ""
    print(f"metaworld {version}, {layouts} layouts: {len(differ)} task(s) whose episodes differ{listed}")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    f = commands.add_parser("fractions", help="published evaluations strictly between 0 and 1")
    f.add_argument("--reference", required=True, type=Path, help="the authors' repository's results/ folder")
    d = commands.add_parser("determinism", help="are one frozen-layout env's expert episodes identical?")
    d.add_argument("--tasks", help="comma-separated task names without version (default: all 50)")
    d.add_argument("--episodes", type=int, default=3)
    d.add_argument("--seed", type=int, default=7, help="the env's seed (its layout) and the reset seeds' stream")
    d.add_argument("--layouts", choices=("frozen", "per-episode"), default="frozen")
    cli = parser.parse_args(argv)
    if cli.command == "fractions":
        return fractions(cli.reference)
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")  # the experts' own gains
    tasks = [t for t in cli.tasks.split(",") if t] if cli.tasks else None
    return determinism(tasks, cli.episodes, cli.seed, cli.layouts)


if __name__ == "__main__":
    sys.exit(main())
