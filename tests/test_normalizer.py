"""Monte-Carlo returns and the per-task return normaliser (paper eq. 2) against brute force."""

import json

import numpy as np
import pytest

from sac_brc import ReturnNormalizer, discounted_returns


def returns_reference(rewards, gamma, truncated):
    """G_t = sum_{k>=t} gamma^(k-t) r_k (+ gamma^(n-t) mean(r) / (1 - gamma) if truncated), O(n^2)."""
    n = len(rewards)
    tail = (sum(rewards) / n) / (1.0 - gamma) if truncated else 0.0
    out = []
    for t in range(n):
        g = 0.0
        for k in range(t, n):
            g += gamma ** (k - t) * rewards[k]
        g += gamma ** (n - t) * tail
        out.append(g)
    return np.array(out)


def max_abs_reference(rewards, gamma, truncated):
    return max(abs(g) for g in returns_reference(rewards, gamma, truncated))


# ---------------------------------------------------------------- discounted_returns


def test_discounted_returns_hand_computed():
    r = np.array([1.0, 2.0, 3.0])
    # terminal: G_2 = 3, G_1 = 2 + 0.5 * 3, G_0 = 1 + 0.5 * 3.5
    np.testing.assert_allclose(discounted_returns(r, 0.5, False), [2.75, 3.5, 3.0])
    # truncated: tail = mean 2 / (1 - 0.5) = 4; G_2 = 3 + 0.5 * 4 = 5, G_1 = 4.5, G_0 = 3.25
    np.testing.assert_allclose(discounted_returns(r, 0.5, True), [3.25, 4.5, 5.0])


