"""Seeded draws for claim runners and the search kit of the negative controls.

* :func:`per_draw_cases` / :func:`run_per_draw` — the one generic per-draw runner: ``draws`` seeded
  :func:`~mdm_props.strategies.sample_case` draws, each checked by a claim checker.
* :func:`search` — examine candidate draws until a violation is found (a :class:`Counterexample`).
* :func:`seeded_cases`, :func:`small_d_cases`, :func:`learned_positions`, :func:`all_pairs` — the
  candidate streams the controls search.
* :func:`descend_alignment`, :func:`search_negative_alignment` — the targeted search: Adam on the
  storage-gradient cosine over chosen parameters, then a confirmation beyond rounding.
* :func:`describe` — a draw as a plain dict, enough to re-create it (:func:`case_from_description`).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable, Iterable, Iterator

import torch

from . import rounding
from .checks import CheckResult, Counterexample
from .facts import Query, Template
from .gradients import storage_gradient_closed_form
from .model import ModelConfig
from .params import resolve_device
from .storage import arm_queries, first_factor, pair_queries, storage_alignment
from .strategies import ETAS, Case, sample_case
from .training import train
from .validation import require_int, require_seed

DESCENT_STEPS, DESCENT_LR = 60, 0.1  # the targeted search: Adam on the storage-gradient cosine


def runner_rng(draws: int, seed: int) -> random.Random:
    """``random.Random(seed)`` for a runner, after checking ``draws`` (an integer >= 1) and ``seed`` (a
    non-negative integer: ``random.Random(−s)`` would silently alias ``random.Random(s)``)."""
    require_int("draws", draws, 1)
    return random.Random(require_seed("seed", seed))


def case_args(case: Case, device) -> tuple[dict, ModelConfig, Template, int, int]:
    """(params, cfg, template, A, B): the positional arguments of every per-draw claim checker."""
    return case.params(device), case.cfg, case.template, case.A, case.B


def per_draw_cases(
    draws: int,
    seed: int,
    *,
    either_orthonormal: bool = False,
    step: bool = False,
    sample: Callable = sample_case,
    **sample_kwargs,
) -> Iterator:
    """``draws`` seeded draws: ``sample(rng, **sample_kwargs)`` each (default a
    :class:`~mdm_props.strategies.Case`; a deep claim passes its own sampler, e.g.
    :func:`mdm_props.layer_storage.sample_storage_case`), with orthonormal embeddings with probability ½
    when ``either_orthonormal``, paired with a step size from ``ETAS`` when ``step``."""
    require_int("draws", draws, 1)
    rng = random.Random(require_seed("seed", seed))
    for _ in range(draws):
        extra: dict = {"orthonormal": rng.random() < 0.5} if either_orthonormal else {}
        case = sample(rng, **extra, **sample_kwargs)
        yield (case, rng.choice(ETAS)) if step else case


def run_per_draw(
    check: Callable[..., list[CheckResult]],
    draws: int,
    seed: int,
    device="cpu",
    *,
    args: Callable = case_args,
    step: bool = False,
    either_orthonormal: bool = False,
    sample: Callable = sample_case,
    **sample_kwargs,
) -> list[CheckResult]:
    """``check(*args(case, device)[, eta])`` on each of :func:`per_draw_cases` (``sample`` draws the cases);
    every result carries the draw (``details["draw"]``: the case's own ``describe()`` when it has one, else
    :func:`describe`) so a failure can be replayed from its report."""
    resolve_device(device)
    out = []
    for item in per_draw_cases(
        draws, seed, either_orthonormal=either_orthonormal, step=step, sample=sample, **sample_kwargs
    ):
        case, extra = (item[0], (item[1],)) if step else (item, ())
        record = case.describe if hasattr(case, "describe") else functools.partial(describe, case)
        draw = record(
            **({"eta": item[1]} if step else {}),
            **({} if args is case_args else {"args": f"{args.__module__}:{args.__qualname__}"}),
        )
        out += [dataclasses.replace(r, details={**r.details, "draw": draw}) for r in check(*args(case, device), *extra)]
    return out


def replay(claim, draw: dict, device="cpu") -> list[CheckResult]:
    """Re-run the draw that a runner recorded (``details["draw"]``) for ``claim`` (a registered id or
    :class:`~mdm_props.registry.Claim`) with the claim's registered checker. The draw is data: every field
    is checked and the argument builder comes from the registry, exactly as for ``verify --replay``
    (:func:`mdm_props.recorded_draws.replay_arguments`); a ValueError says what is wrong."""
    from . import registry
    from .recorded_draws import replay_arguments

    check, arguments = replay_arguments(registry.get(claim) if isinstance(claim, str) else claim, draw)
    return check(*arguments(resolve_device(device)))


def search(claim: str, dropped: str, draws: int, candidates: Iterable, violation) -> Counterexample:
    """Examine ``candidates`` (an iterable of draws) until ``violation(candidate)`` returns
    ``(observed, example_dict)`` instead of None, at most ``draws`` of them."""
    require_int("draws", draws, 1)
    n = 0
    for n, cand in enumerate(candidates, 1):
        hit = violation(cand)
        if hit is not None:
            observed, example = hit
            return Counterexample(claim, dropped, True, n, example, float(observed))
        if n >= draws:
            break
    return Counterexample(claim, dropped, False, n)


def template_tuple(template: Template) -> tuple:
    return (template.length, template.a, template.b, template.fillers)


def describe(case: Case, **more) -> dict:
    """A draw as a plain dict (``more`` overrides entries, e.g. the pair actually examined)."""
    c = case.cfg
    return {
        "pos": c.pos,
        "vocab": c.vocab,
        "d_model": c.d_model,
        "d_head": c.d_head,
        "n_heads": c.n_heads,
        "attention": c.attention,
        "absolute_kind": c.absolute_kind,
        "rope_base": c.rope_base,
        "merged_ov": c.merged_ov,
        "seed": case.seed,
        "scale": case.scale,
        "orthonormal": case.orthonormal,
        "template": template_tuple(case.template),
        "A": case.A,
        "B": case.B,
        **more,
    }


def case_from_description(d: dict) -> Case:
    """The :class:`~mdm_props.strategies.Case` that :func:`describe` wrote (extra keys are ignored)."""
    try:
        cfg = ModelConfig(
            vocab=d["vocab"],
            d_model=d["d_model"],
            d_head=d["d_head"],
            n_heads=d["n_heads"],
            pos=d["pos"],
            rope_base=d["rope_base"],
            absolute_kind=d["absolute_kind"],
            attention=d["attention"],
            merged_ov=d.get("merged_ov", True),
        )
        length, a, b, fillers = d["template"]
        return Case(
            cfg, d["seed"], d["scale"], d["orthonormal"], Template(length, a, b, tuple(fillers)), d["A"], d["B"]
        )
    except KeyError as exc:
        raise ValueError(
            f"description is missing the key {exc.args[0]!r}; expected the keys written by describe()"
        ) from None


def seeded_cases(seed: int, **kwargs) -> Iterator[tuple[random.Random, Case]]:
    """An endless seeded stream of (rng, :func:`~mdm_props.strategies.sample_case` draw) for searches."""
    rng = random.Random(require_seed("seed", seed))
    while True:
        yield rng, sample_case(rng, **kwargs)


def small_d_cases(seed: int) -> Iterator[tuple[random.Random, Case]]:
    """Non-orthonormal draws in d_model = 2 … 4, where embedding overlaps are large."""
    rng = random.Random(require_seed("seed", seed))
    while True:
        yield rng, sample_case(rng, orthonormal=False, d_model=rng.randint(2, 4))


def learned_positions(cases: Iterable) -> Iterator[tuple[random.Random, Case]]:
    """The same draws with learned (trainable) absolute positions."""
    for rng, case in cases:
        yield rng, dataclasses.replace(case, cfg=dataclasses.replace(case.cfg, absolute_kind="learned"))


def all_pairs(case: Case) -> Iterator[tuple[int, int, Template]]:
    """Every ordered pair A ≠ B of the draw's vocabulary, each in the canonical "A r B" template."""
    V = case.cfg.vocab
    for A in range(V):
        for B in range(V):
            if A != B:
                free = min(t for t in range(V) if t not in (A, B))
                yield A, B, Template(3, 0, 2, (free,))


