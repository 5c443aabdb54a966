"""One update, number for number: sac_brc.py against the authors' code.

Builds the authors' agent (naumix/BiggerRegularizedCategorical, `jaxrl.agent.brc_learner.BRC`)
and ours for a small configuration, copies the authors' initial parameters into our modules,
feeds both the same minibatches, the same raw rewards and return bound G_i, and the same
sampling noise (the standard normals their update draws, recovered from their own PRNG keys
and checked against their distribution's sample), then compares the losses and every
parameter after one update and after the UTD scan of two.

Needs the authors' stack and ours in one environment, so it is not part of CI
(docs/side-by-side.md):

    /path/to/authors-venv/bin/python benchmarks/one_update_check.py --authors-dir ~/BiggerRegularizedCategorical
    ... --precision f32    # as trained: differences at float32 rounding

Exit status 1 if any compared quantity differs beyond `--rtol`.
"""

import argparse
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SGD_LR = 1e-3
OPTIMIZERS = {
    # Adam's first step is lr * g / (|g| + eps) = lr * sign(g): it hides the gradient's size, and
    # where a gradient is within float error of zero its sign (so the step) can flip. With every
    # optimiser replaced by SGD on both sides, a parameter's change is -lr times its gradient.
    "sgd": f"SGD with learning rate {SGD_LR:g} on both sides (a parameter's change is -lr x its gradient)",
    "adam": "AdamW / Adam as trained",
}
CONFIGS = {  # name: (tasks, obs dim, action dim); single-task is cartpole-sized, multi-task MT-sized
    "single-task": (1, 5, 1),
    "multi-task": (2, 17, 6),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-dir", type=Path, required=True, help="a clone of naumix/BiggerRegularizedCategorical")
    parser.add_argument("--width", type=int, default=64, help="critic width (the actor is 256 wide in both)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("f64", "f32"), default="f64",
                        help="f64: both agents in float64, where float rounding cannot hide a difference in the "
                             "maths; f32: as trained")  # fmt: skip
    parser.add_argument("--rtol", type=float, help="largest relative difference that passes (default 1e-6; f32: 5e-2)")
    args = parser.parse_args()
    args.x64 = args.precision == "f64"
    # float32 parameters round at ~1.2e-7 x their size, against steps of lr * g ~ 3e-4 and target
    # steps of tau * lr * g ~ 1.5e-6: a 1-ulp difference is ~1e-4 .. 4e-2 of a step
    args.rtol = args.rtol or (1e-6 if args.x64 else 5e-2)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    if not (args.authors_dir / "jaxrl" / "agent" / "brc_learner.py").exists():
        sys.exit(f"error: --authors-dir {args.authors_dir}: no jaxrl/agent/brc_learner.py there; "
                 "clone https://github.com/naumix/BiggerRegularizedCategorical and pass its path")  # fmt: skip
    sys.path.insert(1, str(args.authors_dir.resolve()))

    worst = 0.0
    for name, (num_tasks, obs_dim, act_dim) in CONFIGS.items():
        for optimizer in ("sgd", "adam"):
            print(f"\n## {name}: {num_tasks} task(s), obs {obs_dim}, action {act_dim}, critic width {args.width}, "
                  f"batch {args.batch_size}; optimisers: {OPTIMIZERS[optimizer]}\n")  # fmt: skip
            worst = max(worst, compare(num_tasks, obs_dim, act_dim, optimizer, args))
    print(f"\nlargest relative difference: {worst:.2e} ({'pass' if worst <= args.rtol else 'FAIL'} at {args.rtol:g})")
    sys.exit(0 if worst <= args.rtol else 1)


def compare(num_tasks: int, obs_dim: int, act_dim: int, optimizer: str, cli) -> float:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jaxrl.agent.brc_learner import BRC, _do_multiple_updates
    from jaxrl.agent.update import build_actor_input
    from jaxrl.normalizer import RewardNormalizer
    from jaxrl.utils import Batch as TheirBatch

    import sac_brc

    utd, batch_size = 2, cli.batch_size
    theirs = BRC(cli.seed, np.zeros((1, obs_dim), np.float32), np.zeros((1, act_dim), np.float32),
                 num_tasks=num_tasks, updates_per_step=utd, width_critic=cli.width)  # fmt: skip
    args = sac_brc.Args(width=cli.width, batch_size=batch_size, utd=utd)
    if optimizer == "sgd":
        for model in ("actor", "critic", "temp"):
            params = getattr(theirs, model).params
            setattr(theirs, model, getattr(theirs, model).replace(tx=optax.sgd(SGD_LR), opt_state=optax.sgd(SGD_LR).init(params)))
        adamw, adam = optax.adamw, optax.adam  # make_agent builds its optimisers from these
        optax.adamw = optax.adam = lambda *args, **kwargs: optax.sgd(SGD_LR)
    try:
        state, fns = sac_brc.make_agent(args, num_tasks, obs_dim, act_dim, sac_brc.resolve_batch_size(args, num_tasks), jax.random.key(cli.seed))
    finally:
        if optimizer == "sgd":
            optax.adamw, optax.adam = adamw, adam
    if cli.x64:  # every parameter and optimiser state in float64, on both sides
        to64 = lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
        for model in ("actor", "critic", "target_critic", "temp"):
            m = getattr(theirs, model)
            setattr(theirs, model, m.replace(params=jax.tree.map(to64, m.params), opt_state=jax.tree.map(to64, m.opt_state)))
        state = jax.tree.map(lambda x: to64(x) if isinstance(x, jax.Array) else x, state)
    state = copy_parameters(theirs, state, sac_brc)

    # the same minibatches: raw rewards, some terminal transitions, random tasks
    rng = np.random.default_rng(cli.seed)
    shape = (utd, batch_size)
    obs = rng.normal(size=(*shape, obs_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, (*shape, act_dim)).astype(np.float32)
    rewards = rng.uniform(0, 1, shape).astype(np.float32)
    masks = (rng.random(shape) > 0.1).astype(np.float32)
    next_obs = rng.normal(size=(*shape, obs_dim)).astype(np.float32)
    task_ids = rng.integers(0, num_tasks, shape).astype(np.int32)
    max_abs_return = rng.uniform(50, 150, num_tasks).astype(np.float32)  # G_i

    # theirs: rewards scaled on the host by their RewardNormalizer with the same G_i
    normalizer = RewardNormalizer(num_tasks, target_entropy=theirs.target_entropy, discount=theirs.discount)
    normalizer.returns_max_norm, normalizer.returns_min_norm = max_abs_return, -0.5 * max_abs_return
    if cli.x64:
        obs, actions, rewards, next_obs = (x.astype(np.float64) for x in (obs, actions, rewards, next_obs))
        masks, max_abs_return = masks.astype(np.float64), max_abs_return.astype(np.float64)
    their_batches = normalizer.normalize(
        TheirBatch(obs, actions, rewards, masks, next_obs, task_ids), theirs.get_temperature()
    )
    ours_batches = sac_brc.Batch(jnp.asarray(task_ids), jnp.asarray(obs), jnp.asarray(actions),
                                 jnp.asarray(rewards), jnp.asarray(next_obs), jnp.asarray(1.0 - masks),
                                 jnp.asarray(task_ids))  # fmt: skip

    # the noise: their update k splits its key into (rng, actor_key, critic_key) and samples the
    # next action with critic_key and the actor's action with actor_key, both over the whole batch
    key, critic_noise, actor_noise = theirs.rng, [], []
    for k in range(utd):
        key, actor_key, critic_key = jax.random.split(key, 3)
        critic_noise.append(jax.random.normal(critic_key, (batch_size, act_dim)))
        actor_noise.append(jax.random.normal(actor_key, (batch_size, act_dim)))
    check_noise_reading(theirs, their_batches, critic_noise[0], jax.random.split(theirs.rng, 3)[2], build_actor_input)
    noises = sac_brc.Noise(jnp.stack(critic_noise), jnp.stack(actor_noise))

    worst = 0.0
    print("| after | quantity | ours | authors' | max abs difference | relative |\n|---|---|---|---|---|---|")
    for num_updates in (1, utd):
        take = lambda tree: jax.tree.map(lambda x: x[:num_updates], tree)
        _, _, actor, critic, target_critic, temp, info = _do_multiple_updates(
            theirs.rng, theirs.actor, theirs.critic, theirs.target_critic, theirs.temp, take(their_batches),
            theirs.discount, theirs.tau, theirs.target_entropy, theirs.num_bins, theirs.v_max, theirs.multitask,
            theirs.step, num_updates,
        )  # fmt: skip
        ours, metrics = fns.update_on(state, take(ours_batches), take(noises), jnp.asarray(max_abs_return))
        label = f"{num_updates} update{'s' if num_updates > 1 else ''}"
        if num_updates == 1:  # our metrics average over the scan; theirs are the last update's
            alpha = float(jnp.exp(state.log_alpha))
            rows = [
                ("critic loss", float(metrics["critic_loss"]), float(info["critic_loss"])),
                ("actor loss", float(metrics["actor_loss"]), float(info["actor_loss"])),
                ("entropy", float(metrics["entropy"]), float(info["entropy"])),
                ("temperature loss", alpha * (float(metrics["entropy"]) - theirs.target_entropy), float(info["temp_loss"])),
            ]  # fmt: skip
            for quantity, a, b in rows:
                rel = abs(a - b) / max(abs(b), 1e-12)
                worst = max(worst, rel)
                print(f"| {label} | {quantity} | {a:.6g} | {b:.6g} | {abs(a - b):.2e} | {rel:.2e} |")
        updated = types.SimpleNamespace(actor=actor, critic=critic, target_critic=target_critic, temp=temp)
        expected = copy_parameters(updated, state, sac_brc)  # their updated parameters, in our modules
        for group, get in parameter_groups(num_tasks > 1).items():
            # the change made by the update(s), not the parameters, which move by ~lr per step
            before, a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(get(s))]) for s in (state, ours, expected))
            diff = np.abs((a - before) - (b - before))
            rel = diff.max() / max(np.abs(b - before).max(), 1e-12)
            if optimizer == "sgd":
                worst = max(worst, rel)
                what = "gradient step"
            else:  # sign flips where g ~ 0 are expected: count them instead
                flipped = np.mean(diff > 0.5 * np.abs(b - before).max())
                what = f"change ({100 * flipped:.2f}% of {diff.size} steps differ by > lr / 2)"
            print(f"| {label} | {group}: {what} | {np.abs(a - before).max():.4g} | {np.abs(b - before).max():.4g} "
                  f"| {diff.max():.2e} | {rel:.2e} |")  # fmt: skip
    return worst


