"""sac_brc.py --diagnostics: per-task TD loss, gradient norm, entropy, spreads, gradient
conflicts (paper Figures 3, 5) and the task-embedding PCA (Figure 7), against hand-computed
values and NumPy loops."""

import itertools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from common import diagnostics
from sac_brc import Args, make_agent, make_diagnostics, replay_buffer_init, resolve_batch_size


def test_gram_norms_and_conflicts_on_a_hand_computed_quadratic():
    """L_i(w) = |w - c_i|^2 / 2 at w = 0: g_i = -c_i, so <g_i, g_j> = c_i . c_j.
    c = e1, 2 e2, -e1, e1 + e2: norms 1, 2, 1, sqrt 2; pairs (0, 2) and (2, 3) conflict
    (cosines -1 and -1/sqrt 2); (0, 1) and (1, 2) are orthogonal, which is no conflict."""
    c = jnp.array([[1.0, 0, 0], [0, 2, 0], [-1, 0, 0], [1, 1, 0]])
    losses = lambda w: 0.5 * jnp.sum((w[None, :] - c) ** 2, axis=1)
    gram = diagnostics.task_gradient_gram(jnp.zeros(3), lambda w, i: losses(w)[i], losses, 4)
    expected = np.array([[1, 0, -1, 1], [0, 4, 0, 2], [-1, 0, 1, -1], [1, 2, -1, 2]], float)
    np.testing.assert_allclose(gram, expected, atol=1e-6)
    norm, rate = diagnostics.gradient_conflicts(gram)
    np.testing.assert_allclose(norm, [1, 2, 1, np.sqrt(2)], rtol=1e-6)
    assert float(rate) == pytest.approx(2 / 6)
    assert float(diagnostics.relative_spread(jnp.array([1.0, 2.0, 3.0]))) == pytest.approx(np.sqrt(2 / 3) / 2)
    assert float(diagnostics.relative_spread(jnp.array([-1.0, -3.0]))) == pytest.approx(0.5)  # |mean|


def numpy_projection(value: float, support: np.ndarray) -> np.ndarray:
    """A point mass at `value` on the support: split between its two neighbours by distance."""
    value = float(np.clip(value, support[0], support[-1]))
    probs = np.zeros(len(support))
    dz = support[1] - support[0]
    low = min(int(np.floor((value - support[0]) / dz)), len(support) - 2)
    upper_share = (value - support[low]) / dz
    probs[low] += 1 - upper_share
    probs[low + 1] += upper_share
    return probs


def setup_one_transition_per_task(loss: str, per_task: int, conditioning: str = "embedding", num_tasks: int = 3):
    """Each task's replay holds one terminal transition, so every sampled row of task i is that
    transition and its TD target is the scaled reward alone (mask 0): known without sampling."""
    args = Args(width=16, actor_width=16, num_atoms=11, embedding_dim=4, loss=loss,
                task_conditioning=conditioning, diagnostics_batch_size=per_task)  # fmt: skip
    obs_dim, act_dim = 3, 2
    state, fns = make_agent(args, num_tasks, obs_dim, act_dim, resolve_batch_size(args, num_tasks), jax.random.key(0))
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(num_tasks, obs_dim)).astype(np.float32)
    action = rng.uniform(-1, 1, (num_tasks, act_dim)).astype(np.float32)
    reward = np.array([0.5, -2.0, 3.0, 1.0][:num_tasks], np.float32)
    buffer = fns.insert(
        replay_buffer_init(num_tasks, 4, obs_dim, act_dim), obs, action, reward, obs,
        np.ones(num_tasks, bool),
    )  # fmt: skip
    max_abs_return = np.array([1.0, 4.0, 2.0, 3.0][:num_tasks], np.float32)
    return args, state, buffer, obs, action, reward, max_abs_return, act_dim


