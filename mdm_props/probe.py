"""``mdm-props probe``: the mechanism's signatures, layer by layer, in the model a checkpoint defines (THEORY §2, §2b).

The probe reads a model through an adapter (:mod:`mdm_props.adapters`; checkpoints through
:mod:`mdm_props.checkpoint_reader`) and first says **what it reads**: an MDM (bidirectional attention, masked
queries: LLaDA, Dream, a config with ``is_causal: false``) or an ARM (causal attention, next-token queries:
a plain Llama or Qwen2), and why (``report["attention"]``, ``report["attention_source"]``); ``--attention``
overrides. Then:

Self-tests (run first):
- **attention**: perturb the last token of a random sequence; under bidirectional attention every earlier
  position's logits change, under a causal mask none does (bitwise: masked weights are exact zeros). The
  verdict must be the attention the probe uses (a silent causal fallback is a known bug class).
- **precision honesty**: every aten operation of one forward and backward pass whose floating result has
  fewer bits than the compute dtype, attributed to the module that ran it.
- **reflection defect** (C5, MDMs): ``max |log p_r(·|θ) − log p_f(·|Φθ)|`` over the fact pairs on the mirror
  template "A r B". Rounding level exactly when H-bi, read-out offset 0 and a relative encoding hold. With
  read-out offset 1 the reverse query reads h_{b−1}, the mirror of h_{a+1}: it maps instead to the forward
  sequence's conditional at slot a + 2 (also checked). An ARM has no reflected query: not run.

Signatures over N fact pairs, per selected layer ℓ and query head h. MDM: forward ``(M, r, B)`` queried at a,
reverse ``(B, r, M)`` queried at b, both with target A; ARM (next-token queries, C7's ARM): forward
``(A, r)`` → B and reverse ``(B, r)`` → A, both read at the last position, attention from it to the
entity at position 0:
- attention from the query to the other entity, forward ``α_f`` and reverse ``α_r`` (means over pairs);
- the across-pair Pearson correlation of the pre-softmax scores to it, with a Fisher-z interval at
  false-alarm ``alpha``; beside it, for the first layer, C2a's prediction ``tr(R_g)/d_k`` (g = 2Δ = 4);
- gradient cosines ``cos(∇L_f, ∇L_r)`` restricted to the layer's storage (value/output weights; MLP) and
  route (query/key weights and biases): the mean and the share of pairs with a positive cosine, with a
  Clopper–Pearson interval. With a merged value path W_OV^ℓ the per-layer storage cosine is C7's statistic
  ``cos(G_f^ℓ, G_r^ℓ)`` (:func:`storage_cosines`; on C7's own draws the probe gives C7's per-layer counts
  exactly, tests/test_probe.py); with factored W_V, W_O it is the cosine over the factors.

Scale: only the selected layers' weights are autograd leaves; per fact the forward query's gradient over
them is held while the reverse query's streams through per-tensor hooks that accumulate the dot products
and norms of every statistic and free each tensor's gradient (:func:`fact_cosines`): never a
full-parameter gradient, never two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .adapters import ROUTE_ROLES, ProbeError, ProjectAdapter, flat
from .arguments import int_type, require_extra, require_output_file, seed_type
from .facts import Template
from .model import PRESETS
from .progress import Progress
from .rounding_mode import with_error_bounds
from .statistics import FALSE_ALARM, clopper_pearson, fisher_z_interval

TEMPLATE = Template(3, 0, 2, (0,))  # "A r B" (mirror-symmetric); the filler is drawn per pair
GAP = 2 * (TEMPLATE.b - TEMPLATE.a)  # g = 2Δ = 4
U32 = 2.0**-24
U64 = 2.0**-53
YARDSTICK_SAFETY = 8.0
DTYPES = {"float64": torch.float64, "float32": torch.float32}
MAX_PAIRS = 100_000
STORAGE_GROUPS = {"value/output": ("value", "output"), "mlp": ("mlp",)}


class CausalModelError(ProbeError):
    """The model's measured attention is not the one the probe uses: the signatures are refused.
    ``report`` holds the self-tests."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2^−p of a floating dtype (2^−53 for float64, 2^−24 for float32)."""
    return float(torch.finfo(dtype).eps) / 2


# ---------------------------------------------------------------------------------------------
# facts and queries


def max_pairs(adapter) -> int:
    """The most facts with distinct (r, B) the model's tokens allow: n (n − 1), n real tokens."""
    n = len(adapter.arch.real_tokens)
    return n * (n - 1)


def fact_pairs(adapter, n: int, seed: int) -> list[tuple[int, int, int]]:
    """``n`` facts (A, r, B) of distinct real tokens with distinct (r, B) (forward and reverse sequences
    hold only r and B, so distinct (r, B) give distinct sequences), drawn by ``random.Random(seed)``."""
    real = adapter.arch.real_tokens
    if len(real) < 3:
        raise ProbeError(f"the model needs at least 3 real tokens for facts A r B; has {len(real)}")
    top = max_pairs(adapter)
    if isinstance(n, bool) or not isinstance(n, int) or not 4 <= n <= top:
        raise ValueError(f"pairs must be an integer in [4, {top}] (distinct (r, B) of this vocabulary); got {n!r}")
    rng = random.Random(seed)
    if len(real) ** 2 <= 4 * n:
        rb = [(r, B) for r in real for B in real if r != B]
        rng.shuffle(rb)
    else:
        seen, rb = set(), []
        while len(rb) < n:
            r, B = rng.sample(real, 2)
            if (r, B) not in seen:
                seen.add((r, B))
                rb.append((r, B))
    out = []
    for r, B in rb[:n]:
        A = rng.choice(real)
        while A in (r, B):
            A = rng.choice(real)
        out.append((A, r, B))
    return out


