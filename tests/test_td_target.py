"""The soft categorical TD target and the reward scale of sac_brc.py against NumPy loops."""

import jax.numpy as jnp
import numpy as np

from sac_brc import categorical_td_target, reward_scale


def reference_target(reward, mask, next_log_prob, target_logits, alpha, gamma, support):
    batch, _, atoms = target_logits.shape
    dz = support[1] - support[0]
    out = np.zeros((batch, atoms))
    for b in range(batch):
        probs = [np.exp(l - l.max()) / np.exp(l - l.max()).sum() for l in target_logits[b]]
        p = (probs[0] + probs[1]) / 2  # mean of the two target critics, not the minimum
        for j in range(atoms):
            tz = reward[b] + gamma * mask[b] * (support[j] - alpha * next_log_prob[b])
            tz = min(max(tz, support[0]), support[-1])
            pos = (tz - support[0]) / dz
            low, high = int(np.floor(pos)), int(np.ceil(pos))
            if low == high:
                out[b, low] += p[j]
            else:
                out[b, low] += p[j] * (high - pos)
                out[b, high] += p[j] * (pos - low)
    return out


def test_categorical_td_target_matches_loop():
    rng = np.random.default_rng(0)
    batch, atoms, v_max, gamma, alpha = 16, 51, 10.0, 0.99, 0.2
    support = np.linspace(-v_max, v_max, atoms)
    reward = rng.normal(0, 2, batch)
    mask = (rng.random(batch) < 0.7).astype(np.float64)  # some terminal transitions
    next_log_prob = rng.normal(0, 3, batch)
    logits = rng.normal(0, 2, (batch, 2, atoms))
    expected = reference_target(reward, mask, next_log_prob, logits, alpha, gamma, support)
    got = categorical_td_target(
        *(jnp.asarray(x, jnp.float32) for x in (reward, mask, next_log_prob, logits)),
        jnp.float32(alpha), gamma, jnp.asarray(support, jnp.float32),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5)
    # a terminal transition puts all mass next to r, whatever the next-state distribution
    terminal = np.flatnonzero(mask == 0)[0]
    assert np.asarray(got)[terminal][np.abs(support - reward[terminal]) > (support[1] - support[0])].sum() < 1e-6


def test_reward_scale_is_paper_eq_3():
    max_abs_return = np.array([0.0, 50.0, 1234.5])
    alpha, act_dim, gamma, v_max = 0.05, 6, 0.99, 10.0
    # by hand: lambda = alpha * (|A| / 4) / (1 - gamma) = 0.05 * 1.5 / 0.01 = 7.5, scale = 10 / (G + 7.5);
    # G = 0 (start-up) still gives a finite scale because alpha > 0
    expected = [10 / 7.5, 10 / 57.5, 10 / 1242.0]
    got = reward_scale(jnp.asarray(max_abs_return, jnp.float32), jnp.float32(alpha), act_dim, gamma, v_max)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
