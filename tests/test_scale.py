"""Speed and scale options of sac_brc.py: bf16, data parallel, FLOP count, overlap."""

import itertools
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

from common.bronet import Linear
from conftest import REPO
from sac_brc import Args, Critic, make_agent, precision_view, replay_buffer_init, resolve_batch_size, update_flops

NUM_TASKS, OBS_DIM, ACT_DIM = 3, 10, 4


def one_update(args: Args):
    """Initial state, state after one update call on a fixed buffer, and its metrics."""
    state, fns = make_agent(args, NUM_TASKS, OBS_DIM, ACT_DIM, resolve_batch_size(args, NUM_TASKS), jax.random.key(0))
    buffer = fns.replicate(replay_buffer_init(NUM_TASKS, 64, OBS_DIM, ACT_DIM))
    rng = np.random.default_rng(0)
    for _ in range(64):
        obs = rng.normal(size=(NUM_TASKS, OBS_DIM)).astype(np.float32)
        action = rng.uniform(-1, 1, (NUM_TASKS, ACT_DIM)).astype(np.float32)
        reward = rng.normal(size=NUM_TASKS).astype(np.float32)
        buffer = fns.insert(buffer, obs, action, reward, obs, rng.random(NUM_TASKS) < 0.1)
    new_state, metrics = fns.update(state, buffer, jnp.full(NUM_TASKS, 20.0), jax.random.key(1))
    return state, new_state, {k: float(v) for k, v in metrics.items()}


def flat(model) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


def test_bf16_critic_gradient_and_update_close_to_f32():
    """Stated tolerance: with bf16 matmuls the critic loss is within 1e-3 and its gradient
    within 2% (relative L2) of float32; one full update call's losses within 1e-2."""
    args = Args(width=256, actor_width=32, batch_size=128)
    critic = Critic(OBS_DIM, ACT_DIM, NUM_TASKS, args, jax.random.key(0))
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(128, OBS_DIM)), jnp.float32)
    action = jnp.asarray(rng.uniform(-1, 1, (128, ACT_DIM)), jnp.float32)
    task = jnp.asarray(rng.integers(0, NUM_TASKS, 128), jnp.int32)
    target = jax.nn.softmax(jnp.asarray(rng.normal(size=(128, args.num_atoms)), jnp.float32))

    def loss(critic, precision):
        logits = precision_view(critic, precision)(obs, action, task)
        assert logits.dtype == jnp.float32  # softmax and loss stay in float32
        return -jnp.mean(jnp.sum(target[:, None] * jax.nn.log_softmax(logits), -1))

    (loss32, grad32), (loss16, grad16) = (jax.value_and_grad(loss)(critic, p) for p in ("f32", "bf16"))
    g32, g16 = flat(grad32), flat(grad16)
    assert abs(float(loss16) - float(loss32)) < 1e-3 * abs(float(loss32))
    assert np.linalg.norm(g16 - g32) < 0.02 * np.linalg.norm(g32)
    assert flat(grad16).dtype == np.float32  # gradients reach the float32 master weights

    _, _, metrics32 = one_update(Args(width=256, actor_width=32, batch_size=128))
    _, _, metrics16 = one_update(Args(width=256, actor_width=32, batch_size=128, precision="bf16"))
    for name in ("critic_loss", "actor_loss", "entropy"):
        assert abs(metrics16[name] - metrics32[name]) < 1e-2 * abs(metrics32[name]), name