@pytest.mark.parametrize("truncated", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1])
def test_discounted_returns_brute_force(truncated, gamma, seed):
    rng = np.random.default_rng(seed)
    for n in [1, 2, 7, 40]:
        rewards = rng.normal(size=n)
        got = discounted_returns(rewards, gamma, truncated)
        want = returns_reference(list(rewards), gamma, truncated)
        assert got.shape == (n,)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_discounted_returns_constant_reward_truncated_is_infinite_horizon():
    """A constant reward r truncated anywhere bootstraps to exactly r / (1 - gamma) everywhere."""
    gamma = 0.9
    got = discounted_returns(np.full(13, 2.0), gamma, True)
    np.testing.assert_allclose(got, np.full(13, 2.0 / (1 - gamma)), rtol=1e-12)
    # whereas terminal is the finite geometric sum
    got = discounted_returns(np.full(13, 2.0), gamma, False)
    want = [2.0 * (1 - gamma ** (13 - t)) / (1 - gamma) for t in range(13)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- ReturnNormalizer


def feed(normalizer, episodes_per_task, num_tasks):
    """Step all tasks in lockstep through their lists of (rewards, how) episodes.

    `how` is "terminated" or "truncated". Tasks that run out of steps go on with zero rewards
    in an episode that never ends, which must not change their scale once an episode has ended.
    """
    streams = []
    for task in range(num_tasks):
        steps = []
        for rewards, how in episodes_per_task[task]:
            for t, r in enumerate(rewards):
                last = t == len(rewards) - 1
                steps.append((r, last and how == "terminated", last and how == "truncated"))
        streams.append(steps)
    horizon = max(len(s) for s in streams)
    for t in range(horizon):
        reward = np.zeros(num_tasks)
        term = np.zeros(num_tasks, bool)
        trunc = np.zeros(num_tasks, bool)
        for i, steps in enumerate(streams):
            if t < len(steps):
                reward[i], term[i], trunc[i] = steps[t]
        normalizer.add(reward, term, trunc)


def expected_scale(episodes, gamma):
    return max(max_abs_reference(list(r), gamma, how == "truncated") for r, how in episodes)


def test_scale_is_max_over_ended_episodes_per_task():
    gamma = 0.9
    rng = np.random.default_rng(0)
    episodes = [
        [
            (rng.normal(size=5), "terminated"),
            (rng.normal(size=8) * 3, "truncated"),
            (rng.normal(size=3), "terminated"),
        ],
        [(rng.uniform(0, 1, size=10), "truncated"), (rng.uniform(0, 2, size=4), "truncated")],
        [(-rng.uniform(0, 1, size=6), "terminated")],
    ]
    normalizer = ReturnNormalizer(3, gamma)
    feed(normalizer, episodes, 3)
    scale = normalizer.g()
    assert scale.dtype == np.float32
    assert scale.shape == (3,)
    want = [expected_scale(e, gamma) for e in episodes]
    np.testing.assert_allclose(scale, want, rtol=1e-5)


def test_terminated_not_bootstrapped_truncated_is():
    gamma = 0.5
    normalizer = ReturnNormalizer(2, gamma)
    # same rewards; task 0 terminates, task 1 is truncated
    for t, r in enumerate([1.0, 1.0, 1.0]):
        last = t == 2
        normalizer.add(
            np.array([r, r]), np.array([last, False]), np.array([False, last])
        )
    scale = normalizer.g()
    # terminal: G_0 = 1 + .5 + .25 = 1.75; truncated: constant 1 / (1 - .5) = 2
    np.testing.assert_allclose(scale, [1.75, 2.0], rtol=1e-6)


def test_terminated_and_truncated_together_counts_as_terminal():
    normalizer = ReturnNormalizer(1, 0.5)
    normalizer.add(np.array([1.0]), np.array([False]), np.array([False]))
    normalizer.add(np.array([1.0]), np.array([True]), np.array([True]))
    np.testing.assert_allclose(normalizer.g(), [1.5], rtol=1e-6)


def test_scale_only_grows():
    gamma = 0.9
    big, small = [2.0, 3.0, -1.0], [0.1, 0.1]
    normalizer = ReturnNormalizer(1, gamma)
    feed(normalizer, [[(big, "terminated")]], 1)
    first = normalizer.g().copy()
    np.testing.assert_allclose(first, [max_abs_reference(big, gamma, False)], rtol=1e-6)
    feed(normalizer, [[(small, "terminated"), (small, "truncated")]], 1)
    np.testing.assert_allclose(normalizer.g(), first)
    # a partial (unfinished) small episode after the first has ended doesn't lower it either
    normalizer.add(np.array([0.01]), np.array([False]), np.array([False]))
    np.testing.assert_allclose(normalizer.g(), first)
    # a partial large episode doesn't count until it ends
    for _ in range(3):
        normalizer.add(np.array([50.0]), np.array([False]), np.array([False]))
    np.testing.assert_allclose(normalizer.g(), first)
    normalizer.add(np.array([50.0]), np.array([True]), np.array([False]))
    np.testing.assert_allclose(
        normalizer.g(), [max_abs_reference([0.01, 50, 50, 50, 50], gamma, False)], rtol=1e-6
    )


def test_negative_rewards_use_absolute_value():
    gamma = 0.9
    rewards = [-1.0, -2.0, -0.5, -3.0]
    normalizer = ReturnNormalizer(2, gamma)
    feed(normalizer, [[(rewards, "terminated")], [(rewards, "truncated")]], 2)
    scale = normalizer.g()
    assert (scale > 0).all()
    np.testing.assert_allclose(
        scale, [max_abs_reference(rewards, gamma, False), max_abs_reference(rewards, gamma, True)], rtol=1e-6
    )
    # mixed signs: the largest |G_t| may come from a negative return
    rewards = [5.0, -10.0, -10.0, 1.0]
    normalizer = ReturnNormalizer(1, gamma)
    feed(normalizer, [[(rewards, "terminated")]], 1)
    g = returns_reference(rewards, gamma, False)
    assert np.abs(g).argmax() != g.argmax()  # the test case does exercise |.|
    np.testing.assert_allclose(normalizer.g(), [np.abs(g).max()], rtol=1e-6)


def test_start_up_before_first_episode_ends():
    gamma = 0.99
    normalizer = ReturnNormalizer(3, gamma)
    scale = normalizer.g()
    np.testing.assert_array_equal(scale, np.zeros(3))
    rewards = [[0.5, 1.5, -0.25, 2.0, 0.0], [-1.0, -1.0, -3.0, 0.5, 0.25]]
    for t in range(5):
        normalizer.add(
            np.array([rewards[0][t], rewards[1][t], 0.0]),
            np.zeros(3, bool),
            np.zeros(3, bool),
        )  # task 2 has had only zero rewards
        scale = normalizer.g()
        assert np.isfinite(scale).all()
        want = [
            max_abs_reference(rewards[0][: t + 1], gamma, True),
            max_abs_reference(rewards[1][: t + 1], gamma, True),
            0.0,
        ]
        np.testing.assert_allclose(scale, want, rtol=1e-5)
    # scale() does not consume the partial episode: ending it afterwards gives the terminal value
    normalizer.add(
        np.array([1.0, 0.0, 0.0]),
        np.array([True, False, False]),
        np.zeros(3, bool),
    )
    np.testing.assert_allclose(
        normalizer.g()[0], max_abs_reference(rewards[0] + [1.0], gamma, False), rtol=1e-5
    )


def test_start_up_zero_rewards_give_zero_scale():
    normalizer = ReturnNormalizer(1, 0.99)
    for _ in range(4):
        normalizer.add(np.array([0.0]), np.array([False]), np.array([False]))
        scale = normalizer.g()
        assert np.isfinite(scale).all()
        np.testing.assert_array_equal(scale, [0.0])


def test_state_dict_round_trip():
    gamma = 0.9
    rng = np.random.default_rng(3)
    a = ReturnNormalizer(3, gamma)
    feed(a, [[(rng.normal(size=4), "terminated")], [(rng.normal(size=6), "truncated")], []], 3)
    # leave partial episodes in flight for every task (task 2 has never ended one)
    for _ in range(3):
        a.add(rng.normal(size=3), np.zeros(3, bool), np.zeros(3, bool))
    state = json.loads(json.dumps(a.state_dict()))  # survives a JSON round trip
    b = ReturnNormalizer(3, gamma)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.g(), a.g())
    np.testing.assert_array_equal(b.max_abs_return, a.max_abs_return)
    np.testing.assert_array_equal(b.episode_ended, a.episode_ended)
    assert b.current_rewards == a.current_rewards
    # and both continue identically
    for step in range(5):
        r = rng.normal(size=3) * 4
        term = np.array([step == 4, False, step == 2])
        trunc = np.array([False, step == 3, False])
        for n in (a, b):
            n.add(r, term, trunc)
        np.testing.assert_array_equal(b.g(), a.g())
    # the loaded state is a copy: mutating b doesn't touch a
    before = a.g().copy()
    b.add(np.full(3, 1e3), np.ones(3, bool), np.zeros(3, bool))
    np.testing.assert_array_equal(a.g(), before)