def check_noise_reading(theirs, batches, noise, critic_key, build_actor_input) -> None:
    """Their first next-action sample equals tanh(mean + std * noise) with the noise read above."""
    import jax.numpy as jnp

    inputs = build_actor_input(theirs.critic, batches.next_observations[0], batches.task_ids[0], theirs.multitask)
    dist = theirs.actor(inputs)
    sample = dist.sample(seed=critic_key)
    base = dist.distribution
    rebuilt = jnp.tanh(base.loc + base.scale_diag * noise)
    if not jnp.allclose(sample, rebuilt, atol=1e-5, rtol=1e-5):
        sys.exit("error: the authors' action sample is not tanh(mean + std * normal(key)): "
                 "their distribution draws its noise differently from what this check assumes")  # fmt: skip


def parameter_groups(multitask: bool) -> dict:
    groups = {
        "critic trunk": lambda s: s.critic.members.trunk,
        "critic head": lambda s: s.critic.members.head,
        "target critic": lambda s: s.target_critic.members,
        "actor": lambda s: s.actor,
        "log temperature": lambda s: s.log_alpha,
    }
    if multitask:
        groups["task embedding"] = lambda s: s.critic.task_embedding
    return groups


def copy_parameters(theirs, state, sac_brc):
    """Our TrainState with the authors' actor, critic, target critic and temperature."""
    import equinox as eqx
    import jax.numpy as jnp

    def linear(ours, dense):  # both (in, out); ensembles lead with 2
        return eqx.tree_at(lambda l: (l.weight, l.bias), ours, (dense["kernel"], dense["bias"]))

    def norm(ours, layer_norm):
        return eqx.tree_at(lambda n: (n.weight, n.bias), ours, (layer_norm["scale"], layer_norm["bias"]))

    def bronet(ours, params, head=None):
        ours = eqx.tree_at(lambda b: b.input_linear, ours, linear(ours.input_linear, params["Dense_0"]))
        ours = eqx.tree_at(lambda b: b.input_norm, ours, norm(ours.input_norm, params["LayerNorm_0"]))
        blocks = []
        for i, block in enumerate(ours.blocks):
            p = params[f"BronetBlock_{i}"]
            block = eqx.tree_at(lambda b: b.linear1, block, linear(block.linear1, p["Dense_0"]))
            block = eqx.tree_at(lambda b: b.norm1, block, norm(block.norm1, p["LayerNorm_0"]))
            block = eqx.tree_at(lambda b: b.linear2, block, linear(block.linear2, p["Dense_1"]))
            block = eqx.tree_at(lambda b: b.norm2, block, norm(block.norm2, p["LayerNorm_1"]))
            blocks.append(block)
        return eqx.tree_at(lambda b: b.blocks, ours, tuple(blocks))

    def critic(ours, params):
        net = params["q_value_ensemble"]["q_value_ensemble"]["critic"]
        members = eqx.tree_at(lambda m: m.trunk, ours.members, bronet(ours.members.trunk, net))
        members = eqx.tree_at(lambda m: m.head, members, linear(members.head, net["Dense_1"]))
        ours = eqx.tree_at(lambda c: c.members, ours, members)
        if ours.task_embedding is not None:
            ours = eqx.tree_at(lambda c: c.task_embedding, ours, params["task_embedding"]["embeddings"]["embedding"])
        return ours

    actor = state.actor
    actor = eqx.tree_at(lambda a: a.trunk, actor, bronet(actor.trunk, theirs.actor.params["BroNet_0"]))
    actor = eqx.tree_at(lambda a: a.mean_head, actor, linear(actor.mean_head, theirs.actor.params["Dense_0"]))
    actor = eqx.tree_at(lambda a: a.log_std_head, actor, linear(actor.log_std_head, theirs.actor.params["Dense_1"]))
    return eqx.tree_at(
        lambda s: (s.actor, s.critic, s.target_critic, s.log_alpha),
        state,
        (actor, critic(state.critic, theirs.critic.params), critic(state.target_critic, theirs.target_critic.params),
         jnp.asarray(theirs.temp.params["log_temp"], state.log_alpha.dtype)),
    )  # fmt: skip


if __name__ == "__main__":
    main()
