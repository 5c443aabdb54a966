"""C51 support, projection and cross-entropy against plain NumPy loop references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.categorical import categorical_projection, cross_entropy, make_support


def project_reference(target_atoms, target_probs, support):
    """Bellemare et al. (2017) projection, one sample, written as an explicit loop."""
    v_min, v_max = float(support[0]), float(support[-1])
    n = len(support)
    dz = (v_max - v_min) / (n - 1)
    out = np.zeros(n)
    for tz, p in zip(target_atoms, target_probs):
        tz = min(max(float(tz), v_min), v_max)
        b = (tz - v_min) / dz
        l, u = math.floor(b), math.ceil(b)
        # guard against b a hair above n-1 from rounding
        l, u = min(l, n - 1), min(u, n - 1)
        if l == u:
            out[l] += p
        else:
            out[l] += p * (u - b)
            out[u] += p * (b - l)
    return out


def batched_projection(atoms, probs, support):
    return np.asarray(
        jax.vmap(categorical_projection, in_axes=(0, 0, None))(
            jnp.asarray(atoms, jnp.float32), jnp.asarray(probs, jnp.float32), support
        )
    )


@pytest.mark.parametrize("num_atoms", [101, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_loop_reference(num_atoms, seed):
    rng = np.random.default_rng(seed)
    v_max = 10.0
    support = make_support(num_atoms, v_max)
    batch = 16
    # a TD-like target r + gamma * z plus a few random atoms well outside the support
    rewards = rng.uniform(-3.0, 3.0, size=(batch, 1))
    gamma = rng.uniform(0.8, 1.0, size=(batch, 1))
    atoms = rewards + gamma * np.asarray(support)[None, :]
    atoms[:, :3] = rng.uniform(-25.0, 25.0, size=(batch, 3))
    logits = rng.normal(size=(batch, num_atoms)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    atoms, probs = atoms.astype(np.float32).astype(np.float64), probs.astype(np.float32).astype(np.float64)

    got = batched_projection(atoms, probs, support)
    want = np.stack([project_reference(a, p, np.asarray(support, np.float64)) for a, p in zip(atoms, probs)])
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("num_atoms", [101, 5])
def test_projection_uniform_random_atoms_unnormalised_mass(num_atoms):
    """Arbitrary (unnormalised, positive) masses at arbitrary points inside and outside."""
    rng = np.random.default_rng(7)
    support = make_support(num_atoms, 10.0)
    # float32-representable inputs so both sides see the same numbers
    atoms = rng.uniform(-14.0, 14.0, size=(8, num_atoms)).astype(np.float32).astype(np.float64)
    probs = rng.uniform(0.0, 2.0, size=(8, num_atoms)).astype(np.float32).astype(np.float64)
    got = batched_projection(atoms, probs, support)
    want = np.stack([project_reference(a, p, np.asarray(support, np.float64)) for a, p in zip(atoms, probs)])
    # masses up to 2 and ~8 atoms per support bin: float32 rounding of each atom's position
    # (Tz - v_min) / dz (up to ~100 * 6e-8) adds up to a few 1e-5
    np.testing.assert_allclose(got, want, atol=5e-5)
    # mass conservation
    np.testing.assert_allclose(got.sum(-1), probs.sum(-1), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_projection_conserves_mass(seed):
    rng = np.random.default_rng(seed)
    support = make_support(101, 10.0)
    atoms = rng.uniform(-20.0, 20.0, size=(32, 101))
    probs = rng.dirichlet(np.ones(101), size=32)
    got = batched_projection(atoms, probs, support)
    np.testing.assert_allclose(got.sum(-1), probs.sum(-1), atol=1e-5)
    assert (got >= 0).all()


@pytest.mark.parametrize("num_atoms", [101, 5])
def test_atoms_on_support_points_keep_their_mass(num_atoms):
    # float32 linspace puts a support point up to ~1e-6 off its exact place, so a few 1e-7 of
    # its mass can go to a neighbour: atol 1e-6
    rng = np.random.default_rng(11)
    support = make_support(num_atoms, 10.0)
    probs = rng.dirichlet(np.ones(num_atoms))
    # identity: the support projected onto itself
    got = np.asarray(categorical_projection(support, jnp.asarray(probs, jnp.float32), support))
    np.testing.assert_allclose(got, probs, atol=1e-6)

    # a permutation of support points: the mass follows the atom
    perm = rng.permutation(num_atoms)
    got = np.asarray(categorical_projection(support[perm], jnp.asarray(probs, jnp.float32), support))
    want = np.zeros(num_atoms)
    want[perm] = probs
    np.testing.assert_allclose(got, want, atol=1e-6)

    # all the mass on one interior support point
    k = num_atoms // 2 + 1
    atoms = jnp.full((num_atoms,), support[k])
    got = np.asarray(categorical_projection(atoms, jnp.asarray(probs, jnp.float32), support))
    want = np.zeros(num_atoms)
    want[k] = probs.sum()
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("num_atoms", [101, 5])
def test_projection_clips_both_ends(num_atoms):
    support = make_support(num_atoms, 10.0)
    probs = jnp.full((num_atoms,), 1.0 / num_atoms)
    above = np.asarray(categorical_projection(jnp.full((num_atoms,), 1e3), probs, support))
    want = np.zeros(num_atoms)
    want[-1] = 1.0
    np.testing.assert_allclose(above, want, atol=1e-6)

    below = np.asarray(categorical_projection(jnp.full((num_atoms,), -1e3), probs, support))
    want = np.zeros(num_atoms)
    want[0] = 1.0
    np.testing.assert_allclose(below, want, atol=1e-6)

    # just outside the ends, and half the atoms above / half below
    atoms = jnp.where(jnp.arange(num_atoms) % 2 == 0, 10.5, -10.0001)
    got = np.asarray(categorical_projection(atoms, probs, support))
    n_even = (num_atoms + 1) // 2
    want = np.zeros(num_atoms)
    want[-1] = n_even / num_atoms
    want[0] = (num_atoms - n_even) / num_atoms
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_projection_splits_mass_between_neighbours():
    """A single atom a quarter of the way from z_2 to z_3 on a 5-atom support on [-10, 10]."""
    support = make_support(5, 10.0)  # -10, -5, 0, 5, 10
    atoms = jnp.array([1.25, -100.0, -100.0, -100.0, -100.0])
    probs = jnp.array([1.0, 0.0, 0.0, 0.0, 0.0])
    got = np.asarray(categorical_projection(atoms, probs, support))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.75, 0.25, 0.0], atol=1e-6)


@pytest.mark.parametrize("num_atoms,v_max", [(101, 10.0), (5, 10.0), (51, 3.5)])
def test_make_support(num_atoms, v_max):
    support = np.asarray(make_support(num_atoms, v_max))
    assert support.shape == (num_atoms,)
    assert support[0] == pytest.approx(-v_max, abs=1e-6)
    assert support[-1] == pytest.approx(v_max, abs=1e-6)
    want = np.array([-v_max + i * 2 * v_max / (num_atoms - 1) for i in range(num_atoms)])
    np.testing.assert_allclose(support, want, atol=1e-5)
    np.testing.assert_allclose(np.diff(support), 2 * v_max / (num_atoms - 1), atol=1e-5)
    if num_atoms % 2 == 1:
        assert support[num_atoms // 2] == pytest.approx(0.0, abs=1e-6)


def log_softmax_reference(logits):
    out = np.empty(len(logits))
    m = max(logits)
    total = 0.0
    for x in logits:
        total += math.exp(x - m)
    for i, x in enumerate(logits):
        out[i] = x - m - math.log(total)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(101))
    logits = rng.normal(size=101) * 3
    got = float(cross_entropy(jnp.asarray(p, jnp.float32), jnp.asarray(logits, jnp.float32)))
    ls = log_softmax_reference(logits)
    want = -sum(pi * li for pi, li in zip(p, ls))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_cross_entropy_large_logits_stable():
    logits = np.array([1000.0, 0.0, -1000.0])
    p = np.array([0.5, 0.5, 0.0])
    got = float(cross_entropy(jnp.asarray(p, jnp.float32), jnp.asarray(logits, jnp.float32)))
    # -(0.5 * 0 + 0.5 * -1000)
    assert got == pytest.approx(500.0, rel=1e-6)


def test_cross_entropy_gradients():
    rng = np.random.default_rng(5)
    p = jnp.asarray(rng.dirichlet(np.ones(7)), jnp.float32)
    logits = jnp.asarray(rng.normal(size=7), jnp.float32)
    grad_p, grad_logits = jax.grad(cross_entropy, argnums=(0, 1))(p, logits)
    # the target is a constant
    np.testing.assert_array_equal(np.asarray(grad_p), np.zeros(7))
    # d/dlogits = softmax(logits) * sum(p) - p
    sm = np.exp(np.asarray(logits, np.float64))
    sm /= sm.sum()
    want = sm * float(np.sum(p)) - np.asarray(p, np.float64)
    np.testing.assert_allclose(np.asarray(grad_logits), want, atol=1e-6)
