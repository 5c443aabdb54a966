"""BroNet, the critic/actor modules and the tanh-Gaussian vs NumPy references."""

import math
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sac_brc
from common.bronet import LAYER_NORM_EPS, BroNet, LayerNorm, count_parameters, layer_norm, make_ensemble

# Eager JAX compiles every primitive separately (slow on CPU): build and run under jit.


# Each build compiles for ~1 s, so the few networks used are built once and shared.
_cache = {}


def build_bronet(in_features, width, depth, key):
    return eqx.filter_jit(lambda k: BroNet(in_features, width, depth, k))(key)


def bronet(in_features, width, depth, seed=0):
    name = ("bronet", in_features, width, depth, seed)
    if name not in _cache:
        _cache[name] = build_bronet(in_features, width, depth, jax.random.key(seed))
    return _cache[name]


def build_critic(obs_dim, act_dim, num_tasks, args, key):
    return eqx.filter_jit(lambda k: sac_brc.Critic(obs_dim, act_dim, num_tasks, args, k))(key)


def critic_(num_tasks, **kw):
    """A width-16 critic for obs_dim 6, act_dim 3."""
    name = ("critic", num_tasks, tuple(sorted(kw.items())))
    if name not in _cache:
        _cache[name] = build_critic(6, 3, num_tasks, sac_brc.Args(width=16, **kw), jax.random.key(num_tasks))
    return _cache[name]


def build_actor(obs_dim, act_dim, num_tasks, embedding_dim, args, key):
    return eqx.filter_jit(lambda k: sac_brc.Actor(obs_dim, act_dim, num_tasks, embedding_dim, args, k))(key)


sample_tanh_gaussian = jax.jit(sac_brc.sample_tanh_gaussian)


@eqx.filter_jit
def call(module, *xs):
    return module(*xs)


@eqx.filter_jit
def vcall(module, *xs):
    return jax.vmap(module)(*xs)


# ---------------------------------------------------------------- NumPy reference forward


def np_linear(linear, x):
    w = np.asarray(linear.weight, np.float64)
    b = np.asarray(linear.bias, np.float64)
    out = np.zeros(w.shape[1])  # w: (in, out)
    for i in range(w.shape[1]):
        out[i] = sum(x[j] * w[j, i] for j in range(w.shape[0])) + b[i]
    return out


def np_layer_norm(norm, x, eps=1e-6):
    mean = sum(x) / len(x)
    var = sum((xi - mean) ** 2 for xi in x) / len(x)
    scale = np.asarray(norm.weight, np.float64)
    offset = np.asarray(norm.bias, np.float64)
    return np.array([(xi - mean) / math.sqrt(var + eps) * s + o for xi, s, o in zip(x, scale, offset)])


def np_layer_norm_at(x, weight, bias, eps=1e-6):
    return np_layer_norm(types.SimpleNamespace(weight=weight, bias=bias), x, eps)


def np_layer_norm_grads(x, weight, bias, cotangent, step=1e-6):
    """Central finite differences of sum(cotangent * LN(x)) by (x, weight, bias), in float64."""
    loss = lambda *args: float(np.dot(cotangent, np_layer_norm_at(*args)))
    args = [np.array(a, np.float64) for a in (x, weight, bias)]
    grads = []
    for i, arg in enumerate(args):
        grad = np.zeros_like(arg)
        for j in range(arg.size):
            up, down = [a.copy() for a in args], [a.copy() for a in args]
            up[i][j] += step
            down[i][j] -= step
            grad[j] = (loss(*up) - loss(*down)) / (2 * step)
        grads.append(grad)
    return grads


def np_relu(x):
    return np.array([max(v, 0.0) for v in x])


def np_bronet(net, x):
    x = np.asarray(x, np.float64)
    h = np_relu(np_layer_norm(net.input_norm, np_linear(net.input_linear, x)))
    for block in net.blocks:
        r = np_relu(np_layer_norm(block.norm1, np_linear(block.linear1, h)))
        h = h + np_layer_norm(block.norm2, np_linear(block.linear2, r))
    return h


