"""sac_brc.py: jitted entry points, CLI, run directory, resume, bad input, learning."""

import json
import re
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sac_brc
from common.cli import parse_args
from common.envs import env_seeds
from common.run import restore_ring
from conftest import donated_inputs, signal_when, stopped_at
from sac_brc import Args, make_agent, replay_buffer_init, resolve_batch_size

TINY = ["--width", "32", "--actor-width", "32", "--num-atoms", "21", "--batch-size", "64"]


def test_jitted_entry_points_trace_once():
    """act, act_deterministic, insert and update compile once for a run: a retrace would be a silent slowdown."""
    args = Args(width=32, actor_width=16, num_atoms=11, batch_size=8, utd=2)
    num_tasks, obs_dim, act_dim = 3, 5, 2
    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, resolve_batch_size(args, num_tasks), jax.random.key(0))
    buffer = replay_buffer_init(num_tasks, 16, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    task_ids = jnp.arange(num_tasks)
    for step in range(3):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        action = np.asarray(fns.act(state, jnp.asarray(obs), task_ids, jax.random.key(step)))
        buffer = fns.insert(
            buffer, obs, action, rng.normal(size=num_tasks).astype(np.float32), obs,
            rng.random(num_tasks) < 0.5,
        )  # fmt: skip
        state, metrics = fns.update(
            state, buffer, jnp.asarray(rng.random(num_tasks) + 1, jnp.float32), jax.random.key(1)
        )
        fns.act_deterministic(state, jnp.asarray(obs), task_ids)
    assert np.isfinite(float(metrics["critic_loss"]))
    assert int(state.step) == 3 * args.utd
    for name, fn in fns._asdict().items():
        if name in ("replicate", "update_on"):  # not jitted; not used in training (next test)
            continue
        assert fn._cache_size() == 1, f"{name} compiled {fn._cache_size()} times"


def test_update_is_update_on_its_sampled_minibatches_and_noise():
    """`update` = draw `utd` minibatches and noises, then `update_on` them: the entry point that
    benchmarks/one_update_check.py feeds the authors' batch and noise through is the update."""
    args = Args(width=32, actor_width=16, num_atoms=11, batch_size=8, utd=2)
    num_tasks, obs_dim, act_dim = 2, 3, 2
    batch_size = resolve_batch_size(args, num_tasks)
    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, batch_size, jax.random.key(0))
    buffer = replay_buffer_init(num_tasks, 16, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    for _ in range(10):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        buffer = fns.insert(buffer, obs, rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
                            rng.normal(size=num_tasks).astype(np.float32), obs, np.zeros(num_tasks, bool))  # fmt: skip
    max_abs_return = jnp.asarray([3.0, 7.0])
    for call in range(2):
        key = jax.random.key(call)
        keys = jax.random.split(jax.random.fold_in(key, state.step), (args.utd, 2))
        batches = jax.vmap(lambda k: sac_brc.sample(buffer, batch_size, k))(keys[:, 0])
        noises = jax.vmap(lambda k: sac_brc.sample_noise(batch_size, act_dim, k))(keys[:, 1])
        by_update_on, metrics_on = fns.update_on(state, batches, noises, max_abs_return)
        # another minibatch gives another update
        other = fns.update_on(state, jax.tree.map(lambda x: x[::-1], batches), noises, max_abs_return)[0]
        by_update, metrics = fns.update(state, buffer, max_abs_return, key)  # last: it donates `state`
        for a, b in zip(jax.tree.leaves(by_update), jax.tree.leaves(by_update_on)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert metrics.keys() == metrics_on.keys()
        assert not np.allclose(np.asarray(other.actor.mean_head.weight), np.asarray(by_update.actor.mean_head.weight))
        state = by_update
    assert fns.update_on._cache_size() == 1


def read_metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_continues_from_that_step(run, tmp_path):
    """A preempted run (SIGTERM mid-interval) finishes its step, checkpoints and exits 143 with a
    line naming --resume; the resumed run loses no step, update or stored transition."""
    # reach: MetaWorld's envs run in worker processes, which the signal reaches too
    common = [*TINY, "--tasks", "reach", "--learning-starts", "100", "--utd", "2", "--eval-interval",
              "100000", "--eval-episodes", "1", "--log-interval", "50", "--checkpoint-interval", "100000",
              "--run-name", "preempted"]  # fmt: skip
    code, output = signal_when("sac_brc.py", *common, "--total-steps", "100000", cwd=tmp_path,
                               line_start="step 200/", signum=signal.SIGTERM)  # fmt: skip
    run_dir = tmp_path / "runs" / "preempted"
    step, named = stopped_at(code, output, "sac_brc.py")
    assert step >= 200 and named == Path("runs/preempted")
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "latest").read_text() == f"step_{step:09d}"
    assert json.loads((ckpt / f"step_{step:09d}" / "host.json").read_text())["env_step"] == step
    assert np.load(ckpt / f"step_{step:09d}" / "replay.npz")["size"].tolist() == [step]

    total = step + 100
    resumed = run("sac_brc.py", "--resume", str(run_dir), "--total-steps", str(total))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}; replay buffer restored" in resumed.stdout
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [total]  # the final evaluation, once
    assert records[-1]["updates"] == (total - 100) * 2  # every step after learning-starts: UTD updates
    assert np.load(ckpt / f"step_{total:09d}" / "replay.npz")["size"].tolist() == [total]