@dataclass(frozen=True)
class Queries:
    """The forward and reverse queries of the facts: token batches, the logit slot read, the targets, and
    the attention (query position, key position) each signature reads."""

    kind: str  # "mdm" or "arm"
    fwd: torch.Tensor
    rev: torch.Tensor
    slot_f: int
    slot_r: int
    target_f: tuple
    target_r: tuple
    attend_f: tuple[int, int]
    attend_r: tuple[int, int]


def queries(adapter, facts, kind: str = "mdm") -> Queries:
    """MDM: forward ``(M, r, B)`` at slot a, reverse ``(B, r, M)`` at slot b, target A. ARM (next-token):
    forward ``(A, r)`` → B, reverse ``(B, r)`` → A, read at position 1 (logits there predict position 2)."""
    if kind == "arm":
        fwd = torch.tensor([[A, r] for A, r, B in facts])
        rev = torch.tensor([[B, r] for A, r, B in facts])
        return Queries(
            "arm", fwd, rev, 1, 1, tuple(B for _, _, B in facts), tuple(A for A, _, _ in facts), (1, 0), (1, 0)
        )
    fwd, rev = query_tokens(adapter, facts)
    a, b = TEMPLATE.a, TEMPLATE.b
    A = tuple(A for A, _, _ in facts)
    return Queries("mdm", fwd, rev, a, b, A, A, (a, b), (b, a))