def member(ensemble, i):
    """Member i of a stacked ensemble as a plain module holding NumPy arrays (for the reference)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[i] if eqx.is_array(leaf) else leaf, ensemble)


def perturb_norms(net, key):
    """Give every LayerNorm a non-trivial scale/offset so the reference checks they are used."""

    def is_norm(x):
        return isinstance(x, LayerNorm)

    leaves, treedef = jax.tree.flatten(net, is_leaf=is_norm)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, k in zip(leaves, keys):
        if is_norm(leaf):
            k1, k2 = jax.random.split(k)
            leaf = eqx.tree_at(
                lambda n: (n.weight, n.bias),
                leaf,
                (
                    1.0 + 0.3 * jax.random.normal(k1, leaf.weight.shape),
                    0.2 * jax.random.normal(k2, leaf.bias.shape),
                ),
            )
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


# ---------------------------------------------------------------- BroNet


def test_layer_norm_eps():
    assert LAYER_NORM_EPS == 1e-6
    net = bronet(7, 16, 2)
    assert net.input_norm.eps == 1e-6
    assert all(b.norm1.eps == 1e-6 and b.norm2.eps == 1e-6 for b in net.blocks)


batched_layer_norm = jax.vmap(layer_norm, (0, None, None, None))  # samples share scale and offset


def layer_norm_and_grads(x, weight, bias, cotangent):
    """LN(x) and the gradients of sum(cotangent * LN(x)) by (x, weight, bias)."""
    loss = lambda *args: jnp.sum(cotangent * batched_layer_norm(*args, 1e-6))
    return batched_layer_norm(x, weight, bias, 1e-6), jax.grad(loss, argnums=(0, 1, 2))(x, weight, bias)


def test_layer_norm_and_its_derivatives_match_numpy_in_float64():
    """The hand-written derivative against finite differences of the NumPy forward: forward
    mode (common/diagnostics.py) and reverse mode, per sample and under vmap (where the shared
    scale and offset sum their samples' gradients)."""
    rng = np.random.default_rng(0)
    xs = 3.0 + 2.0 * rng.normal(size=(3, 12))  # a mean far from 0 exercises E[x^2] - E[x]^2
    weight, bias = 1.0 + 0.3 * rng.normal(size=12), 0.2 * rng.normal(size=12)
    cotangents = rng.normal(size=(3, 12))
    with jax.enable_x64(True):
        norm = LayerNorm(12)
        norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, (jnp.asarray(weight), jnp.asarray(bias)))
        out = np.asarray(vcall(norm, jnp.asarray(xs)))
        _, grads = jax.jit(layer_norm_and_grads)(*(jnp.asarray(a) for a in (xs, weight, bias, cotangents)))
        primals, tangents = (xs[0], weight, bias), tuple(rng.normal(size=(3, 12)))
        _, out_dot = jax.jit(jax.jvp, static_argnums=0)(lambda *a: layer_norm(*a, 1e-6), primals, tangents)
    assert all(g.dtype == jnp.float64 for g in grads)
    step = 1e-6
    shifted = lambda sign: np_layer_norm_at(*(p + sign * step * t for p, t in zip(primals, tangents)))
    want_dot = (shifted(1) - shifted(-1)) / (2 * step)
    np.testing.assert_allclose(np.asarray(out_dot), want_dot, rtol=1e-6, atol=1e-8)
    want = [np_layer_norm_grads(x, weight, bias, c) for x, c in zip(xs, cotangents)]
    for x, y in zip(xs, out):
        np.testing.assert_allclose(y, np_layer_norm(norm, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grads[0]), np.stack([w[0] for w in want]), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(grads[1]), sum(w[1] for w in want), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(grads[2]), sum(w[2] for w in want), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float32])
def test_layer_norm_bfloat16_input(param_dtype):
    """bfloat16 activations (--precision bf16): statistics in float32, output and gradients in
    the dtypes of what they belong to (sac_brc casts scale and offset too, drq_brc does not)."""
    rng = np.random.default_rng(1)
    x, cotangent = rng.normal(size=(2, 32)) + 1.0, rng.normal(size=(2, 32))
    weight, bias = 1.0 + 0.3 * rng.normal(size=32), 0.2 * rng.normal(size=32)
    run = jax.jit(layer_norm_and_grads)
    params = (jnp.asarray(weight, param_dtype), jnp.asarray(bias, param_dtype))
    low = run(jnp.asarray(x, jnp.bfloat16), *params, cotangent)
    full = run(*(jnp.asarray(a, jnp.float32) for a in (x, weight, bias, cotangent)))
    assert low[0].dtype == jnp.bfloat16
    assert [g.dtype for g in low[1]] == [jnp.bfloat16, param_dtype, param_dtype]
    for got, want in zip(jax.tree.leaves(low), jax.tree.leaves(full)):
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), rtol=0.05, atol=0.1)