@pytest.mark.slow
def test_end_to_end_run_and_resume(run, tmp_path):
    common = [*TINY, "--tasks", "reach,cartpole-swingup", "--learning-starts", "100", "--eval-interval", "150",
              "--eval-episodes", "2", "--eval-protocol", "layouts", "--log-interval", "50", "--checkpoint-interval", "150",
              "--run-name", "e2e"]  # fmt: skip
    first = run("sac_brc.py", *common, "--total-steps", "300")
    assert first.returncode == 0, first.stderr[-3000:]
    progress = [line for line in first.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in progress] == ["50/300", "100/300", "150/300", "200/300", "250/300", "300/300"]
    for line in progress[:2]:  # random steps only: no learning rate to extrapolate yet
        assert re.search(r" \| \d+s elapsed( \||$)", line) and "ETA" not in line, line
    for line in progress[2:]:
        assert re.search(r" \| \d+(s|m\d\ds) elapsed, ETA \d+(s|m\d\ds)( \||$)", line), line
    assert progress[-1].split("ETA ")[1].startswith("0s")
    run_dir = tmp_path / "runs" / "e2e"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["width"] == 32 and config["tasks"] == ["reach", "cartpole-swingup"]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [150, 300]
    assert set(records[-1]["tasks"]) == {"reach", "cartpole-swingup"}
    reach, cartpole = records[-1]["tasks"]["reach"], records[-1]["tasks"]["cartpole-swingup"]
    assert reach["score"] == reach["success"]  # MetaWorld's score is the success rate (paper E)
    assert cartpole["score"] == pytest.approx(cartpole["return"] / 1000)  # DMC's is return / 1000
    assert records[-1]["eval_protocol"] == "layouts"
    assert records[-1]["tasks"]["cartpole-swingup"]["success"] is None
    assert np.isfinite(records[-1]["critic_loss"])
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "latest").read_text() == "step_000000300"
    assert {p.name for p in (ckpt / "step_000000300").iterdir()} == {"state.eqx", "replay.npz", "host.json",
                                                                   "manifest.json"}  # fmt: skip
    assert not list(ckpt.glob(".tmp*")) and [p.name for p in sorted(ckpt.glob("step_*"))] == [
        "step_000000150", "step_000000300"]  # the newest --keep-checkpoints 2  # fmt: skip

    at_300 = json.loads((ckpt / "step_000000300" / "host.json").read_text())["normalizer"]
    resumed = run("sac_brc.py", "--resume", str(run_dir), "--total-steps", "450")  # the rest from config.json
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout and "at step 300; replay buffer restored" in resumed.stdout
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [150, 300, 450]
    # config.json records the latest launch: a bare --resume (a requeued job) keeps --total-steps 450
    assert json.loads((run_dir / "config.json").read_text()) == config | {"total_steps": 450, "resume": str(run_dir)}
    host = json.loads((ckpt / "step_000000450" / "host.json").read_text())
    assert host["env_step"] == 450
    # the checkpoint fell mid-episode (cartpole: step 300 of 1,000): on resume the cut episode ends
    # as truncated (bootstrapped with mean reward / (1 - gamma)), and the next one starts its own
    cut = at_300["current_rewards"][1]
    assert len(cut) == 300 and not at_300["episode_ended"][1]
    tail, g_cut = np.mean(cut) / (1 - config["gamma"]), 0.0
    for reward in reversed(cut):
        tail = reward + config["gamma"] * tail
        g_cut = max(g_cut, abs(tail))
    at_450 = host["normalizer"]
    assert len(at_450["current_rewards"][1]) == 150 and at_450["episode_ended"][1]
    assert at_450["max_abs_return"][1] == pytest.approx(g_cut, rel=1e-9)

    other = run("sac_brc.py", "--resume", str(run_dir), "--width", "64", "--total-steps", "600")
    assert other.returncode == 2
    assert other.stderr.strip().startswith("error: cannot resume") and "--width 32" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert (ckpt / "latest").read_text() == "step_000000450"  # nothing written by the refused run
    shorter = run("sac_brc.py", "--resume", str(run_dir), "--total-steps", "400")  # refused at loading
    assert shorter.returncode == 2 and "resume with --total-steps of at least 450" in shorter.stderr
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 450  # not the refused 400


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "mw-hard-typo"], "unknown suite 'mw-hard-typo' (did you mean dmc-hard?). Valid suites: mw, dmc-dogs"),
        (["--tasks", "reach,cheetah-sprint"], "unknown task(s) cheetah-sprint (did you mean cheetah-run, "),
        (["--suite", "reach", "--width", "0"], "--width must be positive, got 0"),
        (["--suite", "reach", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--suite", "reach", "--learning-rate", "-3e-4"], "--learning-rate must be positive, got -0.0003"),
        (["--suite", "reach", "--tau", "2"], "--tau must be in (0, 1]"),
        (["--suite", "reach", "--resume", "runs/nothing-here"], "--resume runs/nothing-here: no such directory"),
        (["--suite", "reach", "--resume", "."], "--resume .: no config.json there"),
        (["--suite", "reach", "--init-buffer-per-task", "5"], "pass --init-buffer too"),
        (["--suite", "reach", "--num-devices", "3"], "--num-devices must be between 1 and the 1 visible"),
        (["--suite", "reach", "--checkpoint-minutes", "-1"], "--checkpoint-minutes must be >= 0"),
        (["--suite", "reach", "--mw-backend", "envpool", "--mw-layouts", "frozen"],
         "--mw-layouts frozen needs --mw-backend metaworld"),
    ],
)
def test_bad_input_gives_one_clear_message(run, argv, message):
    out = run("sac_brc.py", *argv)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr[-2000:]


