"""``mdm-props probe``: the mechanism's signatures, layer by layer, in a bidirectional model (THEORY §2, §2b).

The probe reads a model through an adapter (:mod:`mdm_props.adapters`) and reports:

Self-tests (run first; a causal model stops the probe):
- **bidirectionality**: perturb the last token of a random sequence; every earlier position's logits must
  change (under a causal mask they are bitwise unchanged). Silent causal fallbacks are a known bug class.
- **float64 honesty**: every aten operation of one forward and backward pass whose floating result is not
  float64, attributed to the module that ran it (transformers' RMSNorm, RoPE tables and eager softmax are
  float32 even for float64 inputs: identities then hold to float32 rounding only).
- **reflection defect** (C5): ``max |log p_r(·|θ) − log p_f(·|Φθ)|`` over the fact pairs on the mirror
  template "A r B". Rounding level exactly when H-bi, read-out offset 0 and a relative encoding hold. With
  read-out offset 1 the reverse query reads h_{b−1}, the mirror of h_{a+1}: it maps instead to the forward
  sequence's conditional at slot a + 2 (also checked); under a causal mask to no forward conditional.

Signatures over N fact pairs "A r B" (forward ``(M, r, B)`` queried at a, reverse ``(B, r, M)`` queried at b,
target A), per layer ℓ and query head h:
- attention from the query to B, forward ``α_f(B)`` and reverse ``α_r(B)`` (means over pairs);
- the across-pair Pearson correlation of the pre-softmax scores ``S_f = q_a·k_b``, ``S_r = q_b·k_a``
  (scaled), with a Fisher-z interval at false-alarm ``alpha``; beside it, for the first layer, C2a's
  prediction ``tr(R_g)/d_k`` (g = 2Δ = 4);
- gradient cosines ``cos(∇L_f, ∇L_r)`` restricted to the layer's storage (value/output weights; MLP) and
  route (query/key weights and biases): the mean and the share of pairs with a positive cosine, with a
  Clopper–Pearson interval. With a merged value path W_OV^ℓ the per-layer storage cosine is C7's statistic
  ``cos(G_f^ℓ, G_r^ℓ)`` (:func:`storage_cosines`; on C7's own draws the probe gives C7's per-layer counts
  exactly, tests/test_probe.py); with factored W_V, W_O it is the cosine over the factors, which C7 does
  not state.
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

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .adapters import ROUTE_ROLES, ProbeError, ProjectAdapter, flat
from .facts import Template
from .model import PRESETS
from .rounding_mode import with_error_bounds
from .statistics import FALSE_ALARM, clopper_pearson, fisher_z_interval

TEMPLATE = Template(3, 0, 2, (0,))  # "A r B" (mirror-symmetric); the filler is drawn per pair
GAP = 2 * (TEMPLATE.b - TEMPLATE.a)  # g = 2Δ = 4
U32 = 2.0**-24
YARDSTICK_SAFETY = 8.0
STORAGE_GROUPS = {"value/output": ("value", "output"), "mlp": ("mlp",)}


class CausalModelError(ProbeError):
    """The model turned out causal: the MDM signatures are refused. ``report`` holds the self-tests."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------------------------------
# facts and queries


def fact_pairs(adapter, n: int, seed: int) -> list[tuple[int, int, int]]:
    """``n`` facts (A, r, B) of distinct real tokens with distinct (r, B) (forward and reverse sequences
    hold only r and B, so distinct (r, B) give distinct sequences), drawn by ``random.Random(seed)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 4:
        raise ValueError(f"pairs must be an integer >= 4; got {n!r}")
    real = adapter.arch.real_tokens
    if len(real) < 3:
        raise ProbeError(f"the model needs at least 3 real tokens for facts A r B; has {len(real)}")
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


def query_tokens(adapter, facts) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``(M, r, B)`` and reverse ``(B, r, M)`` token batches (N, 3)."""
    M = adapter.arch.mask_id
    fwd = torch.tensor([Template(3, 0, 2, (r,)).sequence(M, B) for A, r, B in facts])
    rev = torch.tensor([Template(3, 0, 2, (r,)).sequence(B, M) for A, r, B in facts])
    return fwd, rev


def _logp(adapter, params, tokens, slot):
    return torch.log_softmax(adapter.logits(params, tokens)[:, slot], dim=-1)


# ---------------------------------------------------------------------------------------------
# self-tests