@pytest.mark.parametrize("in_features,width,depth", [(7, 16, 2), (20, 32, 1), (3, 16, 3)])
def test_bronet_shape_and_forward_matches_numpy(in_features, width, depth):
    key = jax.random.key(in_features + width + depth)
    norm_key, x_key = jax.random.split(key)
    net = bronet(in_features, width, depth)
    assert len(net.blocks) == depth
    xs = jax.random.normal(x_key, (4, in_features)) * 2
    for variant in (net, perturb_norms(net, norm_key)):
        out = vcall(variant, xs)
        assert out.shape == (4, width)
        for x, y in zip(np.asarray(xs), np.asarray(out)):
            np.testing.assert_allclose(y, np_bronet(variant, x), atol=1e-4, rtol=1e-4)


def test_bronet_single_sample_matches_numpy():
    net = bronet(7, 16, 2)
    x = jnp.linspace(-1.0, 2.0, 7)
    y = call(net, x)
    assert y.shape == (16,)
    np.testing.assert_allclose(np.asarray(y), np_bronet(net, np.asarray(x)), atol=1e-4, rtol=1e-4)


def test_residual_has_no_activation_after_addition():
    """With LN offsets very negative the block branch is negative: the output goes below 0."""
    net = bronet(20, 32, 1)
    net = eqx.tree_at(lambda n: n.blocks[-1].norm2.bias, net, jnp.full(32, -5.0))
    y = np.asarray(call(net, jnp.ones(20)))
    assert (y < 0).any()
    np.testing.assert_allclose(y, np_bronet(net, np.ones(20)), atol=1e-4)


@pytest.mark.parametrize("in_features,width,depth", [(7, 16, 2), (20, 32, 1), (3, 16, 3), (7, 64, 2)])
def test_orthogonal_init_gain_sqrt2_zero_bias(in_features, width, depth):
    net = bronet(in_features, width, depth)
    for block in net.blocks:
        for lin in (block.linear1, block.linear2):
            w = np.asarray(lin.weight, np.float64)
            assert w.shape == (width, width)
            np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(width), atol=1e-4)
            np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(width), atol=1e-4)
            np.testing.assert_array_equal(np.asarray(lin.bias), np.zeros(width))
        for norm in (block.norm1, block.norm2):
            np.testing.assert_array_equal(np.asarray(norm.weight), np.ones(width))
            np.testing.assert_array_equal(np.asarray(norm.bias), np.zeros(width))
    # input layer (in < width), stored (in, out): orthonormal rows scaled by sqrt(2)
    w = np.asarray(net.input_linear.weight, np.float64)
    assert w.shape == (in_features, width)
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(in_features), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(net.input_linear.bias), np.zeros(width))
    # the two block layers are not the same matrix
    assert not np.allclose(np.asarray(net.blocks[0].linear1.weight), np.asarray(net.blocks[0].linear2.weight))


def primitives(jaxpr, found: list) -> list:
    """(name, input shapes) of every primitive in a jaxpr, nested jaxprs included."""
    for eqn in jaxpr.eqns:
        found.append((eqn.primitive.name, [getattr(v.aval, "shape", None) for v in eqn.invars]))
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                primitives(inner, found)
    return found


def mt50_critic_members(key):
    """The MT50 critic ensemble at width 32: inputs obs 39 + action 4 + embedding 32."""
    return make_ensemble(lambda k: BroNet(39 + 4 + 32, 32, 2, k), 2, key)


def test_make_ensemble_makes_no_batched_qr():
    """The orthogonal initialiser's QR runs once per matrix, never batched over the members
    (a batched LAPACK call can deadlock jaxlib's CPU backend in jax 0.10)."""
    jaxpr = jax.make_jaxpr(lambda k: eqx.filter(mt50_critic_members(k), eqx.is_array))(jax.random.key(0))
    qr_shapes = [shapes[0] for name, shapes in primitives(jaxpr.jaxpr, []) if name == "qr"]
    assert len(qr_shapes) == 2 * 5  # 2 members x (input layer + 2 blocks x 2 layers)
    assert all(len(shape) == 2 for shape in qr_shapes), qr_shapes


@pytest.mark.parametrize("width", [32, 128])
def test_make_ensemble_equals_the_vmapped_construction(width):
    """Building the members one by one gives exactly what eqx.filter_vmap over the same split
    keys gives (so runs are unchanged by avoiding the batched QR)."""
    make = lambda k: BroNet(43, width, 2, k)
    key = jax.random.key(7)
    ours = make_ensemble(make, 2, key)
    vmapped = eqx.filter_vmap(make)(jax.random.split(key, 2))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(vmapped), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_many_initialisations_in_a_row_finish():
    """50 MT50 critic ensembles in a row, each waited for (a deadlock shows at first use, and
    pytest's global timeout ends it)."""
    for seed in range(50):
        members = mt50_critic_members(jax.random.key(seed))
        jax.block_until_ready(eqx.filter(members, eqx.is_array))