def query_tokens(adapter, facts) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``(M, r, B)`` and reverse ``(B, r, M)`` token batches (N, 3)."""
    M = adapter.arch.mask_id
    fwd = torch.tensor([Template(3, 0, 2, (r,)).sequence(M, B) for A, r, B in facts])
    rev = torch.tensor([Template(3, 0, 2, (r,)).sequence(B, M) for A, r, B in facts])
    return fwd, rev


def _device(adapter) -> torch.device:
    return next(iter(adapter.parameters().values())).device


def _logp(adapter, params, tokens, slot, *, reflected=False, dtype=None):
    z = adapter.logits(params, tokens.to(_device(adapter)), reflected=reflected, dtype=dtype)
    return torch.log_softmax(z[:, slot], dim=-1)


# ---------------------------------------------------------------------------------------------
# self-tests


def finite_logits(adapter, seed: int = 0) -> None:
    """Raise :class:`ProbeError` unless the logits of a few random sequences are finite."""
    rng = random.Random(seed)
    real = adapter.arch.real_tokens
    tokens = torch.tensor([[rng.choice(real) for _ in range(4)] for _ in range(2)])
    with torch.no_grad():
        z = adapter.logits(adapter.parameters(), tokens.to(_device(adapter)))
    if not bool(torch.isfinite(z).all()):
        raise ProbeError(
            f"the model's logits are not finite (NaN or inf) on random tokens: check the weights and the config "
            f"of {adapter.arch.name}"
        )


def bidirectionality(adapter, seed: int = 0, length: int = 6, trials: int = 3) -> dict:
    """Perturb the last token of ``trials`` random sequences; report for every earlier position the largest
    logit change. ``bidirectional`` when every earlier position moved, ``causal`` when none did (exact: a
    causal mask makes the earlier positions' computation independent of the last token, bitwise).
    ``passed``: the verdict is the attention the adapter declares."""
    real = adapter.arch.real_tokens
    length = min(length, adapter.arch.max_len or length)
    rng = random.Random(seed)
    params = adapter.parameters()
    change = torch.zeros(length - 1, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(trials):
            seq = [rng.choice(real) for _ in range(length)]
            alt = list(seq)
            alt[-1] = rng.choice([t for t in real[:64] if t != seq[-1]])
            # one call per sequence: in one batched call the two sequences' rows sit at different offsets of
            # the flattened matrix products, where BLAS may round differently (1.8e-15 measured on a causal
            # checkpoint), which would read as "moved"; in separate calls a causal prefix is bitwise the same
            z0, z1 = (adapter.logits(params, torch.tensor([s], device=_device(adapter)))[0] for s in (seq, alt))
            change = torch.maximum(change, (z0[:-1] - z1[:-1]).abs().amax(-1).double().cpu())
    moved = int((change > 0).sum())
    verdict = "bidirectional" if moved == length - 1 else "causal" if moved == 0 else "partially causal"
    return {
        "test": "attention",
        "verdict": verdict,
        "passed": verdict == adapter.arch.attention,
        "declared": adapter.arch.attention,
        "max_change_per_position": change.tolist(),
        "detail": f"perturbing the last of {length} tokens moved {moved}/{length - 1} earlier positions' logits",
    }


class _DtypeRecorder(TorchDispatchMode):
    def __init__(self, stack, bits: int):
        super().__init__()
        self.stack, self.bits = stack, bits
        self.found: dict[str, set] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(o, torch.Tensor) and o.is_floating_point() and torch.finfo(o.dtype).bits < self.bits:
                where = self.stack[-1] if self.stack else "(backward or top level)"
                self.found.setdefault(where, set()).add(f"{func.__name__.split('.')[0]}→{str(o.dtype)[6:]}")
        return out


def grad_names(adapter, layers) -> list[str]:
    """The entries of θ that the selected layers' handles touch: the autograd leaves of the probe."""
    names: dict[str, None] = {}
    for layer in layers:
        for hs in adapter.handles(layer).values():
            for h in hs:
                names[h.name] = None
    return list(names)


def _leaves(adapter, layers) -> tuple[dict, dict]:
    """θ with the selected layers' entries as fresh autograd leaves (sharing storage: no copy)."""
    params = adapter.parameters()
    leaves = {n: params[n].detach().requires_grad_(True) for n in grad_names(adapter, layers)}
    return {**params, **leaves}, leaves


def precision_honesty(adapter, q: Queries, layers) -> dict:
    """Every aten operation of a forward and backward pass of the first fact's forward loss whose floating
    result has fewer bits than the compute dtype, grouped by the module that ran it."""
    params, leaves = _leaves(adapter, layers)
    stack, hooks = [], []
    root = adapter.modules()
    if root is not None:
        root_name = type(root).__name__
        for name, mod in root.named_modules():
            hooks.append(mod.register_forward_pre_hook(lambda m, a, n=name or root_name: stack.append(n)))
            hooks.append(mod.register_forward_hook(lambda m, a, o: stack.pop() and None))  # None: keep o
    rec = _DtypeRecorder(stack, torch.finfo(adapter.dtype).bits)
    try:
        with rec, torch.enable_grad():
            loss = -_logp(adapter, params, q.fwd[:1], q.slot_f)[0, q.target_f[0]]
            torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    found = {k: sorted(v) for k, v in sorted(rec.found.items())}
    name = str(adapter.dtype)[6:]
    return {
        "test": "precision honesty",
        "compute_dtype": name,
        "passed": not found,
        "below_compute_dtype": found,
        "detail": f"every intermediate is {name}"
        if not found
        else f"{len(found)} module(s) compute in lower precision: identities hold to that precision only",
    }


def _side_logps(adapter, params, fwd, rev, forward_slot, dtype=None):
    return (
        _logp(adapter, params, rev, TEMPLATE.b, dtype=dtype),
        _logp(adapter, params, fwd, forward_slot, reflected=True, dtype=dtype),
    )


def reflection_defect(adapter, facts, *, forward_slot: int | None = None, honest: bool = True) -> dict:
    """C5 on the mirror template "A r B": ``max |log p_r(·|θ) − log p_f(·|Φθ)|`` over the facts, the forward
    conditional taken at ``forward_slot`` (default a), computed in the adapter's compute dtype.

    Tolerance, by compute dtype (u: its unit roundoff):
    - float64, the project's model: the running-error bound of :func:`with_error_bounds` (derived, first
      order, every aten operation, × 2), summed over both sides.
    - float64, a checkpoint: a yardstick. Both sides are rerun in float32 (same weights, each cast at use);
      e = max |ℓ_32 − ℓ_64| per side is the float32 rounding error of this very computation (the float64
      error is 2^−29 of it). First-order rounding errors are linear in u, so e · u_64/u_32 estimates the
      float64 error of each side; the tolerance is 8 × that, summed over the sides (8: sign coincidences).
      An estimate, not a bound. If some intermediate is below float64 (``honest`` false) the unscaled
      8 · e is used: the identity then holds to float32 rounding only.
    - float32: both sides are rerun in float64; by the triangle inequality
      |Δ_32| ≤ |ℓ_r32 − ℓ_r64| + |Δ_64| + |ℓ_f64 − ℓ_f32|, and |Δ_64| is at the float64 level (8 · 2^−29 of
      the same errors): the tolerance (1 + 8 · 2^−29)(e_r + e_f) is a bound up to that float64 term."""
    slot = TEMPLATE.a if forward_slot is None else forward_slot
    params = adapter.parameters()
    fwd, rev = query_tokens(adapter, facts)
    dtype = adapter.dtype
    with torch.no_grad():
        lhs, rhs = _side_logps(adapter, params, fwd, rev, slot)
        defect = float((lhs.double() - rhs.double()).abs().max())
        tol = None
        if dtype == torch.float64 and getattr(adapter, "error_bounds", False) and honest:
            try:
                (_, _), (e_l, e_r) = with_error_bounds(_side_logps, adapter, params, fwd, rev, slot)
                tol, how = float((e_l + e_r).max()), "derived float64 running-error bound"
            except Exception:  # an operation without a rule (or a module that rejects the Ball subclass)
                tol = None
        if tol is None:
            other = torch.float32 if dtype == torch.float64 else torch.float64
            l2, r2 = _side_logps(adapter, params, fwd, rev, slot, dtype=other)
            e = float((l2.double() - lhs.double()).abs().max()) + float((r2.double() - rhs.double()).abs().max())
            ratio = U64 / U32
            if dtype == torch.float64 and honest:
                tol, how = YARDSTICK_SAFETY * ratio * max(e, U32), "float32 yardstick scaled by u64/u32 (estimate, × 8)"
            elif dtype == torch.float64:
                tol, how = YARDSTICK_SAFETY * max(e, U32), "float32 yardstick (estimate, × 8): not float64-honest"
            else:
                tol, how = (1 + YARDSTICK_SAFETY * ratio) * e, "float64 rerun, triangle inequality (bound)"
    return {
        "defect": defect,
        "tolerance": tol,
        "tolerance_kind": how,
        "compute_dtype": str(dtype)[6:],
        "forward_slot": slot,
        "at_rounding": defect <= tol,
    }


def reflection_test(adapter, facts, causal: bool, honest: bool = True) -> dict:
    """The C5 self-test, and which forward conditional the reverse query maps to (``honest``: the model
    passed the precision-honesty test, so the compute dtype's tolerance applies)."""
    main = reflection_defect(adapter, facts, honest=honest)
    out = {"test": "reflection defect (C5)", "passed": main["at_rounding"], **main}
    if main["at_rounding"]:
        out["maps_to"] = f"the forward query (slot a = {TEMPLATE.a}) at the reflected route Φθ"
    elif causal:
        out["maps_to"] = "no forward conditional: under a causal mask the mirrored sequence sees other keys"
    elif adapter.arch.readout_offset == 1:
        alt = reflection_defect(adapter, facts, forward_slot=TEMPLATE.a + 2, honest=honest)
        out["shifted"] = alt
        out["maps_to"] = (
            f"the forward sequence's conditional at slot a + 2 = {TEMPLATE.a + 2} (read from h_(a+1)), "
            f"not the forward query: defect there {alt['defect']:.3g} (tolerance {alt['tolerance']:.3g})"
        )
    else:
        out["maps_to"] = "no forward conditional found (check the encoding and the template)"
    return out


# ---------------------------------------------------------------------------------------------
# signatures


def c2a_prediction(d_head: int, base: float | None, gap: int = GAP) -> float | None:
    """C2a: ``tr(R_g)/d_k = (2/d_k) Σ_l cos(g θ_l)``, θ_l = base^(−2l/d_k) (any pairing); None without RoPE."""
    if base is None:
        return None
    return 2.0 / d_head * sum(math.cos(gap * base ** (-2.0 * l / d_head)) for l in range(d_head // 2))


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float | None:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else None


def _rate(values, alpha):
    n = len(values)
    k = sum(1 for v in values if v > 0)
    lo, hi = clopper_pearson(k, n, alpha)
    return {"mean": sum(values) / n, "positive": k, "n": n, "positive_rate": k / n, "rate_interval": [lo, hi]}


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else 0.0


def fact_gradients(adapter, facts, *, progress=None) -> list[tuple[dict, dict]]:
    """Per fact (A, r, B): the gradients ``(∇L_f, ∇L_r)`` over every entry of θ (dicts like θ; zeros for an
    entry the loss does not reach) of the forward loss ``−log p(A | M, r, B)`` at slot a and the reverse loss
    ``−log p(A | B, r, M)`` at slot b. Holds two full gradients per fact: for the project's small models
    (C7's statistic, :func:`storage_cosines`); :func:`fact_cosines` is the probe's streaming path.
    ``progress(k, n)`` is called after every fact."""
    params = adapter.parameters()
    fwd, rev = query_tokens(adapter, facts)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    grads = []
    for n, (A, _r, _B) in enumerate(facts):
        pair = []
        for tok, slot in ((fwd[n : n + 1], TEMPLATE.a), (rev[n : n + 1], TEMPLATE.b)):
            with torch.enable_grad():
                loss = -_logp(adapter, leaves, tok, slot)[0, A]
                g = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            pair.append(
                {k: torch.zeros_like(v) if gi is None else gi for (k, v), gi in zip(leaves.items(), g, strict=False)}
            )
        grads.append((pair[0], pair[1]))
        if progress:
            progress(n + 1, len(facts))
    return grads


def storage_cosines(adapter, grads) -> torch.Tensor:
    """``cos(G_f^ℓ, G_r^ℓ)`` per fact and layer, ``(N, L)``: the cosine of the forward and reverse gradients
    restricted to layer ℓ's value path (``value`` and ``output`` handles: W_OV^ℓ when merged, else W_V^ℓ,
    W_O^ℓ and the value bias). With a merged value path this is C7's statistic
    (:func:`mdm_props.layer_storage.layer_cosines`) for the fact's queries."""
    hs = [
        [x for role in ("value", "output") for x in adapter.handles(layer)[role]]
        for layer in range(adapter.arch.n_layers)
    ]
    return torch.tensor([[_cos(flat(gf, h), flat(gr, h)) for h in hs] for gf, gr in grads], dtype=torch.float64)


def statistic_groups(adapter, layers) -> dict:
    """Every gradient-cosine statistic of the signatures as ``key → handles``: per layer ``("vo", ℓ, None)``,
    ``("mlp", ℓ, None)``, ``("route", ℓ, None)``; per head ``("vo", ℓ, h)``, ``("route", ℓ, h)``."""
    out: dict[tuple, list] = {}
    for layer in layers:
        hl = adapter.handles(layer)
        out[("vo", layer, None)] = hl["value"] + hl["output"]
        out[("mlp", layer, None)] = hl["mlp"]
        out[("route", layer, None)] = [x for role in ROUTE_ROLES for x in hl[role]]
        for h in range(adapter.arch.n_heads):
            hd = adapter.handles(layer, h)
            out[("route", layer, h)] = hd["query"] + hd["key"]
            out[("vo", layer, h)] = hd["value"] + hd["output"]
    return out


def fact_cosines(adapter, q: Queries, layers, *, progress=None) -> list[dict]:
    """Per fact, ``{key: cos(∇L_f, ∇L_r) restricted to the key's handles}`` for every key of
    :func:`statistic_groups` (0 when either restriction is zero), with gradients over the selected layers
    only. Memory: the forward gradient of those layers is held; the reverse gradient arrives tensor by tensor
    in post-accumulate hooks that add ``⟨g_f, g_r⟩`` and ``|g_r|²`` of each handle to its keys and free it.
    The cosine equals :func:`_cos` over :func:`flat` of the same handles up to the order of summation."""
    groups = statistic_groups(adapter, layers)
    by_name: dict[str, list] = {}
    for key, hs in groups.items():
        for h in hs:
            by_name.setdefault(h.name, []).append((key, h))
    params, leaves = _leaves(adapter, layers)
    dev = _device(adapter)
    state: dict = {}

    def hook(name):
        def on_grad(t):
            g = t.grad
            gf = state["gf"][name]
            for key, h in by_name[name]:
                part = g[h.index] if h.index else g
                state["dot"][key] += float((h.of(state["gf"]) * part).sum()) if gf is not None else 0.0
                state["nr"][key] += float(part.pow(2).sum())
            t.grad = None

        return on_grad

    handles = [leaves[n].register_post_accumulate_grad_hook(hook(n)) for n in by_name]
    out = []
    try:
        for i in range(q.fwd.shape[0]):
            with torch.enable_grad():
                loss_f = -_logp(adapter, params, q.fwd[i : i + 1], q.slot_f)[0, q.target_f[i]]
                g = torch.autograd.grad(loss_f, [leaves[n] for n in by_name], allow_unused=True)
            gf = dict(zip(by_name, g, strict=True))
            nf = dict.fromkeys(groups, 0.0)
            for name, items in by_name.items():
                if gf[name] is None:
                    gf[name] = torch.zeros((), dtype=adapter.dtype, device=dev).expand(leaves[name].shape)
                    continue
                for key, h in items:
                    nf[key] += float(h.of(gf).pow(2).sum())
            state.update(gf=gf, dot=dict.fromkeys(groups, 0.0), nr=dict.fromkeys(groups, 0.0))
            with torch.enable_grad():
                loss_r = -_logp(adapter, params, q.rev[i : i + 1], q.slot_r)[0, q.target_r[i]]
                torch.autograd.backward(loss_r, inputs=[leaves[n] for n in by_name])
            cos = {}
            for key in groups:
                den = math.sqrt(nf[key] * state["nr"][key])
                cos[key] = state["dot"][key] / den if den > 0 else 0.0
            out.append(cos)
            state.clear()
            del gf, g
            if progress:
                progress(i + 1, q.fwd.shape[0])
    finally:
        for h in handles:
            h.remove()
        for t in leaves.values():
            t.grad = None
    return out


def signatures(
    adapter, facts, *, alpha: float = FALSE_ALARM, causal: bool = False, kind: str = "mdm", layers=None, progress=None
) -> dict:
    """Per selected layer and head: attention to the other entity, score correlation with a Fisher-z
    interval, gradient cosines (see the module docstring). ``causal`` applies a causal mask to the recomputed
    attention (the contrast); ``kind`` "mdm" or "arm" picks the queries; ``progress(k, n)`` is called after
    every fact's gradients."""
    arch = adapter.arch
    layers = list(range(arch.n_layers)) if layers is None else list(layers)
    q = queries(adapter, facts, kind)
    params = adapter.parameters()
    n_eff = len({(r, B) for _, r, B in facts}) if kind == "mdm" else len(facts)
    dev = _device(adapter)
    with torch.no_grad():
        qk_f, qk_r = adapter.query_keys(params, q.fwd.to(dev)), adapter.query_keys(params, q.rev.to(dev))

    def attention(qm, k, i):
        s = (qm[:, :, i, :].unsqueeze(-2) @ k.transpose(-1, -2)).squeeze(-2).double() * adapter.score_scale
        if causal:
            s = s.masked_fill(torch.arange(s.shape[-1], device=s.device) > i, float("-inf"))
        return s, torch.softmax(s, dim=-1)

    cos = fact_cosines(adapter, q, layers, progress=progress)
    c2a = c2a_prediction(arch.d_head, arch.rope_base)
    (qf_i, kf_j), (qr_i, kr_j) = q.attend_f, q.attend_r
    rows = []
    for layer in layers:
        (qf, kf), (qr, kr) = qk_f[layer], qk_r[layer]
        s_f, at_f = attention(qf, kf, qf_i)
        s_r, at_r = attention(qr, kr, qr_i)
        heads = []
        for h in range(arch.n_heads):
            r = _pearson(s_f[:, h, kf_j], s_r[:, h, kr_j])
            heads.append(
                {
                    "head": h,
                    "attn_f_B": float(at_f[:, h, kf_j].mean()),
                    "attn_r_B": float(at_r[:, h, kr_j].mean()),
                    "score_corr": r,
                    "score_corr_interval": None
                    if r is None or n_eff < 4
                    else list(fisher_z_interval(max(-1.0, min(1.0, r)), n_eff, alpha)),
                    "route_cos": _rate([c[("route", layer, h)] for c in cos], alpha),
                    "value_output_cos": _rate([c[("vo", layer, h)] for c in cos], alpha),
                    "c2a_prediction": c2a if layer == 0 else None,
                }
            )
        hl = adapter.handles(layer)
        rows.append(
            {
                "layer": layer,
                "heads": heads,
                "value_output_cos": _rate([c[("vo", layer, None)] for c in cos], alpha),
                "mlp_cos": _rate([c[("mlp", layer, None)] for c in cos], alpha) if hl["mlp"] else None,
                "route_cos": _rate([c[("route", layer, None)] for c in cos], alpha),
            }
        )
    return {
        "queries": kind,
        "pairs": len(facts),
        "effective_pairs": n_eff,
        "alpha": alpha,
        "causal_mask": causal,
        "layers": rows,
        "interval_caveat": "Fisher z assumes iid bivariate-normal (S_f, S_r); the MDM's scores depend on (r, B) "
        "only, so n is the number of distinct (r, B), and deep-layer scores are not Gaussian: "
        "read the interval as approximate. C2a's tr(R_g)/d_k is the correlation over "
        "isotropic Gaussian W_Q, W_K draws, not across pairs in one model: compare, "
        "do not equate.",
    }


# ---------------------------------------------------------------------------------------------
# the probe


def select_layers(adapter, layers) -> list[int]:
    """``layers`` (None: all) as a sorted list of valid layer indices (a ``ValueError`` otherwise)."""
    n = adapter.arch.n_layers
    if layers is None:
        return list(range(n))
    out = sorted(set(layers))
    if not out or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n for x in out):
        raise ValueError(f"layers must be indices in [0, {n - 1}]; got {list(layers)!r}")
    return out


def tolerances(adapter) -> dict:
    """The tolerances the report uses, for the adapter's compute dtype (stated in the report)."""
    u = unit_roundoff(adapter.dtype)
    return {
        "compute_dtype": str(adapter.dtype)[6:],
        "unit_roundoff": u,
        "attention": "exact: a causal mask leaves earlier logits bitwise unchanged (no tolerance)",
        "reflection": "see self_tests.reflection.tolerance_kind (derived bound, or a yardstick scaled to the "
        "compute dtype's unit roundoff)",
        "cosines": "reported as computed; a cosine within a few u·sqrt(#entries) of 0 has no reliable sign",
    }


def probe(
    adapter,
    *,
    pairs: int = 48,
    seed: int = 0,
    alpha: float = FALSE_ALARM,
    contrast: bool = True,
    layers=None,
    progress=None,
    source: str | None = None,
) -> dict:
    """Self-tests, then the signatures (and, for an MDM with ``contrast``, those of the same weights behind
    a causal mask). An MDM (bidirectional attention) is probed with masked queries, an ARM (causal) with
    next-token queries. Raises :class:`CausalModelError` (with the self-test report) when the measured
    attention is not the one the adapter declares."""
    start = time.perf_counter()
    layers = select_layers(adapter, layers)
    facts = fact_pairs(adapter, pairs, seed)
    attention = adapter.arch.attention
    kind = "mdm" if attention == "bidirectional" else "arm"
    finite_logits(adapter, seed)
    q = queries(adapter, facts, kind)
    bi = bidirectionality(adapter, seed)
    honest = precision_honesty(adapter, q, layers)
    report = {
        "model": vars(adapter.arch) | {"real_tokens": len(adapter.arch.real_tokens)},
        "attention": attention,
        "attention_source": source or getattr(getattr(adapter, "spec", None), "attention_source", "the model's config"),
        "probed_as": "MDM (masked queries)" if kind == "mdm" else "ARM (next-token queries)",
        "settings": {
            "pairs": len(facts),
            "seed": seed,
            "alpha": alpha,
            "template": "A r B (mirror)",
            "layers": layers,
            "compute_dtype": str(adapter.dtype)[6:],
            "device": str(_device(adapter)),
        },
        "tolerances": tolerances(adapter),
        "self_tests": {"attention": bi, "precision": honest},
    }
    spec = getattr(adapter, "spec", None)
    if spec is not None:
        report["config"] = {"family": spec.family, "keys": spec.notes, "norm": spec.norm}
    if kind == "mdm":
        report["self_tests"]["reflection"] = reflection_test(
            adapter, facts, causal=bi["verdict"] != "bidirectional", honest=honest["passed"]
        )
    else:
        report["self_tests"]["reflection"] = {
            "test": "reflection defect (C5)",
            "passed": None,
            "detail": "not run: an ARM has no reflected query (C5 needs H-bi)",
        }
    if not bi["passed"]:
        raise CausalModelError(
            f"the model measured {bi['verdict']} ({bi['detail']}) but is probed as {attention}: "
            f"the signatures would be misread",
            report,
        )
    passes = 2 if contrast and kind == "mdm" else 1
    done = [0]

    def step(k, n):  # one count over both passes: k of the current pass's n facts
        if progress:
            progress(done[0] + k, passes * n)

    t_sig = time.perf_counter()
    report["signatures"] = signatures(
        adapter, facts, alpha=alpha, causal=kind == "arm", kind=kind, layers=layers, progress=step
    )
    report["timing"] = {
        "self_tests_s": round(t_sig - start, 3),
        "seconds_per_fact": round((time.perf_counter() - t_sig) / len(facts), 4),
    }
    done[0] = len(facts)
    report["causal_contrast"] = None
    if passes == 2:
        twin = adapter.causal_twin()
        report["causal_contrast"] = signatures(twin, facts, alpha=alpha, causal=True, layers=layers, progress=step)
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _f(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def format_self_tests(report: dict) -> str:
    st = report["self_tests"]
    bi, pr, rf = st["attention"], st["precision"], st["reflection"]
    m = report["model"]
    lines = [
        f"model: {m['name']} (layers {m['n_layers']}, heads {m['n_heads']}/{m['n_kv_heads']} kv, d_head "
        f"{m['d_head']}, read-out offset {m['readout_offset']}, mask id {m['mask_id']})",
        f"attention: {report['attention']}, probed as {report['probed_as']} — why: {report['attention_source']}",
        f"compute dtype {report['settings']['compute_dtype']} (u = {report['tolerances']['unit_roundoff']:.3g}) on "
        f"{report['settings']['device']}; layers {_layers_text(report['settings']['layers'])}",
        f"self-test attention: {bi['verdict']} (probed as {bi['declared']}; {bi['detail']})",
        f"self-test precision honesty: {'pass' if pr['passed'] else 'NOT ' + pr['compute_dtype']}: {pr['detail']}",
    ]
    for mod, ops in list(pr["below_compute_dtype"].items())[:6]:
        lines.append(f"    {mod}: {', '.join(ops[:4])}{' …' if len(ops) > 4 else ''}")
    if rf.get("passed") is None:
        lines.append(f"self-test reflection defect: {rf['detail']}")
    else:
        lines.append(
            f"self-test reflection defect |log p_r(θ) − log p_f(Φθ)|: {rf['defect']:.3g} (tolerance "
            f"{rf['tolerance']:.3g}, {rf['tolerance_kind']}): {'at rounding' if rf['at_rounding'] else 'O(1)'}"
        )
        lines.append(f"    the reverse query maps to {rf['maps_to']}")
    return "\n".join(lines)


def _layers_text(layers) -> str:
    return ", ".join(map(str, layers)) if len(layers) <= 8 else f"{len(layers)} ({layers[0]}–{layers[-1]})"


def format_report(report: dict) -> str:
    out = [format_self_tests(report)]
    sig, twin = report["signatures"], report.get("causal_contrast")
    who = "the other entity" if sig["queries"] == "mdm" else "the entity at position 0"
    out.append(
        f"\nsignatures over {sig['pairs']} facts A r B ({sig['effective_pairs']} distinct queries; {sig['queries']} "
        f"queries; α: attention to {who}); intervals at false-alarm {sig['alpha']:g}"
    )
    hdr = (
        f"{'layer':>5} {'head':>4} {'α_f':>7} {'α_r':>7} {'corr(S_f,S_r)':>13} {'interval':>17} "
        f"{'C2a':>6} {'route cos':>9} {'route>0':>7} {'VO cos':>7} {'VO>0':>5}"
    )
    out += [hdr, "-" * len(hdr)]
    for row in sig["layers"]:
        for h in row["heads"]:
            iv = h["score_corr_interval"]
            out.append(
                f"{row['layer']:>5} {h['head']:>4} {h['attn_f_B']:>7.3f} {h['attn_r_B']:>7.3f} "
                f"{_f(h['score_corr']):>13} "
                f"{('[' + _f(iv[0], '.2f') + ', ' + _f(iv[1], '.2f') + ']') if iv else '-':>17} "
                f"{_f(h['c2a_prediction']):>6} {h['route_cos']['mean']:>9.3f} {h['route_cos']['positive_rate']:>7.2f} "
                f"{h['value_output_cos']['mean']:>7.3f} {h['value_output_cos']['positive_rate']:>5.2f}"
            )
    hdr = f"{'layer':>5} {'storage VO cos>0 [CP interval]':>32} {'MLP cos>0 [CP interval]':>28} {'route cos>0':>12}"
    out += [
        "\nper layer (share of facts with a positive gradient cosine"
        + ("; the contrast: same weights, causal mask)" if twin else ")"),
        hdr + (f" {'causal VO cos>0':>16}" if twin else ""),
        "-" * (len(hdr) + (17 if twin else 0)),
    ]

    def rate(r):
        return (
            "-" if r is None else f"{r['positive_rate']:.2f} [{r['rate_interval'][0]:.2f}, {r['rate_interval'][1]:.2f}]"
        )

    for i, row in enumerate(sig["layers"]):
        line = (
            f"{row['layer']:>5} {rate(row['value_output_cos']):>32} {rate(row['mlp_cos']):>28} "
            f"{row['route_cos']['positive_rate']:>12.2f}"
        )
        if twin:
            line += f" {twin['layers'][i]['value_output_cos']['positive_rate']:>16.2f}"
        out.append(line)
    out.append(f"\nnote: {sig['interval_caveat']}")
    return "\n".join(out)


def plot_report(report: dict, path: str) -> str:
    """Per-layer curves (head-mean score correlation; share of facts with a positive storage cosine), the
    model against the same weights behind a causal mask. Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('matplotlib is not installed (pip install -e ".[plot]")') from None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for sig, label, style in (
        (report["signatures"], f"{report['probed_as']}", "o-"),
        (report.get("causal_contrast"), "same weights, causal mask", "s--"),
    ):
        if sig is None:
            continue
        L = [row["layer"] for row in sig["layers"]]
        corr = [sum(h["score_corr"] or 0 for h in row["heads"]) / len(row["heads"]) for row in sig["layers"]]
        vo = [row["value_output_cos"]["positive_rate"] for row in sig["layers"]]
        axes[0].plot(L, corr, style, label=label)
        axes[1].plot(L, vo, style, label=label)
    axes[0].set(xlabel="layer", ylabel="corr(S_f, S_r), head mean", title="route: score correlation")
    axes[1].set(
        xlabel="layer", ylabel="share cos(G_f, G_r) > 0", title="storage: value/output gradients", ylim=(0, 1.05)
    )
    axes[1].legend(fontsize=8)
    fig.suptitle(report["model"]["name"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# command line


def _open_unit(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be a number in (0, 1); got {text!r}")
    return v


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"memory limit must be a finite number of GiB > 0; got {text!r}")
    return v


def parse_layers(text: str) -> list[int] | None:
    """``all`` (None), or a comma-separated list of indices and ranges ``a-b`` (inclusive)."""
    if text == "all":
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            a, b = int(lo), int(hi) if hi else int(lo)
            if a < 0 or b < a:
                raise ValueError
            out.extend(range(a, b + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"layers must be 'all' or indices and ranges like 0,3,5-7; got {text!r}"
        ) from None
    return out


def add_probe_arguments(subparsers) -> argparse.ArgumentParser:
    """Register ``probe`` on the ``mdm-props`` subparsers."""
    p = subparsers.add_parser("probe", help="the mechanism's signatures, layer by layer, in an MDM or an ARM")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", choices=PRESETS, help="a project preset (default llada-like)")
    src.add_argument(
        "--hf-config", metavar="DIR", help="a local config directory (LLaDA, Dream, Llama, Qwen2): random weights"
    )
    src.add_argument("--hf-model", metavar="DIR", help="a local checkpoint directory (config.json and weights)")
    p.add_argument("--attention", choices=("bidirectional", "causal"), help="override the attention the config implies")
    p.add_argument("--mask-id", type=int_type("--mask-id", 0, 2**31 - 1), help="mask token id (default: the config's)")
    p.add_argument("--readout-offset", type=int, choices=(0, 1), help="0 (LLaDA) or 1 (Dream); default from the config")
    p.add_argument(
        "--pairs", type=int_type("--pairs", 4, MAX_PAIRS), default=48, help="number of facts A r B (default 48)"
    )
    p.add_argument("--seed", type=seed_type(), default=0, help="seed of facts and random weights (default 0)")
    p.add_argument("--alpha", type=_open_unit, default=FALSE_ALARM, help="false-alarm probability of the intervals")
    p.add_argument("--layers", type=parse_layers, default=None, help="layers to probe: all (default) or e.g. 0,3,5-7")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to compute (default cpu)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float64", help="compute dtype (default float64)")
    p.add_argument("--memory-limit", type=_positive, metavar="GIB", help="refuse above this (default: free memory)")
    p.add_argument("--no-contrast", action="store_true", help="skip the causal-mask contrast")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--out", metavar="PNG", help="also draw the per-layer figure (needs matplotlib)")
    p.set_defaults(func=lambda args, parser: run_probe_from_args(args))
    return p


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def prepare(args):
    """Every check that needs no weights, in order: outputs, extras, device, the model's config (identity,
    strict keys), the mask id, the layers, the pairs, the memory estimate. Returns a function that builds
    the adapter (the only step that loads or draws weights)."""
    from .checkpoint_reader import available_memory, memory_estimate, read_config, spec_from_config

    if args.json is not None:
        require_output_file("--json", args.json, (".json",))
    if args.out is not None:
        require_output_file("--out", args.out, (".png",))
        require_extra("--out", "plot")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ProbeError("--device cuda: no CUDA device is available to torch here (use --device cpu)")
    dtype = DTYPES[args.dtype]
    if not (args.hf_config or args.hf_model):
        name = args.model or "llada-like"
        if args.device != "cpu" or dtype != torch.float64:
            raise ProbeError("the project presets run in float64 on the CPU: --device cpu --dtype float64")
        overrides = {} if args.readout_offset is None else {"readout_offset": args.readout_offset}
        adapter = ProjectAdapter.from_preset(name, seed=args.seed, **overrides)
        if args.mask_id is not None and args.mask_id != adapter.arch.mask_id:
            raise ProbeError(
                f"--mask-id {args.mask_id}: preset {name} has mask id {adapter.arch.mask_id} (V, after the real "
                f"tokens); --mask-id applies to checkpoints"
            )
        if args.attention is not None:
            adapter = adapter.with_attention(args.attention)
        if args.attention == "causal" and args.readout_offset:
            raise ProbeError("--readout-offset applies to a bidirectional model only (an ARM reads next tokens)")
        source = f"--attention {args.attention} (command line)" if args.attention else f"preset {name}"
        select_layers(adapter, args.layers)
        _check_pairs(args.pairs, max_pairs(adapter))
        return (lambda: adapter), source
    path = args.hf_config or args.hf_model
    raw, cfg_file = read_config(path)
    spec = spec_from_config(
        raw, cfg_file, attention=args.attention, mask_id=args.mask_id, readout_offset=args.readout_offset
    )
    if args.layers is not None and max(args.layers) >= spec.n_layers:
        raise ProbeError(f"layers must be indices in [0, {spec.n_layers - 1}]; got {args.layers}")
    layers = sorted(set(args.layers)) if args.layers is not None else list(range(spec.n_layers))
    n = spec.n_tokens - (1 if spec.mask_id is not None and spec.mask_id < spec.n_tokens else 0)
    _check_pairs(args.pairs, n * (n - 1))
    mem = memory_estimate(spec, dtype, layers)
    free = available_memory(args.device) if args.memory_limit is None else int(args.memory_limit * 2**30)
    print(
        f"probe: {spec.family}, {spec.n_parameters():,} parameters; memory estimate {_gib(mem['estimate'])} "
        f"(weights {_gib(mem['weights'])} in {args.dtype}, selected layers' gradient {_gib(mem['selected'])}; "
        f"target ≤ {_gib(mem['target'])}); available on {args.device}: {_gib(free)}",
        file=sys.stderr,
    )
    if mem["estimate"] > free:
        raise ProbeError(
            f"the probe needs about {_gib(mem['estimate'])} on {args.device} but {_gib(free)} is available: "
            f"select fewer layers (--layers), use --dtype float32, or another device"
        )

    def build():
        from .adapters import DecoderAdapter
        from .checkpoint_reader import load_weights, random_weights

        if args.hf_model:
            params = load_weights(path, spec, dtype, args.device)
        else:
            params = random_weights(spec, dtype, args.device, args.seed)
        return DecoderAdapter(
            spec, params, dtype=dtype, name=f"{spec.family} ({os.path.basename(os.path.normpath(path))})"
        )

    return build, spec.attention_source


def _check_pairs(pairs: int, top: int) -> None:
    if pairs > top:
        raise ProbeError(f"pairs must be at most {top} (distinct (r, B) of this model's tokens); got {pairs}")


def _atomic_write(path: str, write) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ProbeError(f"cannot write {path!r}: folder {d!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=d, suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run_probe_from_args(args) -> int:
    """Exit 0 on a report; 2 on a bad argument, path, config or weight file, an unsupported architecture, a
    missing extra, a model that does not fit, or a measured attention that is not the one probed (nothing
    is written then); 130 on an interrupt. Threads: torch's default (``OMP_NUM_THREADS`` if set)."""
    try:
        build, source = prepare(args)
        t0 = time.perf_counter()
        adapter = build()
        load_s = time.perf_counter() - t0
        passes = 1 if args.no_contrast or adapter.arch.attention == "causal" else 2
        with Progress(args.pairs * passes, "probe: facts") as bar:
            report = probe(
                adapter,
                pairs=args.pairs,
                seed=args.seed,
                alpha=args.alpha,
                contrast=not args.no_contrast,
                layers=args.layers,
                progress=bar.callback,
                source=source,
            )
    except CausalModelError as exc:
        print(format_self_tests(exc.report))
        print(f"mdm-props probe: {exc}", file=sys.stderr)
        return 2
    except (ProbeError, ValueError) as exc:
        print(f"mdm-props probe: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mdm-props probe: interrupted; nothing written", file=sys.stderr)
        return 130
    report["timing"]["load_s"] = round(load_s, 3)
    print(format_report(report))
    if args.json:

        def dump(p):
            with open(p, "w") as f:
                json.dump(report, f, indent=2)

        _atomic_write(args.json, dump)
        print(f"wrote {args.json}")
    if args.out:
        _atomic_write(args.out, lambda p: plot_report(report, p))
        print(f"wrote {args.out}")
    print(f"probe finished in {report['seconds']:.1f} s")
    return 0