@pytest.mark.slow
def test_replay_that_cannot_fit_is_refused_before_compiling(run):
    out = run(
        "sac_brc.py",
        "--suite",
        "mw",
        "--width",
        "32",
        "--buffer-size",
        "100000000",
        "--total-steps",
        "100000000",
    )
    assert out.returncode == 2
    assert "Use --buffer-size" in out.stderr and "GiB" in out.stderr


@pytest.mark.parametrize("loss, conditioning", [("mse", "embedding"), ("ce", "heads"), ("mse", "heads")])
def test_ablations_update_and_act(loss, conditioning):
    """--loss mse and --task-conditioning heads (paper Figures 5 and 6) train end to end."""
    args = Args(
        width=16, actor_width=16, num_atoms=11, batch_size=8, loss=loss, task_conditioning=conditioning
    )
    num_tasks, obs_dim, act_dim = 2, 4, 2
    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, resolve_batch_size(args, num_tasks), jax.random.key(0))
    assert (state.critic.task_embedding is None) == (conditioning == "heads")
    buffer = replay_buffer_init(num_tasks, 8, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    for _ in range(4):
        obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
        buffer = fns.insert(buffer, obs, rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32),
                            np.ones(num_tasks, np.float32), obs, np.zeros(num_tasks, bool))  # fmt: skip
    before = np.asarray(state.critic.members.head.weight)  # a copy: update donates the state
    state, metrics = fns.update(state, buffer, jnp.ones(num_tasks), jax.random.key(1))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert not np.allclose(before, state.critic.members.head.weight)  # the critic moved
    action = fns.act_deterministic(state, jnp.asarray(obs), jnp.arange(num_tasks))
    assert action.shape == (num_tasks, act_dim) and np.all(np.abs(np.asarray(action)) <= 1)


@pytest.mark.parametrize("width, noted", [(2048, True), (4096, True), (128, False)])
def test_the_gpu_setting_on_a_cpu_is_named_in_one_line(capsys, width, noted):
    """`python sac_brc.py` with no flags on a CPU starts the paper's width-4096 run: the sizes
    printed first say so, and name the quick start (the run goes on)."""
    args = Args(suite="reach", width=width)
    tasks = sac_brc.resolve_tasks("reach")
    transfer = sac_brc.Transfer(None, None, tasks[0].obs_dim, tasks[0].act_dim)
    sac_brc.print_plan(args, tasks, 1000, 256, transfer, jax.random.key(0))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == int(noted)
    if noted:
        assert f"--width {width} is the paper's GPU setting" in notes[0] and "--width 128" in notes[0]


