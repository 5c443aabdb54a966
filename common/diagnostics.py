"""The paper's multi-task diagnostics that do not depend on a learner (Section 5, Appendix D,
Figures 3, 5 and 7), given a learner's per-row critic loss: the Gram matrix of per-task loss
gradients without holding them all, the gradient-conflict rate, the spread of a quantity across
tasks, their record for metrics.jsonl, and the PCA plot of the task embeddings. sac_brc.py's
`make_diagnostics` samples the batch and computes them on its critic."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from common.suites import TaskSpec


def task_gradient_gram(
    params, task_loss, all_task_losses, num_tasks: int
) -> Float[Array, "tasks tasks"]:
    """Gram matrix `G_ij = <grad L_i, grad L_j>` of the per-task loss gradients.

    Never holds all T gradients at once (T x 136M floats for MT50 at width 4096): for each task
    i (`lax.map`), g_i = grad L_i by reverse mode, then the row `(g_1.g_i, ..., g_T.g_i)` is one
    forward-mode JVP of the vector of all T losses along g_i.
    """

    def row(i):
        g = jax.grad(task_loss)(params, i)
        return jax.jvp(all_task_losses, (params,), (g,))[1]

    gram = jax.lax.map(row, jnp.arange(num_tasks))
    return 0.5 * (gram + gram.T)  # symmetric up to rounding


def gradient_conflicts(gram: Float[Array, "tasks tasks"]) -> tuple[Float[Array, " tasks"], Float[Array, ""]]:
    """Per-task gradient norms and the rate of conflicting pairs as in PCGrad (Yu et al., 2020):
    the fraction of task pairs i < j whose gradients have negative cosine similarity (NaN for one task)."""
    norm = jnp.sqrt(jnp.diagonal(gram))
    cosine = gram / (norm[:, None] * norm[None, :])
    i, j = jnp.triu_indices(gram.shape[0], k=1)
    return norm, jnp.mean(cosine[i, j] < 0)


def relative_spread(values: Float[Array, " tasks"]) -> Float[Array, ""]:
    """Paper Figure 3: std / mean across tasks. Entropy estimates can be negative, so the
    mean is taken in absolute value (the paper's sigma / mu assumes positive quantities)."""
    return jnp.std(values) / jnp.abs(jnp.mean(values))


def multitask_diagnostics(row_losses, params, num_tasks: int, neg_log_prob: Float[Array, " rows"]) -> dict:
    """The paper's multi-task diagnostics of a learner, on a task-major batch (`num_tasks` equal
    blocks of rows): per-task critic loss, gradient norm and policy entropy, the spread of each
    across tasks (Figure 3, Appendix D: sigma / mu over tasks), and the gradient-conflict rate
    (Figure 5). `row_losses(params, rows)`: the critic loss of the batch rows `rows` (an index
    array, or `slice(None)` for all) at critic parameters `params`; `neg_log_prob`: -log pi(a|s)
    of every row. Gradients are taken with respect to all of `params`; the task-specific ones
    (a task's embedding row, its head) receive nothing from other tasks, so they add nothing to
    `<g_i, g_j>` and the conflict rate equals the one on the shared parameters that PCGrad uses."""
    per_task = len(neg_log_prob) // num_tasks
    all_task_losses = lambda p: row_losses(p, slice(None)).reshape(num_tasks, per_task).mean(axis=1)
    task_loss = lambda p, i: row_losses(p, i * per_task + jnp.arange(per_task)).mean()  # task i's rows
    td_loss = all_task_losses(params)
    gram = task_gradient_gram(params, task_loss, all_task_losses, num_tasks)
    grad_norm, conflict_rate = gradient_conflicts(gram)
    entropy = neg_log_prob.reshape(num_tasks, per_task).mean(axis=1)
    spread = {"td_loss": relative_spread(td_loss), "grad_norm": relative_spread(grad_norm),
              "entropy": relative_spread(entropy)}  # fmt: skip
    return {"td_loss": td_loss, "grad_norm": grad_norm, "entropy": entropy, "spread": spread,
            "conflict_rate": conflict_rate}  # fmt: skip


def diagnostics_record(
    diagnostics: dict,
    tasks: list[TaskSpec],
    task_embedding: Float[Array, "tasks embedding"] | None,
    step: int,
    run_dir: Path,
) -> dict:
    """Host copy for metrics.jsonl: per-task values by task name, no conflict rate for one task;
    with several task embeddings, their PCA plot (run_dir/task_embeddings.png) and its explained
    variance."""
    host = jax.device_get(diagnostics)
    names = [t.name for t in tasks]
    record = {name: dict(zip(names, map(float, host[name]))) for name in ("td_loss", "grad_norm", "entropy")}
    record["spread"] = {name: float(v) for name, v in host["spread"].items()}
    record["conflict_rate"] = float(host["conflict_rate"]) if len(tasks) > 1 else None
    if task_embedding is not None and len(tasks) > 1:
        record["embedding_explained_variance"] = plot_task_embeddings(
            np.asarray(task_embedding), tasks, step, run_dir / "task_embeddings.png"
        )
    return record


def embedding_pca(task_embedding: Float[np.ndarray, "tasks embedding"]) -> tuple[np.ndarray, np.ndarray]:
    """Paper Figure 7: first two principal components of the L2-normalised task embeddings
    (the vectors the networks read). Returns the (tasks, 2) coordinates and the explained
    variance ratio of each component."""
    x = task_embedding / np.linalg.norm(task_embedding, axis=1, keepdims=True)
    x = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    variance = singular**2
    return x @ vt[:2].T, (variance / variance.sum())[:2]


def plot_task_embeddings(
    task_embedding: Float[np.ndarray, "tasks embedding"], tasks: list[TaskSpec], env_step: int, path: Path
) -> list:
    """Scatter of the embedding PCA, one colour per embodiment, each point named; the PNG is
    written to a temporary file and renamed. Returns the explained variance ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coords, explained = embedding_pca(task_embedding)
    # embodiment: the DMC domain (`cheetah` of cheetah-run), else the suite's domain
    embodiment = [t.name.rsplit("-", 1)[0] if t.domain == "dmc" else t.domain for t in tasks]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for k, kind in enumerate(dict.fromkeys(embodiment)):
        rows = [i for i, e in enumerate(embodiment) if e == kind]
        ax.scatter(coords[rows, 0], coords[rows, 1], color=f"C{k % 10}", label=kind, s=25)
    for (x, y), task in zip(coords, tasks):
        ax.annotate(task.name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)" if len(explained) > 1 else "PC 2")
    ax.set_title(f"task embeddings (L2-normalised), step {env_step}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return explained.tolist()