def test_data_parallel_update_matches_single_device(tmp_path):
    """The same update on 2 CPU devices (batch sharded, parameters replicated) and on 1."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        import jax
        assert len(jax.devices()) == 2, jax.devices()
        from sac_brc import Args
        from test_scale import flat, one_update
        out = {{}}
        for n in (1, 2):
            before, after, metrics = one_update(Args(width=64, actor_width=32, batch_size=64, num_devices=n))
            replicated = all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(after) if hasattr(leaf, "sharding"))
            out[n] = dict(critic=flat(after.critic).tolist(), actor=flat(after.actor).tolist(), metrics=metrics,
                          devices=len(jax.tree.leaves(after.critic)[0].sharding.device_set), replicated=replicated)
        json.dump(out, open({str(tmp_path / "out.json")!r}, "w"))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    one, two = out["1"], out["2"]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["replicated"]  # parameters and optimiser states stay replicated
    # The shards' gradients are summed in another order. Where a gradient is within float
    # error of zero, Adam's normalised step g / sqrt(v) amplifies that into any fraction of a
    # learning rate, so a few parameters may differ by up to lr (one of 53,802 did on JAX
    # 0.12); every other one agrees to float rounding.
    lr = Args().learning_rate
    for name in ("critic", "actor"):
        difference = np.abs(np.asarray(two[name]) - np.asarray(one[name]))
        assert difference.max() < lr, name
        assert np.mean(difference > 1e-6 + 1e-4 * np.abs(one[name])) < 1e-3, name
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, rel=1e-5), name


def test_update_flops_match_xla_cost_analysis():
    """The FLOPs counted from the shapes agree with XLA's own count of the compiled CPU update
    (which also counts the elementwise work left out of ours, a few percent at this width)."""
    for args, num_tasks in ((Args(width=512, actor_width=64, batch_size=64), 3), (Args(width=512, depth=1, batch_size=32), 1)):
        batch_size = resolve_batch_size(args, num_tasks)
        state, fns = make_agent(args, num_tasks, OBS_DIM, ACT_DIM, batch_size, jax.random.key(0))
        buffer = replay_buffer_init(num_tasks, 8, OBS_DIM, ACT_DIM)
        cost = fns.update.lower(state, buffer, jnp.ones(num_tasks), jax.random.key(1)).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        ours = update_flops(args, num_tasks, OBS_DIM, ACT_DIM, batch_size)  # XLA counts the scan body once
        assert 0.9 < ours / cost["flops"] < 1.02, (ours, cost["flops"])


def test_update_flops_count_the_networks_built():
    """update_flops counts the matmuls of the networks make_agent builds, for every conditioning,
    one or more tasks, and a one-task --init-from learner (which keeps the embedding input)."""
    linears = lambda m: [l for l in jax.tree.leaves(m, is_leaf=lambda x: isinstance(x, Linear))
                         if isinstance(l, Linear)]  # fmt: skip
    for conditioning, num_tasks, init_from in itertools.product(("embedding", "heads"), (1, 3), (None, "pretrain")):
        args = Args(width=64, actor_width=32, batch_size=16, task_conditioning=conditioning, init_from=init_from)
        state, _ = make_agent(args, num_tasks, OBS_DIM, ACT_DIM, 16, jax.random.key(0))
        critic_macs = sum(l.weight.size for l in linears(state.critic)) // 2  # one of the two members
        actor_macs = sum(l.weight.size for l in linears(state.actor))
        built = 2 * 16 * (6 * 2 * critic_macs + 4 * actor_macs)
        assert update_flops(args, num_tasks, OBS_DIM, ACT_DIM, 16) == built, (conditioning, num_tasks, init_from)


@pytest.mark.slow
def test_bf16_without_overlap_end_to_end(run, tmp_path):
    out = run(
        "sac_brc.py", "--tasks", "cartpole-swingup,cheetah-run", "--width", "32", "--actor-width", "32",
        "--num-atoms", "21", "--batch-size", "64", "--precision", "bf16", "--no-overlap", "--num-devices", "1",
        "--learning-starts", "50", "--total-steps", "120", "--eval-interval", "120", "--eval-episodes", "1",
        "--log-interval", "60", "--run-name", "bf16",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "memory plan per device:" in out.stdout and "GFLOP of matmuls" in out.stdout
    record = json.loads((tmp_path / "runs/bf16/metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 120 and np.isfinite(record["critic_loss"])
