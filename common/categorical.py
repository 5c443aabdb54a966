"""Categorical (C51) value distribution: support, projection and cross-entropy loss.

Paper Appendix C.2: Q-values are distributions over a fixed support of `num_atoms`
atoms on [-v_max, v_max]; the TD target distribution is projected back onto the
support (Bellemare et al., 2017) and the critic is trained by cross-entropy.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def make_support(num_atoms: int, v_max: float) -> Float[Array, " atoms"]:
    """Atoms z_i evenly spaced on [-v_max, v_max] (paper eq. 1, v_min = -v_max)."""
    return jnp.linspace(-v_max, v_max, num_atoms)


def categorical_projection(
    target_atoms: Float[Array, " atoms"],
    target_probs: Float[Array, " atoms"],
    support: Float[Array, " atoms"],
) -> Float[Array, " atoms"]:
    """Project a distribution with mass `target_probs` at `target_atoms` onto `support`.

    Each target atom is clipped to the support and its mass split between its two
    neighbouring support atoms in proportion to distance; an atom landing exactly on
    a support point keeps all its mass there. Written as one dense expression
    (weights `clip(1 - |Tz - z| / dz, 0, 1)`), vmapped over the batch by the caller.
    """
    delta_z = support[1] - support[0]
    clipped = jnp.clip(target_atoms, support[0], support[-1])
    # weight[i, j]: share of target atom j's mass that lands on support atom i
    weight = jnp.clip(1.0 - jnp.abs(clipped[None, :] - support[:, None]) / delta_z, 0.0, 1.0)
    return weight @ target_probs


def cross_entropy(target_probs: Float[Array, " atoms"], logits: Float[Array, " atoms"]) -> Float[Array, ""]:
    """-sum_i p_i log softmax(logits)_i; the target is treated as a constant."""
    return -jnp.sum(jax.lax.stop_gradient(target_probs) * jax.nn.log_softmax(logits))
