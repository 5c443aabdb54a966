"""One command for anyone with one GPU: how fast this code runs there, and whether it learns
MT50 as the paper's first published point says.

    python benchmarks/gpu_check.py --reference ~/BiggerRegularizedCategorical/results

prints one Markdown report (also written to `<out>/report.md`):
1. the device, JAX, jaxlib and the CUDA (or other platform) version;
2. the update alone (`sac_brc.py`'s jitted update, MT50 shapes, batch 1024) at `--width` in
   float32 and bfloat16: updates/s, and that as a fraction of the device's nominal dense
   matmul peak and of the matmul rate measured here on one large product; and the time of the
   loop's other device round trips per env step (act and the action's copy to the host, G's
   copy to the device, insert), each alone;
3. `sac_brc.py --suite mw --width 4096` from scratch to 25,000 env steps per task (float32,
   the published protocol, every default as a user gets it): env steps/s while training, as a
   fraction of what the update alone allows (updates/s / UTD);
4. its evaluation at 25k against the published curve at 25k: mean normalised score (MetaWorld:
   success rate) with its 95% bootstrap CI over seeds on both sides, computed by
   `plot.py --table`'s own code from `--reference`, the `results/` folder of the authors'
   repository (github.com/naumix/BiggerRegularizedCategorical).
With `--trace DIR`, also a profiler trace of three update calls per precision (open
`perfetto_trace.json.gz` in ui.perfetto.dev): where the update's time goes, kernel by kernel.

About 10 minutes on one H100/H200 with 16 CPU cores. Every size is a flag, so the same code
runs on one DMC-HARD or HumanoidBench task (`--suite dog-run`), and on a CPU at tiny sizes
(tests/test_gpu_check.py). Each part runs in its own process, so that JAX's preallocated GPU
memory of one part is free for the next.
"""

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def update_alone(width: int, batch: int, precision: str, calls: int, matmul_size: int, trace: str | None) -> dict:
    """Updates/s of sac_brc's jitted update at MT50 shapes, and the rates it is measured against
    (runs in a child process: `--part update`)."""
    import jax
    import jax.numpy as jnp

    from bench_scale import ACT_DIM, NUM_TASKS, OBS_DIM, filled_buffer, measured_matmul_tflops, nominal_peak
    from sac_brc import Args, make_agent, update_flops

    args = Args(width=width, batch_size=batch, precision=precision)
    matmul = measured_matmul_tflops(jnp.bfloat16 if precision == "bf16" else jnp.float32, matmul_size)
    start = time.perf_counter()
    state, fns = make_agent(args, NUM_TASKS, OBS_DIM, ACT_DIM, batch, jax.random.key(0))
    buffer = filled_buffer(fns)
    g = jnp.full(NUM_TASKS, 50.0)
    state, metrics = fns.update(state, buffer, g, jax.random.key(1))
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    for _ in range(2):  # warm: allocator and clocks
        state, metrics = fns.update(state, buffer, g, jax.random.key(1))
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = fns.update(state, buffer, g, jax.random.key(1))
    jax.block_until_ready((state, metrics))
    updates_per_s = calls * args.utd / (time.perf_counter() - start)
    if trace:  # a kernel-level trace of 3 calls, for perfetto (ui.perfetto.dev) or TensorBoard
        jax.profiler.start_trace(str(Path(trace) / precision), create_perfetto_trace=True)
        for _ in range(3):
            state, metrics = fns.update(state, buffer, g, jax.random.key(1))
        jax.block_until_ready((state, metrics))
        jax.profiler.stop_trace()
    tflops = update_flops(args, NUM_TASKS, OBS_DIM, ACT_DIM, batch) * updates_per_s / 1e12
    peak = nominal_peak(jax.devices()[0].device_kind)
    return {"precision": precision, "updates_per_s": updates_per_s, "tflops": tflops, "first_update_s": first,
            "of_nominal": tflops / peak[0 if precision == "bf16" else 1] if peak else None,
            "of_matmul": tflops / matmul, "matmul_tflops": matmul, "utd": args.utd,
            "loop_ms": loop_steps(state, fns, buffer)}  # fmt: skip


