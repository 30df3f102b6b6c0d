"""Small full-batch training loops and synthetic fact sets, shared by the typical claims (C2c) and
the controlled experiments. float64 throughout; deterministic for a given seed."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

OPTIMIZERS = ("adam", "sgd")


def fact_pairs(n_pairs: int) -> tuple[int, int, list[tuple[int, int]]]:
    """``n_pairs`` facts "A r B" with disjoint subjects (0 .. N−1) and objects (N .. 2N−1) and one
    relation token 2N. Returns (vocab = 2N + 1, relation, [(A, B), ...])."""
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 2:
        raise ValueError(f"n_pairs must be an integer >= 2; got {n_pairs!r}")
    return 2 * n_pairs + 1, 2 * n_pairs, [(i, n_pairs + i) for i in range(n_pairs)]


def train(
    params: dict,
    loss_fn: Callable[[dict], torch.Tensor],
    *,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    trainable: tuple[str, ...] | None = None,
    callback: Callable[[int, dict, float], None] | None = None,
    lr_factor: Callable[[int], float] | None = None,
) -> dict:
    """Minimise ``loss_fn(params)`` full-batch for ``steps`` steps; returns new (detached) params.

    Only the names in ``trainable`` move (all by default). ``callback(step, params, loss)`` runs
    before each step and once after the last (with step = steps). ``lr_factor(step)`` scales the
    learning rate of each step (e.g. :func:`cosine_factor`); constant by default.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0; got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}")
    names = tuple(params) if trainable is None else trainable
    unknown = set(names) - set(params)
    if unknown:
        raise ValueError(f"trainable names {sorted(unknown)} are not parameters; have {sorted(params)}")
    p = {k: v.detach().clone().requires_grad_(k in names) for k, v in params.items()}
    leaves = [p[k] for k in names]
    opt = torch.optim.Adam(leaves, lr=lr) if optimizer == "adam" else torch.optim.SGD(leaves, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor) if lr_factor is not None else None
    for step in range(steps):
        opt.zero_grad()
        loss = loss_fn(p)
        if callback is not None:
            callback(step, p, float(loss.detach()))
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    if callback is not None:
        with torch.no_grad():
            callback(steps, p, float(loss_fn(p)))
    return {k: v.detach() for k, v in p.items()}


def cosine_factor(steps: int) -> Callable[[int], float]:
    """Cosine decay ½(1 + cos(π t/steps)) of the learning rate over ``steps`` steps, for ``train``'s ``lr_factor``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * t / steps))