def test_make_ensemble_members_differ():
    ens = eqx.filter_jit(lambda key: make_ensemble(lambda k: BroNet(5, 16, 2, k), 2, key))(jax.random.key(0))
    w = np.asarray(ens.blocks[0].linear1.weight)
    assert w.shape == (2, 16, 16)
    assert ens.input_linear.weight.shape == (2, 5, 16)
    assert ens.input_norm.weight.shape == (2, 16)
    assert not np.allclose(w[0], w[1])
    assert not np.allclose(np.asarray(ens.input_linear.weight[0]), np.asarray(ens.input_linear.weight[1]))
    # each member is itself a properly initialised BroNet
    for i in range(2):
        wi = np.asarray(member(ens, i).blocks[1].linear2.weight, np.float64)
        np.testing.assert_allclose(wi @ wi.T, 2.0 * np.eye(16), atol=1e-4)
    # and the documented batched call evaluates each member on the input
    x = jnp.arange(5.0) / 5
    out = eqx.filter_jit(eqx.filter_vmap(lambda m, x: m(x), in_axes=(eqx.if_array(0), None)))(ens, x)
    assert out.shape == (2, 16)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(out[i]), np_bronet(member(ens, i), np.asarray(x)), atol=1e-4)


def test_count_parameters_small_bronet():
    i, w, d = 7, 16, 2
    net = bronet(i, w, d)
    want = i * w + w + 2 * w + d * (2 * (w * w + w) + 2 * 2 * w)
    assert count_parameters(net) == want
    assert count_parameters(eqx.filter_eval_shape(BroNet, i, w, d, jax.random.key(0))) == want


# ---------------------------------------------------------------- parameter counts (paper Table 1)

TABLE1 = [(256, 1e6), (512, 4e6), (1024, 16e6), (2048, 64e6), (4096, 256e6), (8192, 1e9)]


def abstract_critic(width, **kw):
    args = sac_brc.Args(width=width, **kw)
    return eqx.filter_eval_shape(sac_brc.Critic, 39, 4, 50, args, jax.random.key(0))


@pytest.mark.parametrize("width,table", TABLE1)
def test_critic_block_parameters_match_table1(width, table):
    critic = abstract_critic(width)
    # count_parameters is annotated for a Module, so count the blocks (a tuple) one by one
    blocks = sum(count_parameters(block) for block in critic.members.trunk.blocks)
    total = 2 * blocks  # online + target critic ensembles
    assert abs(total - table) / table < 0.10, (width, total, table)
    # exactly: 2 (online, target) x 2 members x depth 2 x (2 Linear w x w + biases + 2 LN)
    assert total == 2 * 2 * 2 * (2 * (width * width + width) + 2 * 2 * width)


@pytest.mark.parametrize("width", [256, 4096, 8192])
def test_critic_total_parameters_hand_formula(width):
    critic = abstract_critic(width)
    w, depth, atoms, emb = width, 2, 101, 32
    inp = 39 + 4 + emb
    per_member = inp * w + w + 2 * w + depth * (2 * (w * w + w) + 2 * 2 * w) + w * atoms + atoms
    assert count_parameters(critic) == 2 * per_member + 50 * emb
    assert critic.task_embedding.shape == (50, emb)


# ---------------------------------------------------------------- Critic / Actor forward


def np_critic(critic, obs, act, task):
    emb = np.zeros(0)
    if critic.task_embedding is not None:
        e = np.asarray(critic.task_embedding, np.float64)[task]
        emb = e / math.sqrt(sum(v * v for v in e))
    x = np.concatenate([np.asarray(obs, np.float64), np.asarray(act, np.float64), emb])
    outs = []
    for i in range(2):
        m = member(critic.members, i)
        outs.append(np_linear(m.head, np_bronet(m.trunk, x)))
    return np.stack(outs)