def loop_steps(state, fns, buffer, repeats: int = 100) -> dict[str, float]:
    """ms of each device round trip the training loop makes per env step besides the update,
    each alone on an idle device: what the update must hide."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bench_scale import ACT_DIM, NUM_TASKS, OBS_DIM

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(NUM_TASKS, OBS_DIM)).astype(np.float32)
    action = rng.uniform(-1, 1, (NUM_TASKS, ACT_DIM)).astype(np.float32)
    reward, done, task_ids = np.zeros(NUM_TASKS, np.float32), np.zeros(NUM_TASKS, bool), jnp.arange(NUM_TASKS)
    g = np.full(NUM_TASKS, 50.0, np.float32)
    replay = [buffer]

    def insert():  # the buffer is donated: keep the new one
        replay[0] = fns.insert(replay[0], obs, action, reward, obs, done)
        replay[0].size.block_until_ready()

    parts = {
        "act, the action copied to the host": lambda: np.asarray(fns.act(state, jnp.asarray(obs), task_ids, jax.random.key(0))),
        "G copied to the device": lambda: jnp.asarray(g).block_until_ready(),
        "insert (the transition copied to the device)": insert,
    }
    times = {}
    for name, part in parts.items():
        part()
        start = time.perf_counter()
        for _ in range(repeats):
            part()
        times[name] = (time.perf_counter() - start) / repeats * 1e3
    return times


def environment() -> dict:
    """Device and versions (runs in a child process: `--part env`)."""
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {"device": device.device_kind, "backend": jax.default_backend(), "devices": len(jax.devices()),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "platform_version": getattr(device.client, "platform_version", "?"), "cores": os.cpu_count()}  # fmt: skip


def child(part: str, cli) -> dict:
    """Runs one part in a fresh process and returns its JSON result."""
    command = [sys.executable, __file__, "--part", part, "--width", str(cli.width), "--batch", str(cli.batch),
               "--calls", str(cli.calls), "--matmul-size", str(cli.matmul_size or 0)]  # fmt: skip
    if cli.trace:
        command += ["--trace", str(Path(cli.trace).resolve())]
    out = subprocess.run(command + cli.part_args, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"error: {part} part failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def train(cli, run_dir: Path) -> tuple[list[float], float]:
    """sac_brc.py from scratch, its console to `<run_dir>.log`; returns the progress lines' env
    steps/s over the intervals of training after the first (which holds compilation) and the
    wall time."""
    command = [sys.executable, str(REPO / "sac_brc.py"), "--suite", cli.suite, "--width", str(cli.train_width),
               "--total-steps", str(cli.total_steps), "--learning-starts", str(cli.learning_starts),
               "--eval-interval", str(cli.eval_interval), "--log-interval", str(cli.log_interval),
               "--checkpoint-interval", str(cli.total_steps), "--no-checkpoint-replay",
               "--run-name", run_dir.name, *cli.train_args]  # fmt: skip
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as console:
        code = subprocess.run(command, cwd=run_dir.parent.parent, stdout=console, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"error: sac_brc.py exited {code}; its output: {log}\n" + log.read_text()[-2000:])
    # "step N/T | R steps/s": the rate of the interval that ends at step N; an evaluation runs
    # right after the line of its step, so it falls into the next interval
    rates = [(int(n), float(r)) for n, r in re.findall(r"step (\d+)/\d+ \| ([\d.]+) steps/s", log.read_text())]
    first_training_interval = cli.learning_starts + cli.log_interval
    training = [r for n, r in rates if n > first_training_interval and (n - cli.log_interval) % cli.eval_interval != 0]
    return training, seconds


def evaluation_protocol(config: dict) -> str:
    """How a run evaluated, from its config.json: the protocol and episodes, and for MetaWorld
    tasks the layouts and backend."""
    from common.suites import resolve_tasks

    line = f"This run: --eval-protocol {config['eval_protocol']}, --eval-episodes {config['eval_episodes']}"
    if any(task.domain == "metaworld" for task in resolve_tasks(config["suite"], tuple(config["tasks"]))):
        line += f", MetaWorld --mw-layouts {config['mw_layouts']} on --mw-backend {config['mw_backend']}"
    return line + "."


def published_comparison(cli, run_dir: Path) -> list[str]:
    """How this run evaluated, then the aggregate rows of `plot.py --table` for it against
    --reference."""
    import plot

    protocol = evaluation_protocol(json.loads((run_dir / "config.json").read_text()))
    args = plot.Args(runs=(str(run_dir),), out=str(run_dir / "plots"), reference=cli.reference, table=True,
                     reference_interval=cli.reference_interval)  # fmt: skip
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." lines
            plot.main(args)
    except plot.PlotError as error:  # e.g. --reference without this suite's curves
        return [protocol, "", f"No comparison: {error}"]
    table = (run_dir / "plots" / "table.md").read_text().splitlines()
    start = next((i for i, line in enumerate(table) if line.startswith("Ours:")), None)
    if start is None:
        return [protocol, "", "No published curve for this run's tasks under --reference."]
    end = next((i for i, line in enumerate(table) if line.startswith("Per task")), len(table))
    return [protocol, "", *table[start:end]]


def refuse(message: str) -> None:
    """Bad input: one line, exit 2 (as the scripts and plot.py do)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Report:
    """The report's lines, printed and rewritten to `<out>/report.md` as each part ends: a check
    stopped part-way (a time limit, a lost machine) keeps what it measured."""

    def __init__(self, path: Path):
        self.path, self.lines = path, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines += lines
        print("\n".join(lines), flush=True)
        self.path.write_text("\n".join(self.lines) + "\n")


