"""Running-error bounds for any float64 torch computation, forward *and* autograd backward.

:func:`with_error_bounds` runs a function under :class:`RoundingMode`, a ``TorchDispatchMode`` that sees
every aten operation (those of the forward pass and those autograd's backward formulas call) and
carries, next to each computed float64 tensor ``x̂``, a radius ``r`` with ``|x̂ − x| ≤ r`` entrywise to
first order, where ``x`` is the same computation in exact arithmetic on the same float64 inputs and
constants (parameters, ``eps``, ``1/√d_k``: the reference uses the very doubles the code uses).
Tensors carrying a radius are :class:`Ball` s (a wrapper subclass: ``.value``, ``.radius``).

Rounding model (Higham, *Accuracy and Stability of Numerical Algorithms*, §2–3), as in
:mod:`mdm_props.rounding`: ``fl(a ∘ b) = (a ∘ b)(1 + δ)``, ``|δ| ≤ u = 2⁻⁵³``; a sum or dot of n terms
in any order (blocked, pairwise, FMA) within ``γ_n Σ|terms|``; exp, log, sin, cos, pow, rsqrt within
``FUNCTION_REL`` (2 ulp ≤ 4u) of their result. Each rule below adds (i) the propagation of the input
radii through the operation's first-order derivative, evaluated at the computed values, and (ii) the
operation's own rounding; O(u²) terms are dropped. ``SAFETY`` = 2 (``rounding.FORWARD_SAFETY``)
multiplies the final radius: it covers the dropped second-order terms and kernels that round once
more than modelled; it is not fitted to observed errors (``tests/meta/test_rounding_mode.py``
compares against the 50-digit mpmath oracle: observed errors are a small share of the bound).

Soundness over silence: an aten operation without a rule raises ``NotImplementedError`` naming it,
and a floating result that is not float64 raises ``TypeError`` (claims are checked in float64 only).
Structural operations (views, indexing, concatenation, copies, exact negation) apply the same
operation to the radius. Python float constants and tensors created without a radius are exact.
"""

from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .rounding import FORWARD_SAFETY, FUNCTION_REL, UNIT_ROUNDOFF, gamma

aten = torch.ops.aten
u = UNIT_ROUNDOFF
SAFETY = FORWARD_SAFETY


class Ball(torch.Tensor):
    """A float64 tensor ``value`` with an entrywise first-order error radius ``radius`` (same shape)."""

    @staticmethod
    def __new__(cls, value: torch.Tensor, radius: torch.Tensor):
        ball = torch.Tensor._make_wrapper_subclass(
            cls,
            value.size(),
            strides=value.stride(),
            storage_offset=value.storage_offset(),
            dtype=value.dtype,
            device=value.device,
            requires_grad=False,
        )
        ball.value, ball.radius = value, radius  # type: ignore[attr-defined]  # a wrapper subclass's own fields
        return ball

    def __repr__(self):
        return f"Ball(value={self.value!r}, radius={self.radius!r})"

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]  # torch's own idiom

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def tree_map(f, x):
    """``f`` on every leaf of nested lists, tuples and dicts (a fast, minimal pytree map)."""
    if isinstance(x, (list, tuple)):
        return type(x)(tree_map(f, e) for e in x)
    if isinstance(x, dict):
        return {k: tree_map(f, e) for k, e in x.items()}
    return f(x)


def value_of(x):
    """The float64 value of a Ball (or the tensor / number itself)."""
    return x.value if isinstance(x, Ball) else x


def radius_of(x):
    """The radius of a Ball; 0 for an exact float tensor or number (``None`` for non-float tensors)."""
    if isinstance(x, Ball):
        return x.radius
    if isinstance(x, torch.Tensor):
        return torch.zeros_like(x) if x.is_floating_point() else x
    return 0.0


def _abs(x):
    return x.abs() if isinstance(x, torch.Tensor) else abs(x)


def _sum_like(t: torch.Tensor, shape) -> torch.Tensor:
    """Sum a broadcast result back to ``shape`` (for radii of broadcasting binary ops this is not needed:
    radii are kept at the output's shape)."""
    return t


def _dims(x: torch.Tensor, dim) -> tuple[int, ...]:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return tuple(range(x.dim()))
    if isinstance(dim, int):
        dim = [dim]
    return tuple(d % max(x.dim(), 1) for d in dim)