def test_critic_forward_batch_embedding():
    obs_dim, act_dim, tasks, batch = 6, 3, 4, 5
    critic = critic_(tasks)
    assert len(critic.members.trunk.blocks) == 2
    key = jax.random.split(jax.random.key(1), 3)
    obs = jax.random.normal(key[0], (batch, obs_dim))
    act = jax.random.uniform(key[1], (batch, act_dim), minval=-1, maxval=1)
    task = jnp.array([0, 3, 1, 1, 2])
    out = call(critic, obs, act, task)
    assert out.shape == (batch, 2, 101)
    for b in range(batch):
        np.testing.assert_allclose(
            np.asarray(out[b]), np_critic(critic, obs[b], act[b], int(task[b])), atol=2e-4, rtol=1e-4
        )
    # the two members differ
    assert not np.allclose(np.asarray(out[:, 0]), np.asarray(out[:, 1]))


def test_critic_embedding_is_l2_normalised():
    critic = critic_(4)
    raw = np.asarray(critic.task_embedding, np.float64)
    assert raw.shape == (4, 32)
    for t in range(4):
        e = np.asarray(critic.embed(jnp.array(t)), np.float64)
        assert math.sqrt(sum(v * v for v in e)) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(e, raw[t] / np.sqrt((raw[t] ** 2).sum()), atol=1e-6)
    # not trivially normalised already (N(0, 1/32) rows have norm ~1 but not exactly)
    assert not np.allclose(np.sqrt((raw**2).sum(-1)), 1.0, atol=1e-3)
    # scaling a row doesn't change the critic's output
    scaled = eqx.tree_at(lambda c: c.task_embedding, critic, critic.task_embedding * 7.0)
    obs, act = jnp.ones(6), jnp.zeros(3)
    np.testing.assert_allclose(
        np.asarray(call(scaled, obs[None], act[None], jnp.array([2]))),
        np.asarray(call(critic, obs[None], act[None], jnp.array([2]))),
        atol=1e-5,
    )


def test_single_task_critic_has_no_embedding():
    critic = eqx.filter_eval_shape(
        lambda k: sac_brc.Critic(6, 3, 1, sac_brc.Args(width=16), k), jax.random.key(0)
    )
    assert critic.task_embedding is None
    assert critic.members.trunk.input_linear.weight.shape == (2, 9, 16)
    out = eqx.filter_eval_shape(lambda c: c(jnp.ones((4, 6)), jnp.ones((4, 3)), jnp.zeros(4, jnp.int32)), critic)
    assert out.shape == (4, 2, 101)


def test_critic_heads_selects_task_slice():
    tasks, atoms = 3, 101
    critic = critic_(tasks, task_conditioning="heads")
    assert critic.task_embedding is None
    assert critic.members.head.weight.shape == (2, 16, tasks * atoms)
    assert critic.members.trunk.input_linear.weight.shape == (2, 9, 16)
    obs = jax.random.normal(jax.random.key(5), (6,))
    act = jnp.array([0.1, -0.5, 0.9])
    full = np.stack(
        [np_linear(member(critic.members, i).head, np_bronet(member(critic.members, i).trunk, np.concatenate([obs, act])))
         for i in range(2)]
    )  # fmt: skip
    assert full.shape == (2, tasks * atoms)
    outs = []
    for k in range(tasks):
        out = np.asarray(call(critic, obs[None], act[None], jnp.array([k]))[0])
        assert out.shape == (2, atoms)
        np.testing.assert_allclose(out, full.reshape(2, tasks, atoms)[:, k], atol=2e-4, rtol=1e-4)
        outs.append(out)
    assert not np.allclose(outs[0], outs[1])


def test_critic_mse_loss_single_output():
    critic = eqx.filter_eval_shape(
        lambda k: sac_brc.Critic(6, 3, 2, sac_brc.Args(width=16, loss="mse"), k), jax.random.key(0)
    )
    out = eqx.filter_eval_shape(lambda c: c(jnp.ones((4, 6)), jnp.ones((4, 3)), jnp.ones(4, jnp.int32)), critic)
    assert out.shape == (4, 2, 1)