def bidirectionality(adapter, seed: int = 0, length: int = 6, trials: int = 3) -> dict:
    """Perturb the last token of ``trials`` random sequences; report for every earlier position the largest
    logit change. ``bidirectional`` when every earlier position moved, ``causal`` when none did."""
    real = adapter.arch.real_tokens
    rng = random.Random(seed)
    params = adapter.parameters()
    change = torch.zeros(length - 1, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(trials):
            seq = [rng.choice(real) for _ in range(length)]
            alt = list(seq)
            alt[-1] = rng.choice([t for t in real if t != seq[-1]])
            z = adapter.logits(params, torch.tensor([seq, alt]))
            change = torch.maximum(change, (z[0, :-1] - z[1, :-1]).abs().amax(-1).cpu())
    moved = int((change > 0).sum())
    verdict = "bidirectional" if moved == length - 1 else "causal" if moved == 0 else "partially causal"
    return {
        "test": "bidirectionality",
        "verdict": verdict,
        "passed": verdict == "bidirectional",
        "declared": adapter.arch.attention,
        "max_change_per_position": change.tolist(),
        "detail": f"perturbing the last of {length} tokens moved {moved}/{length - 1} earlier positions' logits",
    }


class _DtypeRecorder(TorchDispatchMode):
    def __init__(self, stack):
        super().__init__()
        self.stack, self.found = stack, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(o, torch.Tensor) and o.is_floating_point() and o.dtype != torch.float64:
                where = self.stack[-1] if self.stack else "(backward or top level)"
                self.found.setdefault(where, set()).add(f"{func.__name__.split('.')[0]}→{str(o.dtype)[6:]}")
        return out


def float64_honesty(adapter, facts) -> dict:
    """Every aten operation of a forward and backward pass of the first fact's forward loss whose floating
    result is not float64, grouped by the module that ran it (``{module: [op→dtype, ...]}``)."""
    fwd, _ = query_tokens(adapter, facts[:1])
    A = facts[0][0]
    params = {k: v.detach().requires_grad_(True) for k, v in adapter.parameters().items()}
    stack, hooks = [], []
    root = adapter.modules()
    if root is not None:
        root_name = type(root).__name__
        for name, mod in root.named_modules():
            hooks.append(mod.register_forward_pre_hook(lambda m, a, n=name or root_name: stack.append(n)))
            hooks.append(mod.register_forward_hook(lambda m, a, o: stack.pop() and None))  # None: keep o
    rec = _DtypeRecorder(stack)
    try:
        with rec, torch.enable_grad():
            loss = -_logp(adapter, params, fwd, TEMPLATE.a)[0, A]
            torch.autograd.grad(loss, [p for p in params.values()], allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    found = {k: sorted(v) for k, v in sorted(rec.found.items())}
    return {
        "test": "float64 honesty",
        "passed": not found,
        "not_float64": found,
        "detail": "every intermediate is float64"
        if not found
        else f"{len(found)} module(s) compute in lower precision: identities hold to float32 rounding only",
    }


def _side_logps(adapter, params, fwd, rev, forward_slot):
    phi = adapter.reflect(params)
    return _logp(adapter, params, rev, TEMPLATE.b), _logp(adapter, phi, fwd, forward_slot)


def reflection_defect(adapter, facts, *, forward_slot: int | None = None, float64: bool = True) -> dict:
    """C5 on the mirror template "A r B": ``max |log p_r(·|θ) − log p_f(·|Φθ)|`` over the facts, the forward
    conditional taken at ``forward_slot`` (default a).

    Tolerance: for a float64-honest model the running-error bound of :func:`with_error_bounds` (derived,
    first order, every aten operation, × 2), summed over both sides; otherwise (some intermediate is not
    float64, so that bound does not apply) a float32 yardstick: 8 × the largest change of the same
    log-probabilities when θ and the whole computation are cast to float32 — an *estimate* of the float32
    rounding scale of this very computation, not a bound (the model's float32 casts are a subset of the
    roundings of the float32 run, with the same first-order sensitivities)."""
    slot = TEMPLATE.a if forward_slot is None else forward_slot
    params = adapter.parameters()
    fwd, rev = query_tokens(adapter, facts)
    with torch.no_grad():
        lhs, rhs = _side_logps(adapter, params, fwd, rev, slot)
        defect = float((lhs - rhs).abs().max())
        tol = None
        if float64:  # the running-error rules cover float64 aten operations only
            try:
                (_, _), (e_l, e_r) = with_error_bounds(_side_logps, adapter, params, fwd, rev, slot)
                tol, how = float((e_l + e_r).max()), "derived float64 running-error bound"
            except Exception:  # an operation without a rule (or a module that rejects the Ball subclass)
                tol = None
        if tol is None:
            p32 = {k: v.float() for k, v in params.items()}
            l32, r32 = _side_logps(adapter, p32, fwd, rev, slot)
            scale = max(float((l32.double() - lhs).abs().max()), float((r32.double() - rhs).abs().max()))
            tol, how = YARDSTICK_SAFETY * max(scale, U32), "float32 yardstick (estimate, × 8)"
    return {
        "defect": defect,
        "tolerance": tol,
        "tolerance_kind": how,
        "forward_slot": slot,
        "at_rounding": defect <= tol,
    }


def reflection_test(adapter, facts, causal: bool, float64: bool = True) -> dict:
    """The C5 self-test, and which forward conditional the reverse query maps to (``float64``: the model
    passed the float64-honesty test, so the derived bound may apply)."""
    main = reflection_defect(adapter, facts, float64=float64)
    out = {"test": "reflection defect (C5)", "passed": main["at_rounding"], **main}
    if main["at_rounding"]:
        out["maps_to"] = f"the forward query (slot a = {TEMPLATE.a}) at the reflected route Φθ"
    elif causal:
        out["maps_to"] = "no forward conditional: under a causal mask the mirrored sequence sees other keys"
    elif adapter.arch.readout_offset == 1:
        alt = reflection_defect(adapter, facts, forward_slot=TEMPLATE.a + 2, float64=float64)
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
    x, y = x - x.mean(), y - y.mean()
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
    ``−log p(A | B, r, M)`` at slot b. ``progress(k, n)`` is called after every fact."""
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
    (:func:`mdm_props.claims.c6_c8_deep_storage.layer_cosines`) for the fact's queries."""
    hs = [
        [x for role in ("value", "output") for x in adapter.handles(layer)[role]]
        for layer in range(adapter.arch.n_layers)
    ]
    return torch.tensor([[_cos(flat(gf, h), flat(gr, h)) for h in hs] for gf, gr in grads], dtype=torch.float64)


def signatures(adapter, facts, *, alpha: float = FALSE_ALARM, causal: bool = False, progress=None) -> dict:
    """Per layer and head: attention to B, score correlation with a Fisher-z interval, gradient cosines
    (see the module docstring). ``causal`` applies a causal mask to the recomputed attention (the ARM
    contrast); ``progress(k, n)`` is called after every fact's gradients."""
    arch = adapter.arch
    a, b = TEMPLATE.a, TEMPLATE.b
    params = adapter.parameters()
    fwd, rev = query_tokens(adapter, facts)
    n_eff = len({(r, B) for _, r, B in facts})
    with torch.no_grad():
        qk_f, qk_r = adapter.query_keys(params, fwd), adapter.query_keys(params, rev)

    def attention(q, k, i):
        s = (q[:, :, i, :].unsqueeze(-2) @ k.transpose(-1, -2)).squeeze(-2) * adapter.score_scale  # (N, H, T)
        if causal:
            s = s.masked_fill(torch.arange(s.shape[-1]) > i, float("-inf"))
        return s, torch.softmax(s, dim=-1)

    grads = fact_gradients(adapter, facts, progress=progress)
    vo_layers = storage_cosines(adapter, grads).T.tolist()  # (L, N)
    c2a = c2a_prediction(arch.d_head, arch.rope_base)
    layers = []
    for layer in range(arch.n_layers):
        (qf, kf), (qr, kr) = qk_f[layer], qk_r[layer]
        s_f, at_f = attention(qf, kf, a)
        s_r, at_r = attention(qr, kr, b)
        heads = []
        for h in range(arch.n_heads):
            S_f, S_r = s_f[:, h, b], s_r[:, h, a]
            r = _pearson(S_f, S_r)
            hd = adapter.handles(layer, h)
            route = [_cos(flat(gf, hd["query"] + hd["key"]), flat(gr, hd["query"] + hd["key"])) for gf, gr in grads]
            vo = [_cos(flat(gf, hd["value"] + hd["output"]), flat(gr, hd["value"] + hd["output"])) for gf, gr in grads]
            heads.append(
                {
                    "head": h,
                    "attn_f_B": float(at_f[:, h, b].mean()),
                    "attn_r_B": float(at_r[:, h, a].mean()),
                    "score_corr": r,
                    "score_corr_interval": None
                    if r is None or n_eff < 4
                    else list(fisher_z_interval(max(-1.0, min(1.0, r)), n_eff, alpha)),
                    "route_cos": _rate(route, alpha),
                    "value_output_cos": _rate(vo, alpha),
                    "c2a_prediction": c2a if layer == 0 else None,
                }
            )
        hl = adapter.handles(layer)
        row = {"layer": layer, "heads": heads}
        row["value_output_cos"] = _rate(vo_layers[layer], alpha)
        for key, roles in (("mlp_cos", ("mlp",)), ("route_cos", ROUTE_ROLES)):
            hs = [x for role in roles for x in hl[role]]
            row[key] = _rate([_cos(flat(gf, hs), flat(gr, hs)) for gf, gr in grads], alpha) if hs else None
        layers.append(row)
    return {
        "pairs": len(facts),
        "effective_pairs": n_eff,
        "alpha": alpha,
        "causal_mask": causal,
        "layers": layers,
        "interval_caveat": "Fisher z assumes iid bivariate-normal (S_f, S_r); the scores depend on (r, B) only, "
        "so n is the number of distinct (r, B), and deep-layer scores are not Gaussian: "
        "read the interval as approximate. C2a's tr(R_g)/d_k is the correlation over "
        "isotropic Gaussian W_Q, W_K draws, not across pairs in one model: compare, "
        "do not equate.",
    }


# ---------------------------------------------------------------------------------------------
# the probe


def probe(
    adapter, *, pairs: int = 48, seed: int = 0, alpha: float = FALSE_ALARM, contrast: bool = True, progress=None
) -> dict:
    """Self-tests, then the signatures (and, with ``contrast``, those of the same weights behind a causal
    mask). Raises :class:`CausalModelError` (with the self-test report) when the model is causal."""
    start = time.perf_counter()
    facts = fact_pairs(adapter, pairs, seed)
    bi = bidirectionality(adapter, seed)
    f64 = float64_honesty(adapter, facts)
    report = {
        "model": vars(adapter.arch) | {"real_tokens": len(adapter.arch.real_tokens)},
        "settings": {"pairs": len(facts), "seed": seed, "alpha": alpha, "template": "A r B (mirror)"},
        "self_tests": {
            "bidirectionality": bi,
            "float64": f64,
            "reflection": reflection_test(
                adapter, facts, causal=bi["verdict"] != "bidirectional", float64=f64["passed"]
            ),
        },
    }
    if bi["verdict"] != "bidirectional":
        raise CausalModelError(
            f"the model is {bi['verdict']} ({bi['detail']}): the MDM signatures need "
            f"bidirectional attention (set is_causal=False)",
            report,
        )
    report["signatures"] = signatures(adapter, facts, alpha=alpha, progress=progress)
    twin = adapter.causal_twin() if contrast else None
    report["causal_contrast"] = (
        None if twin is None else signatures(twin, facts, alpha=alpha, causal=True, progress=progress)
    )
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _f(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def format_self_tests(report: dict) -> str:
    st = report["self_tests"]
    bi, f64, rf = st["bidirectionality"], st["float64"], st["reflection"]
    lines = [
        f"model: {report['model']['name']} (layers {report['model']['n_layers']}, heads "
        f"{report['model']['n_heads']}/{report['model']['n_kv_heads']} kv, d_head {report['model']['d_head']}, "
        f"read-out offset {report['model']['readout_offset']}, mask id {report['model']['mask_id']})",
        f"self-test bidirectionality: {bi['verdict']} (declared {bi['declared']}; {bi['detail']})",
        f"self-test float64 honesty: {'pass' if f64['passed'] else 'NOT float64'}: {f64['detail']}",
    ]
    for mod, ops in list(f64["not_float64"].items())[:6]:
        lines.append(f"    {mod}: {', '.join(ops[:4])}{' …' if len(ops) > 4 else ''}")
    if len(f64["not_float64"]) > 6:
        lines.append(f"    … and {len(f64['not_float64']) - 6} more modules")
    lines.append(
        f"self-test reflection defect |log p_r(θ) − log p_f(Φθ)|: {rf['defect']:.3g} (tolerance "
        f"{rf['tolerance']:.3g}, {rf['tolerance_kind']}): {'at rounding' if rf['at_rounding'] else 'O(1)'}"
    )
    lines.append(f"    the reverse query maps to {rf['maps_to']}")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    out = [format_self_tests(report)]
    sig, twin = report["signatures"], report.get("causal_contrast")
    out.append(
        f"\nsignatures over {sig['pairs']} facts A r B ({sig['effective_pairs']} distinct (r, B)); "
        f"intervals at false-alarm {sig['alpha']:g}"
    )
    hdr = (
        f"{'layer':>5} {'head':>4} {'α_f(B)':>7} {'α_r(B)':>7} {'corr(S_f,S_r)':>13} {'interval':>17} "
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
        "\nper layer (share of facts with a positive gradient cosine; the ARM contrast: same weights, causal mask)",
        hdr + (f" {'ARM VO cos>0':>13}" if twin else ""),
        "-" * (len(hdr) + (14 if twin else 0)),
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
            line += f" {twin['layers'][i]['value_output_cos']['positive_rate']:>13.2f}"
        out.append(line)
    out.append(f"\nnote: {sig['interval_caveat']}")
    return "\n".join(out)


def plot_report(report: dict, path: str) -> str:
    """Per-layer curves (head-mean score correlation; share of facts with a positive storage cosine), MDM
    against the same weights behind a causal mask. Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('matplotlib is not installed (pip install -e ".[plot]")') from None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for sig, label, style in (
        (report["signatures"], "MDM (bidirectional)", "o-"),
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


def add_probe_arguments(subparsers) -> argparse.ArgumentParser:
    """Register ``probe`` on the ``mdm-props`` subparsers."""
    p = subparsers.add_parser("probe", help="the mechanism's signatures, layer by layer, in a bidirectional model")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", choices=PRESETS, help="a project preset (default llada-like)")
    src.add_argument("--hf-config", metavar="DIR", help="a local transformers config directory (random weights)")
    src.add_argument("--hf-model", metavar="DIR", help="a local transformers checkpoint directory")
    p.add_argument("--mask-id", type=int, help="mask token id (default: from the config)")
    p.add_argument("--readout-offset", type=int, choices=(0, 1), help="0 (LLaDA) or 1 (Dream); default from the config")
    p.add_argument("--pairs", type=int, default=48, help="number of facts A r B (default 48)")
    p.add_argument("--seed", type=int, default=0, help="seed of the facts and of random weights (default 0)")
    p.add_argument("--alpha", type=float, default=FALSE_ALARM, help="false-alarm probability of the intervals")
    p.add_argument("--no-contrast", action="store_true", help="skip the causal-mask contrast")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--out", metavar="PNG", help="also draw the per-layer figure (needs matplotlib)")
    p.set_defaults(func=lambda args, parser: run_probe_from_args(args))
    return p


def build_adapter(args):
    from .adapters import load_hf

    if args.hf_config or args.hf_model:
        return load_hf(
            args.hf_config or args.hf_model,
            weights=bool(args.hf_model),
            mask_id=args.mask_id,
            readout_offset=args.readout_offset,
            seed=args.seed,
        )
    overrides = {} if args.readout_offset is None else {"readout_offset": args.readout_offset}
    return ProjectAdapter.from_preset(args.model or "llada-like", seed=args.seed, **overrides)


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
    """Exit 0 on a report; 2 on a bad path, an unsupported architecture, a missing extra or a causal model
    (nothing is written then)."""
    torch.set_num_threads(1)

    def progress(k, n):
        if sys.stderr.isatty() or k == n:
            print(f"\rprobe: gradients {k}/{n} facts", end="\n" if k == n else "", file=sys.stderr, flush=True)

    try:
        for path in (args.json, args.out):
            if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise ProbeError(f"cannot write {path!r}: its folder does not exist")
        if args.out:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise ProbeError('--out needs matplotlib (pip install -e ".[plot]")') from None
        adapter = build_adapter(args)
        report = probe(
            adapter,
            pairs=args.pairs,
            seed=args.seed,
            alpha=args.alpha,
            contrast=not args.no_contrast,
            progress=progress,
        )
    except CausalModelError as exc:
        print(format_self_tests(exc.report))
        print(f"mdm-props probe: {exc}", file=sys.stderr)
        return 2
    except ProbeError as exc:
        print(f"mdm-props probe: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mdm-props probe: {exc}", file=sys.stderr)
        return 2
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
