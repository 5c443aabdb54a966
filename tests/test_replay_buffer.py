"""sac_brc.py's replay buffer (init, ring-buffer insert, uniform sampling) vs NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np

import sac_brc

# Eager JAX compiles every primitive separately (slow on CPU)
insert = jax.jit(sac_brc.insert)


def bool_(x):
    return jnp.asarray(np.array(x, bool))


def test_replay_buffer_init():
    buf = sac_brc.replay_buffer_init(3, 5, 4, 2)
    assert buf.obs.shape == (3, 5, 4) and buf.next_obs.shape == (3, 5, 4)
    assert buf.action.shape == (3, 5, 2)
    assert buf.reward.shape == (3, 5) and buf.terminated.shape == (3, 5)
    np.testing.assert_array_equal(np.asarray(buf.position), [0, 0, 0])
    np.testing.assert_array_equal(np.asarray(buf.size), [0, 0, 0])
    assert float(jnp.abs(buf.obs).sum()) == 0.0
    assert sac_brc.replay_buffer_bytes(3, 5, 4, 2) == sum(
        x.size * x.dtype.itemsize for x in (buf.obs, buf.action, buf.reward, buf.next_obs, buf.terminated)
    )


def test_insert_matches_numpy_ring_buffer():
    tasks, cap, obs_dim, act_dim = 3, 4, 2, 1
    rng = np.random.default_rng(0)
    buf = sac_brc.replay_buffer_init(tasks, cap, obs_dim, act_dim)
    # NumPy reference ring buffers
    ref = {k: np.zeros((tasks, cap) + s) for k, s in
           [("obs", (obs_dim,)), ("action", (act_dim,)), ("reward", ()), ("next_obs", (obs_dim,)), ("terminated", ())]}  # fmt: skip
    pos, size = 0, 0
    for step in range(15):  # wraps three times
        obs = rng.normal(size=(tasks, obs_dim)).astype(np.float32)
        action = rng.normal(size=(tasks, act_dim)).astype(np.float32)
        reward = rng.normal(size=tasks).astype(np.float32)
        next_obs = rng.normal(size=(tasks, obs_dim)).astype(np.float32)
        term = rng.uniform(size=tasks) < 0.3
        buf = insert(buf, jnp.asarray(obs), jnp.asarray(action), jnp.asarray(reward), jnp.asarray(next_obs),
                     bool_(term))  # fmt: skip
        for i in range(tasks):
            ref["obs"][i, pos] = obs[i]
            ref["action"][i, pos] = action[i]
            ref["reward"][i, pos] = reward[i]
            ref["next_obs"][i, pos] = next_obs[i]
            ref["terminated"][i, pos] = float(term[i])
        pos, size = (pos + 1) % cap, min(size + 1, cap)
        np.testing.assert_array_equal(np.asarray(buf.position), [pos] * tasks)
        np.testing.assert_array_equal(np.asarray(buf.size), [size] * tasks)
        for k, v in ref.items():
            np.testing.assert_array_equal(
                np.asarray(getattr(buf, k)), v.astype(np.float32), err_msg=f"{k} step {step}"
            )


def test_sample_only_returns_filled_transitions_of_its_task():
    tasks, cap, obs_dim = 4, 50, 3
    fill = [50, 7, 1, 23]  # task 0 full; others partly filled
    buf = sac_brc.replay_buffer_init(tasks, cap, obs_dim, 2)
    for step in range(max(fill)):
        # distinct value per (task, slot): obs = [task, step, step + 0.5]
        obs = np.array([[i, step, step + 0.5] for i in range(tasks)], np.float32)
        buf = insert(
            buf, jnp.asarray(obs), jnp.asarray(obs[:, :2] * 2), jnp.asarray(obs[:, 1] * 10), jnp.asarray(obs + 1),
            bool_([step % 2 == 0] * tasks),
        )  # fmt: skip
    buf = buf._replace(size=jnp.asarray(fill))  # as if task i had stored only its first fill[i] transitions
    batch = jax.jit(sac_brc.sample, static_argnums=1)(buf, 20000, jax.random.key(0))
    task = np.asarray(batch.task)
    obs = np.asarray(batch.obs)
    assert obs.shape == (20000, obs_dim)
    # every sample is a transition that was stored for its task, consistent across fields
    np.testing.assert_array_equal(obs[:, 0], task)
    slot = obs[:, 1].astype(int)
    np.testing.assert_array_equal(obs[:, 1], slot)
    assert (slot < np.array(fill)[task]).all()
    np.testing.assert_array_equal(obs[:, 2], slot + 0.5)
    np.testing.assert_array_equal(np.asarray(batch.action), obs[:, :2] * 2)
    np.testing.assert_array_equal(np.asarray(batch.reward), slot * 10.0)
    np.testing.assert_array_equal(np.asarray(batch.next_obs), obs + 1)
    np.testing.assert_array_equal(np.asarray(batch.terminated), (slot % 2 == 0).astype(np.float32))
    # tasks are uniform: 5000 +- 3 sigma (sigma ~ 61)
    counts = np.bincount(task, minlength=tasks)
    assert (np.abs(counts - 5000) < 250).all(), counts
    # and within a task, every filled slot is reached, roughly uniformly
    for i in range(tasks):
        slots = np.bincount(slot[task == i], minlength=fill[i])
        assert (slots > 0).all(), (i, slots)
        expected = counts[i] / fill[i]
        assert (np.abs(slots - expected) < 5 * np.sqrt(expected) + 1).all(), (i, slots)