@pytest.mark.parametrize("loss, conditioning", [("ce", "embedding"), ("mse", "embedding"), ("ce", "heads")])
def test_diagnose_matches_a_per_task_numpy_reference(loss, conditioning):
    """--loss ce and mse, and the separate-heads ablation of paper Figure 5."""
    per_task, num_tasks = 1024, 3
    args, state, buffer, obs, action, reward, max_abs_return, act_dim = setup_one_transition_per_task(
        loss, per_task, conditioning
    )
    diagnose = make_diagnostics(args, num_tasks, act_dim)
    out = jax.device_get(diagnose(state, buffer, jnp.asarray(max_abs_return), jax.random.key(7)))

    # reward scale, paper eq. 3-4, and the TD target of a terminal transition
    alpha = float(np.exp(state.log_alpha))
    scale = args.v_max / (max_abs_return + alpha * (act_dim / 4) / (1 - args.gamma))
    support = np.linspace(-args.v_max, args.v_max, args.num_atoms)
    td_loss, grads = [], []
    for i in range(num_tasks):
        target = reward[i] * scale[i]
        target_probs = numpy_projection(target, support)

        def loss_i(critic):
            out = critic(jnp.asarray(obs[i : i + 1]), jnp.asarray(action[i : i + 1]), jnp.array([i]))[0]
            if loss == "ce":  # sum over the two critics of -sum p log softmax
                return -jnp.sum(jnp.asarray(target_probs) * jax.nn.log_softmax(out, axis=-1))
            return jnp.sum((out[:, 0] - target) ** 2)

        value, grad = eqx.filter_value_and_grad(loss_i)(state.critic)
        td_loss.append(float(value))
        grads.append(np.asarray(ravel_pytree(grad)[0], np.float64))
    norms = [np.sqrt(g @ g) for g in grads]
    conflicts = [
        (grads[i] @ grads[j]) / (norms[i] * norms[j]) < 0 for i, j in itertools.combinations(range(num_tasks), 2)
    ]
    np.testing.assert_allclose(out["td_loss"], td_loss, rtol=1e-4)
    np.testing.assert_allclose(out["grad_norm"], norms, rtol=1e-3)
    assert float(out["conflict_rate"]) == pytest.approx(np.mean(conflicts))
    for name, ref in (("td_loss", td_loss), ("grad_norm", norms)):
        assert float(out["spread"][name]) == pytest.approx(np.std(ref) / abs(np.mean(ref)), rel=1e-3)

    # entropy: Monte Carlo in NumPy from the policy's mean and log-std at each task's state
    rng = np.random.default_rng(0)
    for i in range(num_tasks):
        embedding = state.critic.embed(jnp.array(i))
        mean, log_std = (np.asarray(v, np.float64) for v in state.actor(jnp.asarray(obs[i]), embedding, i))
        u = mean + np.exp(log_std) * rng.normal(size=(200_000, act_dim))
        # log(1 - tanh(u)^2) = log(4 e^{-2u} / (1 + e^{-2u})^2), finite where tanh(u) rounds to 1
        log_det = np.log(4.0) - 2 * u - 2 * np.logaddexp(0.0, -2 * u)
        log_prob = np.sum(-0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi) - log_det, axis=1)
        standard_error = log_prob.std() / np.sqrt(per_task)
        assert abs(out["entropy"][i] - (-log_prob.mean())) < 5 * standard_error


def test_diagnose_traces_once_and_keeps_training_state():
    args, state, buffer, *_ , max_abs_return, act_dim = setup_one_transition_per_task("ce", 8)
    diagnose = make_diagnostics(args, 3, act_dim)
    before = jax.tree.leaves(state)
    for step in range(3):
        out = diagnose(state, buffer, jnp.asarray(max_abs_return * (step + 1)), jax.random.key(step))
        assert np.all(np.isfinite(out["td_loss"])) and out["td_loss"].shape == (3,)
    assert diagnose._cache_size() == 1
    for a, b in zip(before, jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_embedding_pca_matches_a_covariance_eigendecomposition():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, 5)) * rng.uniform(0.1, 10, (6, 1))  # rows of very different norms
    coords, explained = diagnostics.embedding_pca(table)
    x = table / np.sqrt((table**2).sum(axis=1, keepdims=True))
    x = x - x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)  # ascending
    for k in range(2):
        reference = x @ eigenvectors[:, -1 - k]
        sign = np.sign(reference @ coords[:, k])  # a principal axis has no sign
        np.testing.assert_allclose(coords[:, k], sign * reference, atol=1e-9)
        assert explained[k] == pytest.approx(eigenvalues[-1 - k] / eigenvalues.sum())


@pytest.mark.slow
def test_diagnostics_end_to_end_and_plot(run, tmp_path):
    """--diagnostics logs into metrics.jsonl and draws the embedding PCA; plot.py draws them."""
    out = run(
        "sac_brc.py", "--tasks", "reach,cartpole-swingup,cheetah-run", "--width", "32", "--actor-width", "32",
        "--num-atoms", "21", "--batch-size", "64", "--learning-starts", "60", "--total-steps", "120",
        "--eval-interval", "60", "--eval-episodes", "1", "--log-interval", "60", "--checkpoint-interval", "120",
        "--diagnostics", "--diagnostics-batch-size", "16", "--run-name", "diag",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "diag"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [60, 120]
    diagnostics = records[-1]["diagnostics"]
    for name in ("td_loss", "grad_norm", "entropy"):
        assert set(diagnostics[name]) == {"reach", "cartpole-swingup", "cheetah-run"}
        values = np.array(list(diagnostics[name].values()))
        assert diagnostics["spread"][name] == pytest.approx(np.std(values) / abs(np.mean(values)), rel=1e-4)
    rate = diagnostics["conflict_rate"]  # 0, 1, 2 or 3 of the 3 pairs conflict
    assert 0 <= rate <= 1 and rate * 3 == pytest.approx(round(rate * 3), abs=1e-5)
    assert len(diagnostics["embedding_explained_variance"]) == 2
    png = run_dir / "task_embeddings.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(run_dir.glob("*.tmp"))

    plotted = run("plot.py", str(run_dir), "--out", str(tmp_path / "plots"), "--bootstrap-samples", "100")
    assert plotted.returncode == 0, plotted.stderr[-3000:]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"tasks.png", "aggregate.png", "diagnostics.png"}