def _count(x: torch.Tensor, dim) -> int:
    return int(math.prod(x.shape[d] for d in _dims(x, dim))) if x.dim() else 1


# --- rules: (vals, rads, kwargs, out) -> radius of out ---------------------------------------


def _structural(func, args, kwargs):
    """Apply the operation to the radii (floats among the arguments are fill values: 0)."""

    def rad(x):
        if isinstance(x, (Ball, torch.Tensor)):
            return radius_of(x)
        if isinstance(x, float):
            return 0.0
        return x

    return func(*tree_map(rad, args), **tree_map(rad, kwargs))


def _add(v, r, kw, out, sign=1.0):
    alpha = kw.get("alpha", v[2] if len(v) > 2 else 1)
    extra = 0.0 if alpha == 1 else u * _abs(alpha) * _abs(v[1])
    return r[0] + _abs(alpha) * r[1] + u * out.abs() + extra


def _mul(v, r, kw, out):
    return _abs(v[0]) * r[1] + r[0] * _abs(v[1]) + u * out.abs()


def _div(v, r, kw, out):
    a, b = v[0], v[1]
    return r[0] / _abs(b) + _abs(a) * r[1] / (b * b) + u * out.abs()


def _bilinear(func):
    def rule(v, r, kw, out):
        A, B = v[0], v[1]
        k = A.shape[-1]
        absAB = func(A.abs(), B.abs())
        return gamma(k) * absAB + func(r[0], B.abs()) + func(A.abs(), r[1])

    return rule


def _addmm(func):
    def rule(v, r, kw, out):
        C, A, B = v[0], v[1], v[2]
        beta, alpha = abs(kw.get("beta", 1)), abs(kw.get("alpha", 1))
        k = A.shape[-1]
        zero = torch.zeros_like(C)
        absAB = func(zero, A.abs(), B.abs())
        return (
            gamma(k + 1) * (beta * C.abs() + alpha * absAB)
            + beta * r[0]
            + alpha * (func(zero, r[1], B.abs()) + func(zero, A.abs(), r[2]))
        )

    return rule


def _reduce_sum(v, r, kw, out, mean=False):
    x = v[0]
    dim = v[1] if len(v) > 1 else kw.get("dim")
    keepdim = v[2] if len(v) > 2 else kw.get("keepdim", False)
    dims = _dims(x, dim)
    n = _count(x, dim)
    if not dims:
        total_r, total_a = r[0], x.abs()
    else:
        total_r, total_a = r[0].sum(dims, keepdim=keepdim), x.abs().sum(dims, keepdim=keepdim)
    bound = total_r + gamma(max(n - 1, 1)) * total_a
    if mean:
        bound = bound / n + u * out.abs()
    return bound


def _amax(v, r, kw, out):
    x = v[0]
    dim = v[1] if len(v) > 1 else kw.get("dim", [])
    keepdim = v[2] if len(v) > 2 else kw.get("keepdim", False)
    return r[0].amax(_dims(x, dim), keepdim=keepdim)


def _unary(deriv, own):
    """|f'(x)| r + own rounding (relative to |out|)."""

    def rule(v, r, kw, out):
        return deriv(v[0], out).abs() * r[0] + own * out.abs()

    return rule


def _pow_scalar_exponent(v, r, kw, out):
    x, p = v[0], v[1]
    return abs(p) * x.abs().pow(p - 1) * r[0] + FUNCTION_REL * out.abs()


def _pow_scalar_base(v, r, kw, out):
    base, e = v[0], v[1]
    lnb = abs(math.log(base))
    return out.abs() * lnb * r[1] + (6 * lnb * e.abs() + 2 * 2) * u * out.abs()


def _softmax(v, r, kw, out):
    s, dim = v[0], v[1]
    finite = torch.isfinite(s)
    m = s.masked_fill(~finite, -math.inf).amax(dim, keepdim=True)
    rho = torch.where(finite, u * (s - m).abs() + FUNCTION_REL, torch.zeros_like(s))
    e = torch.where(finite, r[0], torch.zeros_like(s))
    n = s.shape[dim]
    rel = e + rho + (out * (e + rho)).sum(dim, keepdim=True) + gamma(max(n - 1, 1)) + 2 * u
    return torch.where(finite, out * rel, torch.zeros_like(s))


