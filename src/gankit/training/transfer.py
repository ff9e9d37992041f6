"""``train.init_from``: start a new run from the weights of another run or checkpoint
(fine-tuning, or transfer to a new, small data set).

G, D and the EMA generator are loaded tensor by tensor. The model settings must match except
``model.n_classes``: when the class count differs, every tensor whose shape differs only in a
dimension equal to the class count (class embeddings, per-class BN gains and biases, D's
projection embedding and auxiliary head, their spectral-norm vectors) keeps its fresh
initialisation, and the names are reported. Class indices are not remapped: checkpoints do not
record class names, so class ``i`` of the source is only reused as class ``i`` when both runs
have the same count. Optimizer states, step and RNG start fresh.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gankit import checkpoint as ckpt_io
from gankit.errors import GankitError, first_names
from gankit.run import find_checkpoint


def _class_shaped(src: torch.Size, dst: torch.Size, k_src: int, k_dst: int) -> bool:
    """True when ``src`` and ``dst`` differ only in dimensions that are ``k_src`` vs ``k_dst``."""
    return len(src) == len(dst) and all(
        a == b or (a == k_src and b == k_dst) for a, b in zip(src, dst)
    )


def load_matching(
    net: nn.Module, weights: dict[str, torch.Tensor], k_src: int, k_dst: int, where: str
) -> list[str]:
    """Copy ``weights`` into ``net``'s tensors of the same name and shape.

    Returns:
        The names kept at their fresh values because they depend on the class count.
    Raises:
        GankitError: tensors that only one side has (e.g. attention layers, an auxiliary
            classifier or another architecture), or a shape that differs in a dimension other
            than the class count.
    """
    state = net.state_dict()
    only_here = [k for k in state if k not in weights]
    only_there = [k for k in weights if k not in state]
    if only_here or only_there:
        sides = [(only_here, "not in the source"), (only_there, "only in the source")]
        lists = "; ".join(f"{why}: {first_names(names)}" for names, why in sides if names)
        raise GankitError(
            f"train.init_from: {where} has other tensors than this model ({lists}); the model "
            "settings must match (only model.n_classes may differ)"
        )
    reinit = []
    for name, value in state.items():
        src = weights[name]
        if src.shape == value.shape:
            state[name] = src
        elif k_src != k_dst and _class_shaped(src.shape, value.shape, k_src, k_dst):
            reinit.append(name)
        else:
            raise GankitError(
                f"train.init_from: {where} {name} has shape {tuple(src.shape)} there but "
                f"{tuple(value.shape)} here; the model settings must match (only "
                "model.n_classes may differ)"
            )
    net.load_state_dict(state)
    return reinit


def init_from(
    source: str | Path, nets: dict[str, nn.Module], n_classes: int, device: torch.device
) -> list[str]:
    """Load ``nets`` (``{"G": G, "D": D, "G_ema": ...}``) from run or checkpoint ``source``.

    Args:
        source: a run directory (its latest checkpoint) or a checkpoint directory.
        nets: the networks of the new run, by checkpoint file name.
        n_classes: the new run's ``model.n_classes``.
        device: where the loaded tensors go.
    Returns:
        Human-readable lines saying what was loaded and what was re-initialised.
    Raises:
        GankitError: no such run/checkpoint, a damaged or unreadable checkpoint file, or a
            model that differs beyond the class count.
    """
    ckpt = find_checkpoint(source)
    k_src = ckpt_io.load_config(ckpt).model.n_classes
    lines = [f"init_from: weights of {ckpt}"]
    for which, net in nets.items():
        weights = ckpt_io.load_weights(ckpt, which, device)
        reinit = load_matching(net, weights, k_src, n_classes, which)
        if reinit:
            lines.append(
                f"init_from: {which}: {k_src} classes there, {n_classes} here: class-dependent "
                f"weights re-initialised: {', '.join(reinit)}"
            )
    return lines
