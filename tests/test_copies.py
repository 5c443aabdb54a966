"""Code copied between scripts on purpose (each script reads as one file): every top-level
definition that two scripts share by name is either an identical copy of sac_brc.py's,
checked here so that a copy cannot drift, or different on purpose, with the reason. A new
shared name fails the last test until it is put in one of the two tables."""

import ast
import itertools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = ("sac_brc", "drq_brc", "offline_brc_bc", "transfer_embedding")
DRQ, OFFLINE, TRANSFER = SCRIPTS[1:]

# name -> the scripts whose copy is identical to sac_brc.py's. transfer_embedding.py's networks
# take `PretrainConfig` (the pretraining run's fields it reads) where sac_brc.py's take `Args`;
# that one word is the only difference allowed.
IDENTICAL = {
    "discounted_returns": (DRQ, TRANSFER),
    "CriticMember": (OFFLINE, TRANSFER),
    "Critic": (OFFLINE, TRANSFER),
    "Actor": (OFFLINE, TRANSFER),
    "TrainState": (OFFLINE, TRANSFER),
    "sample_tanh_gaussian": (OFFLINE, TRANSFER),
    "categorical_td_target": (OFFLINE, TRANSFER),
    "reward_scale": (OFFLINE, TRANSFER),
    "precision_view": (OFFLINE,),
    "resolve_batch_size": (OFFLINE,),
    "Noise": (OFFLINE,),
    "sample_noise": (OFFLINE,),
    "Optimizers": (OFFLINE,),
    "make_optimizers": (OFFLINE,),
    "init_state": (OFFLINE,),
    "policy": (OFFLINE,),
    "critic_losses": (OFFLINE,),
    "critic_loss": (OFFLINE,),
    "temperature_loss": (OFFLINE,),
}

# (name, script) -> why that script's definition differs from sac_brc.py's
DIFFERENT = {
    **{("Args", s): "each script's own flags" for s in SCRIPTS[1:]},
    **{("main", s): "each script's own loop" for s in SCRIPTS[1:]},
    **{("validate", s): "each script's own flags to check" for s in SCRIPTS[1:]},
    **{("make_agent", s): "another learner (DrQ's Q-network; offline's BC actor loss)" for s in (DRQ, OFFLINE)},
    **{("AgentFns", s): "the entry points of that learner" for s in (DRQ, OFFLINE)},
    ("Batch", DRQ): "stacked uint8 frames and discrete actions",
    ("Batch", OFFLINE): "minibatches stacked (updates, batch), gathered on the host from the dataset",
    **{(n, DRQ): "a replay of uint8 frame timelines (frames stored once, stacks rebuilt at sampling)"
       for n in ("ReplayBuffer", "replay_buffer_init", "replay_buffer_bytes", "insert", "sample")},
    ("ReturnNormalizer", DRQ): "clipped rewards, life-loss episodes",
    ("TrainState", DRQ): "one Q-network and its target, no actor or temperature",
    ("precision_view", DRQ): "a convolutional Q-network: encoder and dense layers cast",
    ("uses_task_embedding", OFFLINE): "no --init-from: an offline learner always starts fresh",
    ("uses_task_embedding", TRANSFER): "reads a multi-task checkpoint only",
    ("td_target", DRQ): "categorical double-Q n-step target from shifted next frames, no entropy term; "
                        "also returns online next logits for the q metric",
    ("td_target", OFFLINE): "the next action's entries beyond each task's |A_i| zeroed, as in the dataset",
    ("critic_loss", DRQ): "one Q-network's cross-entropy at the action taken; no ensemble, no mse",
    ("actor_loss", OFFLINE): "TD3+BC: lambda * Q / mean|Q| plus the BC term, padded action entries zeroed; "
                             "returns the BC term and mean Q too",
    ("update_once", DRQ): "samples its own minibatch and random shifts inside the step; one Q-network and a "
                          "Polyak target, no actor or temperature",
    ("update_once", OFFLINE): "BC metrics, and each task's |A_i| for the padding mask",
    ("update_on", OFFLINE): "stacked host batches, one key per update: noise drawn inside the scan, since "
                            "stacking it ahead was not bit-identical under heads",
    ("print_plan", DRQ): "games and one Q-network's parameter count; no FLOPs or transfer",
    ("Run", DRQ): "epsilon in the console line, IQM in the record; "
                  "no recorder, video object or diagnostics",
    ("Run", OFFLINE): "no replay, videos or diagnostics; counts updates and reports the data wait",
}


def definitions(script: str) -> dict[str, str]:
    source = (REPO / f"{script}.py").read_text()
    nodes = ast.parse(source).body
    return {n.name: ast.get_source_segment(source, n) for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


DEFINITIONS = {s: definitions(s) for s in SCRIPTS}


@pytest.mark.parametrize("name", sorted(IDENTICAL))
def test_copies_are_identical_to_sac_brc_s(name):
    original = DEFINITIONS["sac_brc"][name]
    for script in IDENTICAL[name]:
        copy = DEFINITIONS[script][name]
        if script == TRANSFER:
            copy = copy.replace("args: PretrainConfig", "args: Args")
        assert copy == original, f"{script}.py's {name} differs from sac_brc.py's: copy the change over"


def test_every_shared_name_is_listed():
    listed = {(n, s) for n, scripts in IDENTICAL.items() for s in scripts} | set(DIFFERENT)
    shared = set()
    for a, b in itertools.combinations(SCRIPTS, 2):
        for name in DEFINITIONS[a].keys() & DEFINITIONS[b].keys():
            shared |= {(name, s) for s in (a, b) if s != "sac_brc"}
            if "sac_brc" not in (a, b) and name not in DEFINITIONS["sac_brc"]:
                pytest.fail(f"{name} is shared by {a}.py and {b}.py but not sac_brc.py: list it here")
    assert shared == listed, f"unlisted: {sorted(shared - listed)}; stale: {sorted(listed - shared)}"
    for (name, script), why in DIFFERENT.items():
        assert DEFINITIONS[script][name] != DEFINITIONS["sac_brc"][name], f"{script}.{name} is now a copy: {why}?"
