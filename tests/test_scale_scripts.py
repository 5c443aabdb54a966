"""Speed and scale options of drq_brc.py and offline_brc_bc.py, as tests/test_scale.py checks
them for sac_brc.py: bf16 against float32, data parallel on 2 CPU devices against 1, and
one clear message for a bad --num-devices."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drq_brc
import offline_brc_bc as off
from conftest import REPO
from test_offline_brc_bc import toy_dataset, write_tiny_dataset

DRQ_TINY = {"channels": (4, 8, 8), "width": 16, "num_atoms": 11, "batch_size": 8, "utd": 2}
OFF_TINY = {"width": 32, "actor_width": 16, "num_atoms": 11, "batch_size": 16, "updates_per_call": 2}


def flat(model) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


def drq_one_update(args: drq_brc.Args, num_tasks: int = 2):
    """State after one update call (UTD 2) on a fixed 2-game buffer, and its metrics."""
    state, fns = drq_brc.make_agent(args, num_tasks, jax.random.key(0))
    buffer = fns.replicate(drq_brc.replay_buffer_init(num_tasks, 32))
    rng = np.random.default_rng(0)
    for step in range(24):
        frame = rng.integers(0, 256, (num_tasks, 84, 84)).astype(np.uint8)
        buffer = fns.insert(buffer, frame, rng.integers(0, 18, num_tasks).astype(np.int32),
                            rng.normal(size=num_tasks).astype(np.float32), rng.random(num_tasks) < 0.1,
                            np.zeros(num_tasks, bool), np.full(num_tasks, step == 0),
                            np.ones(num_tasks, bool))  # fmt: skip
    state, metrics = fns.update(state, buffer, jnp.asarray([1.0, 0.5]), jax.random.key(1))
    return state, {k: float(v) for k, v in metrics.items()}


def off_one_update(args: off.Args):
    """State after one update call on fixed batches (placed as the BatchStream places them)."""
    state, fns = off.make_agent(args, [2, 1], 3, jax.random.key(0))
    batches = fns.shard_batches(off.sample_batches(toy_dataset(), args.batch_size, args.updates_per_call, 0, 0))
    state, metrics = fns.update(state, batches, jnp.array([5.0, 2.0]), jax.random.key(1))
    devices = len(batches.obs.sharding.device_set)
    return state, {k: float(v) for k, v in metrics.items()}, devices


@pytest.mark.slow
def test_drq_bf16_loss_gradient_and_update_close_to_f32():
    """Stated tolerance: with bf16 convolutions and matmuls the cross-entropy loss is within 1e-2
    (relative) of float32 and its gradient within 5% (relative L2); one update call's loss
    within 1e-2 (relative) and its mean max Q within 1e-2 * v_max."""
    args = drq_brc.Args(**DRQ_TINY)
    q = drq_brc.QNetwork(2, args, jax.random.key(0))
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.integers(0, 256, (8, 4, 84, 84)), jnp.uint8)
    task = jnp.asarray(rng.integers(0, 2, 8), jnp.int32)
    action = jnp.asarray(rng.integers(0, 18, 8), jnp.int32)
    target = jax.nn.softmax(jnp.asarray(rng.normal(size=(8, args.num_atoms)), jnp.float32))

    def loss(q, precision):
        view = drq_brc.precision_view(q, precision)
        logits = jax.vmap(view)(obs, task)
        assert logits.dtype == jnp.float32  # softmax and loss stay in float32
        if precision == "bf16":
            assert view.hidden[0].weight.dtype == view.encoder.convs[0].weight.dtype == jnp.bfloat16
            assert view.norm.weight.dtype == view.task_embedding.dtype == jnp.float32
        chosen = logits[jnp.arange(8), action]
        return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(chosen), -1))

    (loss32, grad32), (loss16, grad16) = (jax.value_and_grad(loss)(q, p) for p in ("f32", "bf16"))
    g32, g16 = flat(grad32), flat(grad16)
    assert g16.dtype == np.float32  # gradients reach the float32 master weights
    assert abs(float(loss16) - float(loss32)) < 1e-2 * abs(float(loss32))
    assert np.linalg.norm(g16 - g32) < 0.05 * np.linalg.norm(g32)

    state32, metrics32 = drq_one_update(drq_brc.Args(**DRQ_TINY))
    state16, metrics16 = drq_one_update(drq_brc.Args(**DRQ_TINY, precision="bf16"))
    assert state16.q.head.weight.dtype == jnp.float32  # master weights stay float32
    assert abs(metrics16["loss"] - metrics32["loss"]) < 1e-2 * abs(metrics32["loss"])
    assert abs(metrics16["q"] - metrics32["q"]) < 1e-2 * drq_brc.Args().v_max


def test_offline_bf16_update_close_to_f32():
    """Stated tolerance: one update call's critic, actor and BC losses with a bf16 critic
    within 1e-2 (relative) of float32; Q within 1e-2 * v_max."""
    state32, metrics32, _ = off_one_update(off.Args(**OFF_TINY))
    state16, metrics16, _ = off_one_update(off.Args(**OFF_TINY, precision="bf16"))
    assert flat(state16.critic).dtype == np.float32
    for name in ("critic_loss", "actor_loss", "bc_loss", "entropy"):
        assert abs(metrics16[name] - metrics32[name]) < 1e-2 * abs(metrics32[name]), name
    assert abs(metrics16["q_mean"] - metrics32["q_mean"]) < 1e-2 * off.Args().v_max


def test_data_parallel_updates_match_single_device(tmp_path):
    """The same update on 2 CPU devices (batch sharded, parameters replicated) and on 1, for
    both scripts, in a subprocess that sees 2 host devices."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        import jax
        assert len(jax.devices()) == 2, jax.devices()
        import drq_brc, offline_brc_bc as off
        from test_scale_scripts import DRQ_TINY, OFF_TINY, drq_one_update, flat, off_one_update
        replicated = lambda tree: all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(tree)
                                      if hasattr(leaf, "sharding"))
        out = {{}}
        for n in (1, 2):
            state, metrics = drq_one_update(drq_brc.Args(**DRQ_TINY, num_devices=n))
            out[f"drq{{n}}"] = dict(params=flat(state.q).tolist(), metrics=metrics, replicated=replicated(state),
                                    devices=len(state.q.head.weight.sharding.device_set))
            state, metrics, batch_devices = off_one_update(off.Args(**OFF_TINY, num_devices=n))
            out[f"off{{n}}"] = dict(params=(flat(state.critic).tolist() + flat(state.actor).tolist()),
                                    metrics=metrics, replicated=replicated(state), batch_devices=batch_devices,
                                    devices=len(state.critic.members.head.weight.sharding.device_set))
        json.dump(out, open({str(tmp_path / "out.json")!r}, "w"))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["off2"]["batch_devices"] == 2  # the streamed batches arrive sharded
    for script_name in ("drq", "off"):
        one, two = out[f"{script_name}1"], out[f"{script_name}2"]
        assert (one["devices"], two["devices"]) == (1, 2), script_name
        assert two["replicated"], script_name  # parameters and optimiser state stay replicated
        np.testing.assert_allclose(two["params"], one["params"], rtol=1e-4, atol=1e-6, err_msg=script_name)
        for name, value in one["metrics"].items():
            assert two["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (script_name, name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, argv, message, two_devices",
    [
        ("drq_brc.py", ["--suite", "pong", "--num-devices", "3"],
         "--num-devices must be between 1 and the 1 visible device(s), got 3", False),
        ("drq_brc.py", ["--suite", "pong", "--num-devices", "0"], "--num-devices must be between 1", False),
        ("drq_brc.py", ["--suite", "pong", "--num-devices", "2", "--batch-size", "7"],
         "the batch (7) must split evenly across 2 devices", True),
        ("offline_brc_bc.py", ["--dataset", "data", "--num-devices", "2"],
         "--num-devices must be between 1 and the 1 visible device(s), got 2", False),
        ("offline_brc_bc.py", ["--dataset", "data", "--num-devices", "2", "--batch-size", "33"],
         "the batch (33) must split evenly across 2 devices", True),
    ],
)  # fmt: skip
def test_bad_num_devices_gives_one_clear_message(run, tmp_path, monkeypatch, script, argv, message, two_devices):
    if two_devices:
        monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    if script == "offline_brc_bc.py":
        write_tiny_dataset(tmp_path / "data", n=100)
    out = run(script, *argv)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr[-2000:]


@pytest.mark.slow
def test_drq_bf16_without_overlap_end_to_end(run, tmp_path):
    """The bf16 path through the whole run (acting, evaluation, update) with overlap off; the
    default run of tests/test_drq_brc.py covers overlap on."""
    out = run(
        "drq_brc.py", "--tasks", "pong", "--channels", "4", "8", "8", "--width", "16", "--num-atoms", "11",
        "--batch-size", "8", "--precision", "bf16", "--no-overlap", "--num-devices", "1",
        "--learning-starts", "40", "--total-steps", "60", "--eval-interval", "60", "--eval-episodes", "1",
        "--max-episode-steps", "30", "--log-interval", "30", "--run-name", "bf16",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "runs/bf16/metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 60 and np.isfinite(record["loss"])
