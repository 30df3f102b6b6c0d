"""Per-layer storage of a deep block (THEORY §2b): the deep draw, the branch scale, per-layer storage
gradients.

The depth claims (:mod:`mdm_props.claims.c6_small_branch_alignment`,
:mod:`mdm_props.claims.c7_alignment_at_init`, :mod:`mdm_props.claims.c8_layer_step_decrease`) read the
same per-layer storage gradients ``G^ℓ = ∂L/∂W_OV^ℓ`` (merged value path, :func:`layer_gradients`) of the
same deep draws (:class:`StorageCase`, :func:`storage_case`); this module holds what they share.

Branch scale ε. The model multiplies every residual branch by ``cfg.branch_scale``; THEORY's equivalent
form ``W_OV^ℓ = ε Ŵ^ℓ`` (and ``W_down = ε Ŵ_down``) is used here (:func:`at_branch_scale`): G^ℓ is the
gradient with respect to the *effective* W_OV^ℓ = εŴ^ℓ, which is O(1) as ε → 0 (the gradient with
respect to Ŵ is ε G^ℓ). With ε = 2^−k both forms are the same float64 numbers (scaling by a power of 2
is exact).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .facts import Query, Template, check_query
from .model import RELATIVE_ENCODINGS, ModelConfig, forward
from .params import check_params
from .search import describe
from .storage import arm_queries, pair_queries
from .strategies import Case
from .validation import require_choice

MAX_SEED = 2**32 - 1
QUERY_KINDS = ("mdm", "arm")


# ---------------------------------------------------------------------------------------------
# the model the depth claims move, the branch scale, per-layer storage gradients


def require_deep_storage_model(cfg: ModelConfig) -> None:
    """The depth claims move the merged W_OV^ℓ and read the prediction at the query slot."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig; got {type(cfg).__name__}")
    if not cfg.merged_ov:
        raise ValueError("cfg.merged_ov must be True: G^ℓ = ∂L/∂W_OV^ℓ is the merged value path's gradient")
    if cfg.branch_scale != 1.0:
        raise ValueError(f"cfg.branch_scale must be 1: ε enters as W_OV = εŴ (at_branch_scale); got {cfg.branch_scale}")
    if not cfg.relative:
        raise ValueError(f"cfg.pos must be a relative encoding ({', '.join(RELATIVE_ENCODINGS)}); got {cfg.pos!r}")


def at_branch_scale(params: dict, eps: float) -> dict:
    """The parameters with every branch output weight scaled by ε: W_OV ← εŴ_OV, W_down ← εŴ_down
    (the model at ``branch_scale = ε``, with the effective W_OV as the parameter)."""
    out = dict(params)
    for name in ("W_OV", "W_down"):
        if name in params:
            out[name] = eps * params[name]
    return out


def require_queries(params: dict, cfg: ModelConfig, *queries: Query) -> None:
    """The parameters (names, shapes, float64, finite) and the queries, checked once: the functions below
    with a leading underscore evaluate without checking again (inside the loops over ε and η, and under
    :mod:`mdm_props.rounding_mode`, where every check is a handful of traced operations)."""
    check_params(params, cfg)
    for q in queries:
        check_query(q, cfg)