def _log_softmax(v, r, kw, out):
    z, dim = v[0], v[1]
    p = out.exp()
    m = z.amax(dim, keepdim=True)
    log_sum = torch.logsumexp(z - m, dim=dim, keepdim=True)
    n = z.shape[dim]
    e = r[0] + (p * r[0]).sum(dim, keepdim=True)
    e = e + (p * (u * (z - m).abs() + FUNCTION_REL)).sum(dim, keepdim=True) + gamma(max(n - 1, 1))
    return e + FUNCTION_REL * log_sum + u * ((z - m).abs() + m.abs() + log_sum + out.abs())


def _softmax_backward(v, r, kw, out):
    """g_in = P ⊙ (G − Σ G⊙P)."""
    G, P, dim = v[0], v[1], v[2]
    n = G.shape[dim]
    S = (G * P).sum(dim, keepdim=True)
    prop = P.abs() * (r[0] + (r[0] * P.abs() + G.abs() * r[1]).sum(dim, keepdim=True)) + r[1] * (G - S).abs()
    own = P.abs() * (gamma(n) * (G.abs() * P.abs()).sum(dim, keepdim=True) + u * (G - S).abs()) + u * out.abs()
    return prop + own


def _log_softmax_backward(v, r, kw, out):
    """g_in = G − exp(out) Σ G."""
    G, Y, dim = v[0], v[1], v[2]
    n = G.shape[dim]
    p = Y.exp()
    S = G.sum(dim, keepdim=True)
    r_p = p * (r[1] + FUNCTION_REL)
    r_S = r[0].sum(dim, keepdim=True) + gamma(n) * G.abs().sum(dim, keepdim=True)
    return r[0] + r_p * S.abs() + p * r_S + u * (p * S).abs() + u * out.abs()


def _silu_deriv(x):
    s = torch.sigmoid(x)
    return s, s * (1 + x * (1 - s)), s * (1 - s) * (2 + x * (1 - 2 * s))


def _silu(v, r, kw, out):
    _, d1, _ = _silu_deriv(v[0])
    return d1.abs() * r[0] + (FUNCTION_REL + 3 * u) * out.abs()


def _silu_backward(v, r, kw, out):
    G, x = v[0], v[1]
    s, d1, d2 = _silu_deriv(x)
    r_d = (FUNCTION_REL + 6 * u) * s * (1 + x.abs() * (1 + 2 * s))
    return G.abs() * (d2.abs() * r[1] + r_d) + r[0] * d1.abs() + u * out.abs()


def _sigmoid(v, r, kw, out):
    return (out * (1 - out)).abs() * r[0] + (FUNCTION_REL + 2 * u) * out.abs()


def _sigmoid_backward(v, r, kw, out):
    G, y = v[0], v[1]
    return r[0] * (y * (1 - y)).abs() + G.abs() * (1 - 2 * y).abs() * r[1] + 3 * u * (G * y).abs() + u * out.abs()


def _scatter_sum(n_of):
    """Accumulating scatters (index_put with accumulate, embedding backward, index_add): the same scatter
    of the radii, plus γ_n times the scatter of the absolute values (n terms meet in one entry at most)."""

    def rule(func, args, kwargs, out):
        n = n_of(args)
        rad = _structural(func, args, kwargs)
        absval = func(
            *tree_map(
                lambda x: (
                    value_of(x).abs() if isinstance(x, (Ball, torch.Tensor)) and value_of(x).is_floating_point() else x
                ),
                args,
            ),
            **kwargs,
        )
        return rad + gamma(max(n, 1)) * absval

    return rule


def _index_put_count(args):
    indices = args[1]
    return 1 + max((int(i.numel()) for i in indices if i is not None), default=0)


def _to_copy(func, args, kwargs, out):
    src = value_of(args[0])
    if out.is_floating_point() and not src.is_floating_point():
        big = int(src.abs().max()) if src.numel() else 0
        if big > 2**53:
            raise ValueError("an integer above 2^53 converted to float64 rounds; no rule for that")
        return torch.zeros_like(out)
    return _structural(func, args, kwargs)


def _zero(func, args, kwargs, out):
    return torch.zeros_like(out)