def report(cli) -> None:
    # refuse bad input before minutes of measuring, not after
    if cli.reference and not Path(cli.reference).is_dir():
        refuse(f"--reference {cli.reference} is not a directory: give the results/ folder of a clone of "
               "github.com/naumix/BiggerRegularizedCategorical")
    run_dir = Path(cli.out).resolve() / "runs" / f"{cli.suite}__w{cli.train_width}__gpu_check"
    if cli.total_steps and run_dir.exists():
        refuse(f"{run_dir} exists from an earlier check; remove it or give another --out")
    env = child("env", cli)
    out = Report(Path(cli.out) / "report.md")
    out.add("# GPU check", "",
            f"{env['device']} ({env['backend']}, {env['devices']} device(s) visible, the first used), "
            f"{env['cores']} CPU cores; JAX {env['jax']}, jaxlib {env['jaxlib']}, platform {env['platform_version']}; "
            f"{time.strftime('%Y-%m-%d')}.", "")  # fmt: skip
    alone = {}
    if cli.precisions:
        out.add(f"## The update alone (MT50 shapes, width {cli.width}, batch {cli.batch}, {cli.calls} timed calls)", "",
                "| precision | updates/s | TFLOP/s | of nominal peak | of measured matmul rate (TFLOP/s) | first update s |",
                "|---|---|---|---|---|---|")  # fmt: skip
        for precision in cli.precisions:
            cli.part_args = ["--part-precision", precision]
            r = alone[precision] = child("update", cli)
            nominal = f"{r['of_nominal']:.1%}" if r["of_nominal"] is not None else "n/a (unknown device)"
            out.add(f"| {precision} | {r['updates_per_s']:.1f} | {r['tflops']:.3g} | {nominal} "
                    f"| {r['of_matmul']:.1%} ({r['matmul_tflops']:.3g}) | {r['first_update_s']:.0f} |")  # fmt: skip
        first = alone[cli.precisions[0]]
        out.add("", f"Each device round trip of one env step besides the update, alone on an idle device ({cli.precisions[0]}; "
                f"one update call, {first['utd']} updates, takes {1e3 * first['utd'] / first['updates_per_s']:.2f} ms): "
                + "; ".join(f"{name} {ms:.3f} ms" for name, ms in first["loop_ms"].items()) + ".", "")  # fmt: skip
    if cli.total_steps:
        rates, seconds = train(cli, run_dir)
        out.add(f"## `sac_brc.py --suite {cli.suite} --width {cli.train_width}` to {cli.total_steps:,} steps per task "
                f"({' '.join(cli.train_args) or 'defaults'})", "")  # fmt: skip
        given = " ".join(cli.train_args).replace("=", " ").split()
        precision = given[given.index("--precision") + 1] if "--precision" in given[:-1] else "f32"
        if rates:
            rate = sorted(rates)[len(rates) // 2]
            line = (f"Env steps per task per second while training: median {rate:.1f} over {len(rates)} intervals "
                    f"of {cli.log_interval} steps (range {min(rates):.1f}-{max(rates):.1f}), the compiling interval "
                    "and evaluations left out")  # fmt: skip
            if precision in alone and cli.width == cli.train_width:
                allowed = alone[precision]["updates_per_s"] / alone[precision]["utd"]
                line += f"; the update alone (MT50 shapes) allows {allowed:.1f}: end to end is {rate / allowed:.0%} of it"
            hours = 1e6 / rate / 3600
            out.add(line + f". 1M steps per task at this rate: {hours:.1f} h.", "")
        else:
            out.add("Too few training intervals for a rate: give more --total-steps.", "")
        out.add(f"Wall time of the run: {seconds / 60:.1f} min (start-up, random steps, compilation and evaluation included).", "")
        if cli.reference:
            out.add("### Evaluation against the published curve (`plot.py --table`)", "", *published_comparison(cli, run_dir), "")
        out.add(f"Run directory: {run_dir}")


def main() -> None:
    # no abbreviations: sac_brc.py's own flags (--precision) must pass through, not match ours (--precisions)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--reference", help="published curves: the authors' repository's results/ folder")
    parser.add_argument("--out", default=str(REPO / "runs" / "gpu-check"), help="where the run and report.md go")
    parser.add_argument("--width", type=int, default=4096, help="critic width of the update-alone part")
    parser.add_argument("--batch", type=int, default=1024, help="minibatch of the update-alone part (MT50's)")
    parser.add_argument("--precisions", nargs="*", default=["f32", "bf16"], choices=["f32", "bf16"],
                        help="update-alone precisions (none: skip the part)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=50, help="timed update calls (UTD updates each)")
    parser.add_argument("--matmul-size", type=int, default=None, help="the matmul-rate probe's size (default 8192 on GPU, 1024 on CPU)")
    parser.add_argument("--suite", default="mw", help="training part: sac_brc.py --suite (a suite or one task)")
    parser.add_argument("--train-width", type=int, default=4096, help="training part: critic width")
    parser.add_argument("--total-steps", type=int, default=25_000, help="training part: env steps per task (0: skip)")
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--eval-interval", type=int, default=25_000)
    parser.add_argument("--log-interval", type=int, default=1_000)
    parser.add_argument("--reference-interval", type=int, default=25_000,
                        help="env steps between two points of a published curve (25k: the published MT50 data)")  # fmt: skip
    parser.add_argument("--trace", help="also write a profiler trace of 3 update calls per precision to this folder")
    parser.add_argument("--part", choices=["env", "update"], help=argparse.SUPPRESS)
    parser.add_argument("--part-precision", default="f32", help=argparse.SUPPRESS)
    cli, extra = parser.parse_known_args()
    cli.train_args = extra  # anything else goes to sac_brc.py as it is (e.g. --precision bf16, --env-workers 8)
    cli.part_args = []
    if cli.part == "env":
        print(json.dumps(environment()))
    elif cli.part == "update":
        import jax

        size = cli.matmul_size or (8192 if jax.default_backend() != "cpu" else 1024)
        print(json.dumps(update_alone(cli.width, cli.batch, cli.part_precision, cli.calls, size, cli.trace)))
    else:
        report(cli)


if __name__ == "__main__":
    main()