def mdm_case_queries(case: Case) -> tuple[Query, Query]:
    return pair_queries(case.template, case.A, case.B, case.cfg.vocab)


def arm_case_queries(case: Case) -> tuple[Query, Query]:
    return arm_queries(case.template, case.A, case.B, case.cfg.vocab)


def alignment_cosine(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """⟨G_f, G_r⟩/(‖G_f‖‖G_r‖) from the closed-form gradients (differentiable in the parameters)."""
    G_f = storage_gradient_closed_form(params, cfg, fq)
    G_r = storage_gradient_closed_form(params, cfg, rq)
    return (G_f * G_r).sum() / (G_f.norm() * G_r.norm())


def descend_alignment(
    params: dict,
    cfg: ModelConfig,
    fq: Query,
    rq: Query,
    names: tuple[str, ...],
    steps: int = DESCENT_STEPS,
    lr: float = DESCENT_LR,
) -> dict:
    """A targeted search step: Adam on :func:`alignment_cosine` over the parameters ``names`` only
    (the others, e.g. orthonormal token embeddings, stay as drawn)."""
    return train(params, lambda p: alignment_cosine(p, cfg, fq, rq), steps=steps, lr=lr, trainable=names)


def negative_alignment(params: dict, cfg: ModelConfig, fq: Query, rq: Query):
    """(⟨G_f, G_r⟩, details) when ⟨G_f, G_r⟩ < 0 beyond its rounding bound (autograd), else None."""
    al = storage_alignment(params, cfg, fq, rq)
    bound = rounding.STORAGE_SAFETY * al.ip_err
    if al.ip < -bound:
        return al.ip, {
            "inner_product": al.ip,
            "bound": bound,
            "first_factor": float(first_factor(al.f.p, fq.target, al.r.p, rq.target)),
        }
    return None


def search_negative_alignment(
    claim: str, dropped: str, draws: int, cases, queries, names, device, confirm=negative_alignment
) -> Counterexample:
    """Seeded search for a violation ``confirm(params, cfg, fq, rq)`` (default: ⟨G_f, G_r⟩ < 0 beyond
    rounding): each draw is examined as drawn, then after :func:`descend_alignment` over ``names``
    (which lowers the storage alignment); ``queries(case)`` gives (fq, rq)."""
    resolve_device(device)

    def violation(item):
        _, case = item
        params = case.params(device)
        fq, rq = queries(case)
        for stage in ("as drawn", "after descent"):
            if stage == "after descent":
                params = descend_alignment(params, case.cfg, fq, rq, names)
            hit = confirm(params, case.cfg, fq, rq)
            if hit is not None:
                moved = list(names) if stage == "after descent" else []
                return hit[0], describe(case, stage=stage, moved=moved, **hit[1])
        return None

    return search(claim, dropped, draws, cases, violation)


ARM_DROPPED = "H-bi (ARM: causal attention, next-token targets)"


def search_arm(claim: str, draws: int, seed: int, device, confirm=negative_alignment) -> Counterexample:
    """The ARM negative control of a storage claim: :func:`search_negative_alignment` over causal draws
    with the ARM's queries (forward → B, reverse → A), descending on W_Q, W_K and W_OV."""
    return search_negative_alignment(
        claim,
        ARM_DROPPED,
        draws,
        seeded_cases(seed, attention="causal"),
        arm_case_queries,
        ("W_Q", "W_K", "W_OV"),
        device,
        confirm=confirm,
    )