@pytest.mark.parametrize("conditioning", ["embedding", "heads"])
def test_actor_forward_matches_numpy(conditioning):
    args = sac_brc.Args(actor_width=16, actor_depth=1, task_conditioning=conditioning)
    obs_dim, act_dim, tasks = 5, 2, 3
    emb_dim = 4 if conditioning == "embedding" else 0
    actor = build_actor(obs_dim, act_dim, tasks, emb_dim, args, jax.random.key(0))
    # make the log-std head large enough to reach the squashing range's ends
    actor = eqx.tree_at(lambda a: a.log_std_head.weight, actor, actor.log_std_head.weight * 20)
    heads = tasks if conditioning == "heads" else 1
    np.testing.assert_allclose(
        np.asarray(actor.log_std_head.weight.T @ actor.log_std_head.weight) / 400,
        np.eye(act_dim * heads),
        atol=1e-4,
    )
    for k in range(tasks):
        obs = jax.random.normal(jax.random.key(10 + k), (obs_dim,)) * 3
        emb = jax.random.normal(jax.random.key(20 + k), (emb_dim,))
        mean, log_std = call(actor, obs, emb, jnp.array(k))
        assert mean.shape == (act_dim,) and log_std.shape == (act_dim,)
        h = np_bronet(actor.trunk, np.concatenate([np.asarray(obs), np.asarray(emb)]))
        m = np_linear(actor.mean_head, h).reshape(heads, act_dim)[k if heads > 1 else 0]
        raw = np_linear(actor.log_std_head, h).reshape(heads, act_dim)[k if heads > 1 else 0]
        ls = np.array([-10.0 + 12.0 * 0.5 * (1.0 + math.tanh(v)) for v in raw])
        np.testing.assert_allclose(np.asarray(mean), m, atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(log_std), ls, atol=2e-3, rtol=1e-4)
        assert (np.asarray(log_std) >= -10.0).all() and (np.asarray(log_std) <= 2.0).all()


# ---------------------------------------------------------------- tanh-Gaussian


def np_tanh_gaussian_log_prob(action, mean, log_std):
    total = 0.0
    for a, m, ls in zip(action, mean, log_std):
        u = math.atanh(a)
        std = math.exp(ls)
        total += -0.5 * ((u - m) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
        total -= math.log(1.0 - math.tanh(u) ** 2)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tanh_gaussian_log_prob_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    act_dim = 6
    for i in range(10):
        mean = rng.uniform(-1.0, 1.0, size=act_dim).astype(np.float32)
        log_std = rng.uniform(-2.0, -0.5, size=act_dim).astype(np.float32)
        noise = jax.random.normal(jax.random.key(100 * seed + i), (act_dim,))
        action, log_prob = sample_tanh_gaussian(jnp.asarray(mean), jnp.asarray(log_std), noise)
        assert action.shape == (act_dim,) and log_prob.shape == ()
        a = np.asarray(action, np.float64)
        assert (np.abs(a) < 1).all()
        want = np_tanh_gaussian_log_prob(a, mean.astype(np.float64), log_std.astype(np.float64))
        assert float(log_prob) == pytest.approx(want, abs=2e-3, rel=1e-4)


def test_tanh_gaussian_samples_have_the_right_distribution():
    mean = jnp.array([0.3, -0.8, 0.0])
    log_std = jnp.array([-1.0, -0.5, -2.0])
    noise = jax.random.normal(jax.random.key(0), (4000, 3))
    actions, log_probs = jax.vmap(sac_brc.sample_tanh_gaussian, in_axes=(None, None, 0))(mean, log_std, noise)
    u = np.arctanh(np.asarray(actions, np.float64))
    np.testing.assert_allclose(u.mean(0), np.asarray(mean), atol=0.03)
    np.testing.assert_allclose(u.std(0), np.exp(np.asarray(log_std)), rtol=0.05)
    assert np.isfinite(np.asarray(log_probs)).all()
    # the noise matters
    assert not np.allclose(np.asarray(actions[0]), np.asarray(actions[1]))


def test_tanh_gaussian_saturated_log_prob_finite():
    """|u| ~ 10: tanh(u) rounds to 1 in float32, but the log-det term stays finite and right."""
    mean = jnp.array([10.0, -9.0])
    log_std = jnp.array([-10.0, -10.0])
    action, log_prob = sample_tanh_gaussian(mean, log_std, jax.random.normal(jax.random.key(0), (2,)))
    assert np.isfinite(float(log_prob))
    assert (np.abs(np.asarray(action)) <= 1).all()
    # u = mean + 4.5e-5 * eps, so -log(1 - tanh(u)^2) ~= 2|m| - 2 log 2 (within ~1e-3 for |eps| < 5),
    # and the Gaussian part lies in [-0.5 * 25 - log_std - 0.5 log 2 pi, -log_std - 0.5 log 2 pi]
    log_det = sum(2 * abs(m) - 2 * math.log(2) + 2 * math.log1p(math.exp(-2 * abs(m))) for m in (10.0, -9.0))
    upper = 2 * (10.0 - 0.5 * math.log(2 * math.pi)) + log_det
    assert upper - 25.0 - 1e-2 <= float(log_prob) <= upper + 1e-2
