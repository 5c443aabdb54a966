"""BroNet (Nauman et al., 2024), the scaled and regularised network of BRC (paper Appendix C.3).

`Linear(in, w) -> LayerNorm -> ReLU`, then `depth` residual blocks
`x + LN(Linear(ReLU(LN(Linear(x)))))`. Every Linear is orthogonally initialised with
gain sqrt(2) and zero bias (ref. code `default_init`); LayerNorm starts at scale 1,
offset 0, eps 1e-6 (flax's default, which the ref. code uses).

Modules act on one sample; batch them with `jax.vmap`. Ensembles (`make_ensemble`) stack
the members' parameters along a leading axis and are evaluated with `eqx.filter_vmap`, in
one batched matmul.
"""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

LAYER_NORM_EPS = 1e-6


class Linear(eqx.Module):
    """`x @ weight + bias`, the weight stored (in, out) as in flax (the ref. code). Not
    eqx.nn.Linear, whose (out, in) weight makes every matmul `x @ weight.T`: XLA:CPU (JAX 0.10
    to 0.12) runs those 15% slower in this update at width 256."""

    weight: Float[Array, "in_features out_features"]
    bias: Float[Array, " out_features"]

    def __call__(self, x: Float[Array, " in_features"]) -> Float[Array, " out_features"]:
        return x @ self.weight + self.bias


def orthogonal_linear(in_features: int, out_features: int, gain: float, key: PRNGKeyArray) -> Linear:
    """A Linear layer with an orthogonal weight of the given gain and a zero bias."""
    # column_axis=0: the transpose of the (out, in) draw from the same key, so the initial
    # parameters do not depend on the storage layout
    weight = jax.nn.initializers.orthogonal(gain, column_axis=0)(key, (in_features, out_features))
    return Linear(weight, jnp.zeros(out_features))


class ResidualBlock(eqx.Module):
    """`x + LN(Linear(ReLU(LN(Linear(x)))))`: no activation after the addition (ref. code)."""

    linear1: Linear
    norm1: eqx.nn.LayerNorm
    linear2: Linear
    norm2: eqx.nn.LayerNorm

    def __init__(self, width: int, key: PRNGKeyArray):
        key1, key2 = jax.random.split(key)
        self.linear1 = orthogonal_linear(width, width, math.sqrt(2), key1)
        self.norm1 = eqx.nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.linear2 = orthogonal_linear(width, width, math.sqrt(2), key2)
        self.norm2 = eqx.nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def __call__(self, x: Float[Array, " width"]) -> Float[Array, " width"]:
        residual = jax.nn.relu(self.norm1(self.linear1(x)))
        return x + self.norm2(self.linear2(residual))


class BroNet(eqx.Module):
    """BroNet trunk: input layer then `depth` residual blocks; heads are added by the user."""

    input_linear: Linear
    input_norm: eqx.nn.LayerNorm
    blocks: tuple[ResidualBlock, ...]

    def __init__(self, in_features: int, width: int, depth: int, key: PRNGKeyArray):
        input_key, *block_keys = jax.random.split(key, depth + 1)
        self.input_linear = orthogonal_linear(in_features, width, math.sqrt(2), input_key)
        self.input_norm = eqx.nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.blocks = tuple(ResidualBlock(width, k) for k in block_keys)

    def __call__(self, x: Float[Array, " in_features"]) -> Float[Array, " width"]:
        x = jax.nn.relu(self.input_norm(self.input_linear(x)))
        for block in self.blocks:
            x = block(x)
        return x


def make_ensemble(
    make_member: Callable[[PRNGKeyArray], eqx.Module], size: int, key: PRNGKeyArray
) -> eqx.Module:
    """`size` independently initialised members with parameters stacked on axis 0.

    Call the result with `eqx.filter_vmap(lambda m, x: m(x), in_axes=(eqx.if_array(0), None))`.
    The members are built one by one from split keys and stacked, not built under
    `eqx.filter_vmap`: a vmapped orthogonal initialiser is one batched QR, and jaxlib's CPU
    path for batched LAPACK calls can deadlock (jax 0.10). The values
    are the same (each member orthogonal on its own, as in the ref. code; tested).
    """
    members = [make_member(k) for k in jax.random.split(key, size)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(eqx.filter(m, eqx.is_array) for m in members))
    return eqx.combine(stacked, eqx.filter(members[0], eqx.is_array, inverse=True))


def count_parameters(model: PyTree) -> int:
    """Number of floating-point scalars in `model` (also works on `eqx.filter_eval_shape` output)."""
    return sum(
        math.prod(leaf.shape)
        for leaf in jax.tree.leaves(model)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
    )


def bronet_macs(in_features: int, width: int, depth: int, out_features: int) -> int:
    """Multiply-adds of one sample through a BroNet and a linear head on it (its matmuls only)."""
    return in_features * width + 2 * depth * width**2 + width * out_features
