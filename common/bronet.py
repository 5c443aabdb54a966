"""BroNet (Nauman et al., 2024), the scaled and regularised network of BRC (paper Appendix C.3).

`Linear(in, w) -> LayerNorm -> ReLU`, then `depth` residual blocks
`x + LN(Linear(ReLU(LN(Linear(x)))))`. Every Linear is orthogonally initialised with
gain sqrt(2) and zero bias (ref. code `default_init`); LayerNorm is flax's, which the ref.
code uses: scale 1, offset 0, eps 1e-6, variance as E[x^2] - E[x]^2.

Modules act on one sample; batch them with `jax.vmap`. Ensembles (`make_ensemble`) stack
the members' parameters along a leading axis and are evaluated with `eqx.filter_vmap`, in
one batched matmul.
"""

import functools
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


class LayerNorm(eqx.Module):
    """flax's LayerNorm (the ref. code's) over one sample: statistics in at least float32, the
    variance in one pass as E[x^2] - E[x]^2 (flax's `use_fast_variance`), output in the
    input's dtype. Not eqx.nn.LayerNorm, whose two-pass variance and autodiff gradient give
    XLA:CPU twice the reductions: 10-12% of a CPU update at width 256."""

    weight: Float[Array, " width"]
    bias: Float[Array, " width"]
    eps: float = eqx.field(static=True)

    def __init__(self, width: int, eps: float = LAYER_NORM_EPS):
        self.weight = jnp.ones(width)
        self.bias = jnp.zeros(width)
        self.eps = eps

    def __call__(self, x: Float[Array, " width"]) -> Float[Array, " width"]:
        return layer_norm(x, self.weight, self.bias, self.eps)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def layer_norm(
    x: Float[Array, " width"], weight: Float[Array, " width"], bias: Float[Array, " width"], eps: float
) -> Float[Array, " width"]:
    """`LayerNorm` as a function, with its derivative written out (`_layer_norm_jvp`)."""
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    normalised, _ = _normalise(x.astype(dtype), eps)
    return (normalised * weight.astype(dtype) + bias.astype(dtype)).astype(x.dtype)


def _normalise(x: Float[Array, " width"], eps: float) -> tuple[Float[Array, " width"], Float[Array, ""]]:
    mean = jnp.mean(x)
    variance = jnp.maximum(jnp.mean(x * x) - mean * mean, 0.0)
    inv_std = jax.lax.rsqrt(variance + eps)
    return (x - mean) * inv_std, inv_std


@layer_norm.defjvp
def _layer_norm_jvp(eps, primals, tangents):
    # The textbook derivative: its two means are the paths through the mean and the variance.
    # Autodiff of the forward pass takes more reductions, forward and (transposed) backward.
    x, weight, bias = primals
    x_dot, weight_dot, bias_dot = tangents
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    normalised, inv_std = _normalise(x.astype(dtype), eps)
    out = normalised * weight.astype(dtype) + bias.astype(dtype)
    scaled_dot = x_dot.astype(dtype) * inv_std
    normalised_dot = scaled_dot - jnp.mean(scaled_dot) - normalised * jnp.mean(scaled_dot * normalised)
    out_dot = (
        normalised_dot * weight.astype(dtype) + normalised * weight_dot.astype(dtype) + bias_dot.astype(dtype)
    )
    return out.astype(x.dtype), out_dot.astype(x.dtype)


class ResidualBlock(eqx.Module):
    """`x + LN(Linear(ReLU(LN(Linear(x)))))`: no activation after the addition (ref. code)."""

    linear1: Linear
    norm1: LayerNorm
    linear2: Linear
    norm2: LayerNorm

    def __init__(self, width: int, key: PRNGKeyArray):
        key1, key2 = jax.random.split(key)
        self.linear1 = orthogonal_linear(width, width, math.sqrt(2), key1)
        self.norm1 = LayerNorm(width)
        self.linear2 = orthogonal_linear(width, width, math.sqrt(2), key2)
        self.norm2 = LayerNorm(width)

    def __call__(self, x: Float[Array, " width"]) -> Float[Array, " width"]:
        residual = jax.nn.relu(self.norm1(self.linear1(x)))
        return x + self.norm2(self.linear2(residual))


class BroNet(eqx.Module):
    """BroNet trunk: input layer then `depth` residual blocks; heads are added by the user."""

    input_linear: Linear
    input_norm: LayerNorm
    blocks: tuple[ResidualBlock, ...]

    def __init__(self, in_features: int, width: int, depth: int, key: PRNGKeyArray):
        input_key, *block_keys = jax.random.split(key, depth + 1)
        self.input_linear = orthogonal_linear(in_features, width, math.sqrt(2), input_key)
        self.input_norm = LayerNorm(width)
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