STRUCTURAL = {
    aten.view,
    aten._unsafe_view,
    aten.reshape,
    aten.permute,
    aten.transpose,
    aten.t,
    aten.expand,
    aten.unsqueeze,
    aten.squeeze,
    aten.select,
    aten.slice,
    aten.index,
    aten.index_select,
    aten.embedding,
    aten.gather,
    aten.cat,
    aten.stack,
    aten.clone,
    aten.alias,
    aten.detach,
    aten.lift_fresh,
    aten.flip,
    aten.repeat,
    aten.masked_fill,
    aten.where,
    aten.constant_pad_nd,
    aten.select_backward,
    aten.slice_backward,
    aten.split,
    aten.unbind,
    aten.split_with_sizes,
    aten.contiguous,
    aten._reshape_alias,
    aten.as_strided,
    aten.unfold,
    aten.narrow,
    aten.expand_copy,
    aten.permute_copy,
    aten.view_copy,
    aten.squeeze_copy,
    aten.unsqueeze_copy,
    aten.t_copy,
    aten.transpose_copy,
    aten.select_copy,
    aten.slice_copy,
    aten.diagonal,
    aten.movedim,
    aten.repeat_interleave,
    aten._unsafe_index,
    aten.new_empty,
    aten.new_empty_strided,
}
ZERO = {
    aten.zeros_like,
    aten.ones_like,
    aten.full_like,
    aten.empty_like,
    aten.new_zeros,
    aten.new_ones,
    aten.new_full,
    aten.zeros,
    aten.ones,
    aten.full,
    aten.empty,
    aten.empty_strided,
    aten.arange,
    aten.scalar_tensor,
    aten.fill,
    aten.eye,
    aten.linspace,
}
VALUE_RULES = {
    aten.neg: lambda v, r, kw, out: r[0],
    aten.abs: lambda v, r, kw, out: r[0],
    aten.add: _add,
    aten.sub: _add,
    aten.rsub: _add,
    aten.mul: _mul,
    aten.div: _div,
    aten.mm: _bilinear(torch.mm),
    aten.bmm: _bilinear(torch.bmm),
    aten.mv: _bilinear(torch.mv),
    aten.dot: _bilinear(torch.dot),
    aten.matmul: _bilinear(torch.matmul),
    aten.addmm: _addmm(torch.addmm),
    aten.baddbmm: _addmm(torch.baddbmm),
    aten.sum: _reduce_sum,
    aten.mean: lambda v, r, kw, out: _reduce_sum(v, r, kw, out, mean=True),
    aten.amax: _amax,
    aten.exp: _unary(lambda x, y: y, FUNCTION_REL),
    aten.log: _unary(lambda x, y: 1 / x, FUNCTION_REL),
    aten.sin: _unary(lambda x, y: torch.cos(x), FUNCTION_REL),
    aten.cos: _unary(lambda x, y: torch.sin(x), FUNCTION_REL),
    aten.rsqrt: _unary(lambda x, y: 0.5 * y / x, FUNCTION_REL),
    aten.sqrt: _unary(lambda x, y: 0.5 / y, u),
    aten.reciprocal: _unary(lambda x, y: y * y, u),
    aten.sigmoid: _sigmoid,
    aten.silu: _silu,
    aten.silu_backward: _silu_backward,
    aten.sigmoid_backward: _sigmoid_backward,
    aten._softmax: _softmax,
    aten._log_softmax: _log_softmax,
    aten._softmax_backward_data: _softmax_backward,
    aten._log_softmax_backward_data: _log_softmax_backward,
}
ARG_RULES = {
    aten._to_copy: _to_copy,
    aten.index_put: _scatter_sum(_index_put_count),
    aten._index_put_impl: _scatter_sum(_index_put_count),
    aten.embedding_dense_backward: _scatter_sum(lambda a: int(value_of(a[1]).numel())),
    aten.index_add: _scatter_sum(lambda a: int(value_of(a[2]).numel()) + 1),
    aten.scatter_add: _scatter_sum(lambda a: int(value_of(a[2]).numel()) + 1),
}
INPLACE = {
    aten.add_: aten.add,
    aten.sub_: aten.sub,
    aten.mul_: aten.mul,
    aten.div_: aten.div,
    aten.copy_: None,
    aten.zero_: None,
    aten.fill_: None,
}
NON_FLOAT_OK = {
    aten._local_scalar_dense,
    aten.eq,
    aten.ne,
    aten.lt,
    aten.le,
    aten.gt,
    aten.ge,
    aten.isfinite,
    aten.is_nonzero,
    aten.any,
    aten.all,
    aten.logical_not,
    aten.bitwise_not,
    aten.argmax,
    aten.argmin,
    aten.clamp_min,
    aten.clamp,
    aten.tril,
    aten.triu,
    aten.sign,
}