def test_replay_restored_in_order_into_a_larger_buffer(tmp_path):
    """Resuming with a larger --total-steps grows the capacity; a full (wrapped) ring buffer
    must come back oldest-first, with the next insert right after the newest transition."""
    num_tasks, capacity, obs_dim, act_dim = 2, 5, 1, 1
    buffer = replay_buffer_init(num_tasks, capacity, obs_dim, act_dim)
    insert = jax.jit(sac_brc.insert)
    short = replay_buffer_init(num_tasks, capacity, obs_dim, act_dim)
    for t in range(7):  # task 0 wraps: stores 0..6, keeps 2..6
        value = np.full((num_tasks, obs_dim), t, np.float32)
        buffer = insert(buffer, value, value[:, :act_dim], value[:, 0], value, np.zeros(2, bool))
        if t < 2:
            short = insert(short, value, value[:, :act_dim], value[:, 0], value, np.zeros(2, bool))
    # task 1 stored only 0, 1 (a prefilled buffer can hold fewer transitions for some tasks)
    buffer = jax.tree.map(lambda full, part: full.at[1].set(part[1]), buffer, short)
    np.savez(
        tmp_path / "replay.npz",
        **{f: np.asarray(getattr(buffer, f)) for f in ("obs", "action", "reward", "next_obs", "terminated")},
        position=np.asarray(buffer.position), size=np.asarray(buffer.size),
    )  # fmt: skip
    bigger = restore_ring(tmp_path / "replay.npz", replay_buffer_init(num_tasks, 8, obs_dim, act_dim))
    np.testing.assert_array_equal(np.asarray(bigger.obs[0, :5, 0]), [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(np.asarray(bigger.obs[1, :2, 0]), [0, 1])
    np.testing.assert_array_equal(np.asarray(bigger.size), [5, 2])
    np.testing.assert_array_equal(np.asarray(bigger.position), [5, 2])
    with pytest.raises(sac_brc.ConfigError, match="resume with --total-steps of at least 5"):
        restore_ring(tmp_path / "replay.npz", replay_buffer_init(num_tasks, 4, obs_dim, act_dim))


@pytest.mark.slow
@pytest.mark.parametrize("overlap, learning_starts", [(True, 150), (False, 150), (True, 0)])
def test_every_step_stores_one_transition_per_task_and_runs_utd_updates(tmp_path, monkeypatch, overlap, learning_starts):
    """The ref. code's step count: N steps of a MetaWorld and a DMC task store N transitions per
    task (reach's 200-step episode ends inside the run and resets within its step), and the
    learner makes one call of `utd` updates per step from `learning_starts` on, each on a buffer
    that holds data (--learning-starts 0 with --overlap included)."""
    total = 260
    seen = []  # transitions per task in the buffer at each update call

    def recording_make_agent(*a, **kw):
        state, fns = make_agent(*a, **kw)

        def update(state, buffer, *rest):
            seen.append(np.asarray(buffer.size).tolist())
            return fns.update(state, buffer, *rest)

        return state, fns._replace(update=update)

    monkeypatch.setattr(sac_brc, "make_agent", recording_make_agent)
    monkeypatch.chdir(tmp_path)
    args = Args(tasks=("reach", "cartpole-swingup"), width=32, actor_width=32, num_atoms=21, batch_size=64,
                total_steps=total, learning_starts=learning_starts, eval_interval=total, eval_episodes=1,
                log_interval=130, overlap=overlap, run_name="steps")  # fmt: skip
    sac_brc.main(args)
    run_dir = tmp_path / "runs" / "steps"
    replay = np.load(run_dir / "checkpoints" / "step_000000260" / "replay.npz")
    np.testing.assert_array_equal(replay["size"], [total, total])
    first = learning_starts + (0 if overlap else 1)  # overlap: sampled before the step's insert
    expected = [[max(n, 1)] * 2 for n in range(first, first + total - learning_starts)]
    assert seen == expected, (seen[:3], expected[:3])
    record = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert record["updates"] == (total - learning_starts) * args.utd
    assert (record["eval_protocol"], record["mw_backend"], record["mw_layouts"]) == ("published", "metaworld", "per-episode")


@pytest.mark.slow
def test_a_resumed_run_trains_on_envs_with_new_seeds(tmp_path, monkeypatch):
    """Env states are not checkpointed, so a resumed run starts its envs afresh: its training envs
    get seeds of their own (not a replay of the layouts and initial states the run began with),
    and its evaluation starts over as the run did."""
    opened = []

    class RecordingEnv(sac_brc.MultiTaskEnv):
        def __init__(self, *a, role, **kw):
            super().__init__(*a, role=role, **kw)
            opened.append((role, self.seeds.tolist()))

    monkeypatch.setattr(sac_brc, "MultiTaskEnv", RecordingEnv)
    monkeypatch.chdir(tmp_path)
    sac_brc.main(Args(tasks=("cartpole-swingup",), width=32, actor_width=32, num_atoms=21, batch_size=16, seed=3,
                      total_steps=60, learning_starts=40, eval_interval=60, eval_episodes=1, log_interval=60,
                      checkpoint_interval=60, run_name="resumed"))  # fmt: skip
    sac_brc.main(parse_args(Args, ["--resume", "runs/resumed", "--total-steps", "80", "--eval-interval", "80"]))
    train = [seeds for role, seeds in opened if role == "train"]
    evaluation = [seeds for role, seeds in opened if role == "eval"]
    assert train == [env_seeds(3, "train", 1, 1).tolist(), env_seeds(3, "train", 1, 1, start_step=60).tolist()]
    assert train[0] != train[1]
    assert evaluation == [env_seeds(3, "eval", 1, 1).tolist()] * 2


def test_compiled_update_writes_the_new_state_over_the_old():
    """The update donates its state: in the compiled program every state leaf (the first
    parameters) is aliased to an output, so the parameters, their target and the Adam moments
    are updated in place instead of being copied into new buffers at every call."""
    args = Args(width=32, actor_width=16, num_atoms=11, batch_size=8, utd=2)
    num_tasks, obs_dim, act_dim = 2, 3, 2
    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, resolve_batch_size(args, num_tasks), jax.random.key(0))
    buffer = replay_buffer_init(num_tasks, 16, obs_dim, act_dim)
    text = fns.update.lower(state, buffer, jnp.ones(num_tasks), jax.random.key(1)).compile().as_text()
    header = re.search(r"input_output_alias=\{(.*)", text)  # on the HloModule line: {output}: (parameter, ...)
    assert header, "no input_output_alias in the compiled update: nothing is donated"
    aliased = {int(p) for p in re.findall(r"\{[\d,]*\}: \((\d+),", header.group(1))}
    num_leaves = len(jax.tree.leaves(state))
    assert set(range(num_leaves)) <= aliased, f"state leaves not aliased: {sorted(set(range(num_leaves)) - aliased)}"
    assert num_leaves not in aliased  # the replay buffer (the next parameter) is read, not consumed


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_the_update_lowers_for_a_gpu_with_its_state_donated(precision):
    """What a GPU run compiles, checked on a CPU: JAX lowers the update for CUDA without a GPU,
    so a construct with no GPU lowering fails here, and every state leaf is marked to alias an
    output (the GPU's XLA then writes the new state over the old, as the CPU's does above)."""
    args = Args(width=32, actor_width=16, num_atoms=11, batch_size=8, utd=2, precision=precision)
    state, fns = make_agent(args, 2, 3, 2, 8, jax.random.key(0))
    donated = donated_inputs(fns.update, state, replay_buffer_init(2, 16, 3, 2), jnp.ones(2), jax.random.key(1))
    assert donated == set(range(len(jax.tree.leaves(state))))  # the state, and not the replay buffer after it


def test_compiled_update_keeps_critic_activations_in_one_layout():
    """Each critic member gets its own copy of the input (`Critic.__call__`), so XLA's CPU
    backend never copies or transposes a (members, batch, width) activation between layouts;
    with one shared input it did 44-48 times per update call (1.19x the time at batch 1024)."""
    width, batch = 32, 8
    args = Args(width=width, actor_width=16, num_atoms=11, batch_size=batch, utd=2)
    state, fns = make_agent(args, 2, 3, 2, batch, jax.random.key(0))
    text = fns.update.lower(state, replay_buffer_init(2, 16, 3, 2), jnp.ones(2), jax.random.key(1)).compile().as_text()
    activation = rf"= f32\[2,{batch},{width}\]\{{[\d,]*\}}"
    assert re.search(activation, text), "the pattern no longer matches XLA's text: the check would see nothing"
    moved = re.findall(activation + r" (?:copy|transpose)\(", text)
    assert not moved, f"{len(moved)} activations change layout in the compiled update"