def _slot_loss(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """−log p(target) at the query slot: :func:`mdm_props.facts.query_loss`'s operations, unchecked."""
    out = forward(params, cfg, query.tensor(params["E"].device), checked=True)
    return -torch.log_softmax(out.logits[query.slot], dim=-1)[query.target]


def _layer_gradients(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    W = params["W_OV"].detach().requires_grad_(True)
    with torch.enable_grad():
        (G,) = torch.autograd.grad(_slot_loss({**params, "W_OV": W}, cfg, query), W)
    return G


def _layer_inner_products(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    return (_layer_gradients(params, cfg, fq) * _layer_gradients(params, cfg, rq)).sum((1, 2, 3))


def layer_gradients(params: dict, cfg: ModelConfig, query: Query) -> torch.Tensor:
    """G^ℓ = ∂(−log p(target))/∂W_OV^ℓ for every layer by autograd: (L, H, d, d)."""
    require_queries(params, cfg, query)
    return _layer_gradients(params, cfg, query)


def layer_inner_products(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """⟨G_f^ℓ, G_r^ℓ⟩_F for every layer ℓ: (L,)."""
    require_queries(params, cfg, fq, rq)
    return _layer_inner_products(params, cfg, fq, rq)


def layer_cosines(params: dict, cfg: ModelConfig, fq: Query, rq: Query) -> torch.Tensor:
    """cos(G_f^ℓ, G_r^ℓ) for every layer ℓ: (L,)."""
    G_f, G_r = layer_gradients(params, cfg, fq), layer_gradients(params, cfg, rq)
    return (G_f * G_r).sum((1, 2, 3)) / (G_f.flatten(1).norm(dim=1) * G_r.flatten(1).norm(dim=1))


@dataclass(frozen=True)
class StorageCase(Case):
    """A deep draw of the depth claims: a :class:`~mdm_props.strategies.Case` (structure, parameter seed, init
    scale, orthonormal embeddings or not, a template and a pair A ≠ B) with ``kind`` "mdm" (bidirectional,
    masked queries) or "arm" (causal, next-token queries at slot b − 1)."""

    kind: str = "mdm"

    def queries(self) -> tuple[Query, Query]:
        pair = arm_queries if self.kind == "arm" else pair_queries
        return pair(self.template, self.A, self.B, self.cfg.vocab)

    def describe(self, **more) -> dict:
        """:func:`mdm_props.search.describe`'s draw plus the query kind and the deep block's options."""
        c = self.cfg
        deep = ("n_layers", "norm", "final_norm", "mlp", "qk_bias", "rope_pairing", "d_mlp", "tied")
        options = {"kind": self.kind, "n_kv_heads": c.kv_heads, **{k: getattr(c, k) for k in deep}}
        return describe(self, **{**options, **more})


def storage_case(
    choose,
    seed: int,
    *,
    kind: str = "mdm",
    pos=RELATIVE_ENCODINGS,
    max_layers: int = 4,
    orthonormal: bool = True,
    final_norm=(False, True),
    mlp=("none", "swiglu"),
    scale=(0.5, 1.0, 2.0),
    tied=(True, False),
    norm=("none", "rms"),
) -> StorageCase:
    """A deep draw: ``choose(options)`` picks one of a sequence (``random.Random.choice``, or a
    Hypothesis ``sampled_from``); ``seed`` seeds the parameters. Depth 1 … ``max_layers``, 1 or 2 query
    heads with every GQA ratio, RMSNorm pre-norm or none (``norm``), the final norm, MLP and head (tied or not) options
    given, q/k biases, either RoPE pairing, a template "A r₁ … B" of length 3–5 (A in slot 0, B last).
    ``orthonormal``: orthonormal embeddings (H-orth, d_model = 12 ≥ V + 1), else Gaussian."""
    require_choice("kind", kind, QUERY_KINDS)
    n_heads = choose((1, 2))
    V = choose((4, 5, 6))
    cfg = ModelConfig(
        vocab=V,
        d_model=12 if orthonormal else choose((8, 12)),
        d_head=choose((2, 4)),
        n_heads=n_heads,
        n_kv_heads=choose(tuple(k for k in (1, 2) if n_heads % k == 0)),
        n_layers=choose(tuple(range(1, max_layers + 1))),
        pos=choose(tuple(pos)),
        rope_base=choose((1e4, 100.0)),
        attention="causal" if kind == "arm" else "bidirectional",
        tied=choose(tuple(tied)),
        norm=choose(tuple(norm)),
        final_norm=choose(tuple(final_norm)),
        mlp=choose(tuple(mlp)),
        d_mlp=8,
        qk_bias=choose((False, True)),
        rope_pairing=choose(("interleaved", "half-split")),
    )
    A = choose(tuple(range(V)))
    B = choose(tuple(t for t in range(V) if t != A))
    free = tuple(t for t in range(V) if t not in (A, B))
    T = choose((3, 4, 5))
    template = Template(T, 0, T - 1, tuple(choose(free) for _ in range(T - 2)))
    return StorageCase(cfg, seed, choose(tuple(scale)), orthonormal, template, A, B, kind)


def sample_storage_case(rng: random.Random, **kwargs) -> StorageCase:
    """:func:`storage_case` driven by a ``random.Random``."""
    return storage_case(rng.choice, rng.randint(0, MAX_SEED), **kwargs)
