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
    neighbouring support atoms in proportion to closeness; an atom landing exactly on a
    support point keeps all its mass there (Bellemare et al., 2017, Algorithm 1). Written as
    two scatter-adds, vmapped over the batch by the caller: the equivalent dense form
    (weights `clip(1 - |Tz - z| / dz, 0, 1)`, atoms x atoms per sample) costs 13% of a
    CPU update at batch 1024.
    """
    num_atoms = support.shape[0]
    # as the ref. code; z_1 - z_0 would carry linspace's float32 rounding, 100-fold at the top
    delta_z = (support[-1] - support[0]) / (num_atoms - 1)
    position = (jnp.clip(target_atoms, support[0], support[-1]) - support[0]) / delta_z
    lower, upper = jnp.floor(position), jnp.ceil(position)
    lower_mass = target_probs * (upper - position + (lower == upper))
    upper_mass = target_probs * (position - lower)
    # `position` can round a hair above num_atoms - 1; its mass stays on the last atom
    lower, upper = (jnp.minimum(i, num_atoms - 1).astype(jnp.int32) for i in (lower, upper))
    return jnp.zeros(num_atoms, lower_mass.dtype).at[lower].add(lower_mass).at[upper].add(upper_mass)


def cross_entropy(target_probs: Float[Array, " atoms"], logits: Float[Array, " atoms"]) -> Float[Array, ""]:
    """-sum_i p_i log softmax(logits)_i; the target is treated as a constant."""
    return -jnp.sum(jax.lax.stop_gradient(target_probs) * jax.nn.log_softmax(logits))