def _pow(v, r, kw, out):
    if isinstance(v[0], (int, float)):
        return _pow_scalar_base(v, r, kw, out)
    if isinstance(v[1], (int, float)):
        return _pow_scalar_exponent(v, r, kw, out)
    raise NotImplementedError("pow with a tensor base and a tensor exponent has no rounding rule")


VALUE_RULES[aten.pow] = _pow


def _floating(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _wrap(out, radius):
    if isinstance(out, (list, tuple)):
        return type(out)(_wrap(o, r) for o, r in zip(out, radius, strict=False))
    if _floating(out):
        if out.dtype != torch.float64:
            raise TypeError(f"an operation produced {out.dtype}; claims are checked in torch.float64 only")
        if not isinstance(radius, torch.Tensor):
            radius = torch.full_like(out, radius)
        elif radius.dtype != out.dtype:
            radius = radius.to(out.dtype)
        return Ball(out, radius)
    return out


def _values(args):
    """value_of over a flat argument tuple, one level of lists deep (aten signatures nest no further)."""
    return tuple([value_of(e) for e in a] if isinstance(a, (list, tuple)) else value_of(a) for a in args)


def _dispatch(func, args, kwargs):
    packet = func.overloadpacket
    vals = _values(args)
    kvals = {k: value_of(v) for k, v in kwargs.items()} if kwargs else {}
    if packet in INPLACE:
        target = args[0]
        before = value_of(target).clone() if packet in (aten.add_, aten.sub_, aten.mul_, aten.div_) else None
        func(*vals, **kvals)
        if isinstance(target, Ball):
            if packet is aten.copy_:
                target.radius = (
                    radius_of(args[1]).expand_as(target.value).clone()
                    if _floating(value_of(args[1]))
                    else torch.zeros_like(target.value)
                )
            elif packet in (aten.zero_, aten.fill_):
                target.radius = torch.zeros_like(target.value)
            else:
                rads = [radius_of(a) if isinstance(a, (Ball, torch.Tensor)) else 0.0 for a in args]
                target.radius = VALUE_RULES[INPLACE[packet]]([before, *vals[1:]], rads, kvals, target.value)
        return target
    out = func(*vals, **kvals)
    if not (
        _floating(out)
        if isinstance(out, torch.Tensor)
        else isinstance(out, (list, tuple)) and any(_floating(o) for o in out)
    ):
        return out
    if packet in STRUCTURAL:
        radius = _structural(func, args, kwargs)
    elif packet in ZERO:
        radius = tree_map(lambda o: torch.zeros_like(o) if _floating(o) else o, out)
    elif packet in VALUE_RULES:
        rads = [radius_of(a) if isinstance(a, (Ball, torch.Tensor)) else 0.0 for a in args]
        radius = VALUE_RULES[packet](vals, rads, kvals, out)
    elif packet in ARG_RULES:
        radius = ARG_RULES[packet](func, args, kwargs, out)
    elif packet in NON_FLOAT_OK:
        raise NotImplementedError(f"{func} produced a floating tensor; no rounding rule for it")
    else:
        raise NotImplementedError(f"no rounding rule for {func}; add one to mdm_props.rounding_mode")
    return _wrap(out, radius)


class RoundingMode(TorchDispatchMode):
    """Every aten operation inside the mode returns :class:`Ball` s for its float64 results."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def with_error_bounds(fn, *args, safety: float = SAFETY, **kwargs):
    """Run ``fn(*args, **kwargs)`` under :class:`RoundingMode`; return ``(values, bounds)`` with the same
    structure as its result: every float tensor replaced by its value and by ``safety`` × its radius."""
    with RoundingMode():
        result = fn(*args, **kwargs)
    values = tree_map(lambda x: value_of(x).detach() if isinstance(x, torch.Tensor) else x, result)
    bounds = tree_map(lambda x: safety * radius_of(x) if isinstance(x, torch.Tensor) else x, result)
    return values, bounds


class _DtypeProbe(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.dtypes, self.n_ops = set(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.n_ops += 1
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if _floating(o):
                self.dtypes.add(o.dtype)
        return out


def floating_dtypes(fn, *args, **kwargs) -> tuple[set, int]:
    """(the set of floating dtypes produced by every aten operation while running ``fn``, forward and
    backward, and the number of operations seen)."""
    probe = _DtypeProbe()
    with probe:
        fn(*args, **kwargs)
    return probe.dtypes, probe.n_ops
