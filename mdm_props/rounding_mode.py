"""Running-error bounds for any float64 torch computation, forward *and* autograd backward.

:func:`with_error_bounds` runs a function under :class:`RoundingMode`, a ``TorchDispatchMode`` that sees
every aten operation (those of the forward pass and those autograd's backward formulas call) and
records, next to each computed float64 tensor ``x̂``, a radius ``r`` with ``|x̂ − x| ≤ r`` entrywise to
first order, where ``x`` is the same computation in exact arithmetic on the same float64 inputs and
constants (parameters, ``eps``, ``1/√d_k``: the reference uses the very doubles the code uses).
The radii live in the mode, keyed by what identifies a tensor's numbers (data pointer, shape, strides,
device): autograd's saved tensors are shallow copies of the same memory, and every recorded tensor is
kept alive for the mode's lifetime, so no other tensor can take its memory and key.

Rounding model (Higham, *Accuracy and Stability of Numerical Algorithms*, §2–3), as in
:mod:`mdm_props.rounding`: ``fl(a ∘ b) = (a ∘ b)(1 + δ)``, ``|δ| ≤ u = 2⁻⁵³``; a sum or dot of n terms
in any order (blocked, pairwise, FMA) within ``γ_n Σ|terms|``; exp, log, sin, cos, pow, rsqrt within
``FUNCTION_REL`` (2 ulp ≤ 4u) of their result. Each rule below adds (i) the propagation of the input
radii through the operation's first-order derivative, evaluated at the computed values, and (ii) the
operation's own rounding; O(u²) terms are dropped. ``SAFETY`` = 2 (``rounding.FORWARD_SAFETY``)
multiplies the final radius: it covers the dropped second-order terms and kernels that round once
more than modelled; it is not fitted to observed errors.

The running radii take absolute values at every operation, so through a deep block they bound the
error by Σ_k |J_L|⋯|J_(k+1)| own_k, which exceeds the first-order error Σ_k |J_L⋯J_(k+1)| own_k by orders
of magnitude where the signed product cancels. :func:`adjoint_error_bounds` computes the latter for a
forward computation (one reverse pass per output entry). Against the 50-digit oracle of the deep block
(``tests/meta/test_rounding_mode.py``, 48 draws of C5's log p): error/bound 9e-4 … 2.6e-2 for the adjoint
bound, 5.5e-11 … 5.1e-3 for the running radius.

Soundness over silence: an aten operation without a rule raises ``NotImplementedError`` naming it,
and a floating result that is not float64 raises ``TypeError`` (claims are checked in float64 only).
Structural operations (views, indexing, concatenation, copies, exact negation) apply the same
operation to the radius. Python float constants and tensors created without a radius are exact.

Why this engine and :mod:`mdm_props.rounding` both stay: on the one-layer forward pass they agree within a
factor 2 entrywise (measured 0.95–1.18, ``tests/meta/test_rounding_engines.py``, both sound against the
50-digit oracle); this one reaches computations without a hand bound (the deep block, autograd's backward),
while the hand bounds are closed forms that run under ``vmap`` in the batched runners and compose into the
storage claims' derived tolerances.
"""

from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .rounding import FORWARD_SAFETY, FUNCTION_REL, UNIT_ROUNDOFF, gamma

aten = torch.ops.aten
u = UNIT_ROUNDOFF
SAFETY = FORWARD_SAFETY


def tree_map(f, x):
    """``f`` on every leaf of nested lists, tuples and dicts (a fast, minimal pytree map)."""
    if isinstance(x, (list, tuple)):
        return type(x)(tree_map(f, e) for e in x)
    if isinstance(x, dict):
        return {k: tree_map(f, e) for k, e in x.items()}
    return f(x)


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


def _add(v, r, kw, out, sign=1.0):
    alpha = kw.get("alpha", v[2] if len(v) > 2 else 1)
    if alpha == 1:  # the general form below with 1·r₁ and + 0.0 left out (the same numbers)
        return r[0] + r[1] + u * out.abs()
    extra = u * _abs(alpha) * _abs(v[1])
    return r[0] + _abs(alpha) * r[1] + u * out.abs() + extra


def _mul(v, r, kw, out):
    return _abs(v[0]) * r[1] + r[0] * _abs(v[1]) + u * out.abs()


def _div(v, r, kw, out):
    a, b = v[0], v[1]
    return r[0] / _abs(b) + _abs(a) * r[1] / (b * b) + u * out.abs()


def _bilinear(func):
    def rule(v, r, kw, out):
        A, B = v[0].abs(), v[1].abs()
        k = v[0].shape[-1]
        return gamma(k) * func(A, B) + func(r[0], B) + func(A, r[1])

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

    def rule(func, args, kwargs, out, radii, kradii):
        n = n_of(args)
        rad = func(*radii, **kradii)
        absval = func(*tree_map(lambda x: x.abs() if _floating(x) else x, args), **kwargs)
        return rad + gamma(max(n, 1)) * absval

    return rule


def _index_put_count(args):
    indices = args[1]
    return 1 + max((int(i.numel()) for i in indices if i is not None), default=0)


def _to_copy(func, args, kwargs, out, radii, kradii):
    src = args[0]
    if out.is_floating_point() and not src.is_floating_point():
        big = int(src.abs().max()) if src.numel() else 0
        if big > 2**53:
            raise ValueError("an integer above 2^53 converted to float64 rounds; no rule for that")
        return torch.zeros_like(out)
    return func(*radii, **kradii)


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
    aten.embedding_dense_backward: _scatter_sum(lambda a: int(a[1].numel())),
    aten.index_add: _scatter_sum(lambda a: int(a[2].numel()) + 1),
    aten.scatter_add: _scatter_sum(lambda a: int(a[2].numel()) + 1),
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


def _has_floating(out) -> bool:
    if isinstance(out, torch.Tensor):
        return out.is_floating_point()
    return isinstance(out, (list, tuple)) and any(_floating(o) for o in out)


# Per aten overload, its rule family and rule (looked up once: set and dict lookups on the overload packet
# cost more than most rules on these tiny tensors).
_INPLACE, _STRUCTURAL, _UNARY_STRUCTURAL, _ZERO, _VALUE, _ARG, _NON_FLOAT, _UNKNOWN = range(8)


def _one_tensor_no_fill(func) -> bool:
    """The overload's schema has one tensor argument, the first, and no float or scalar argument (a fill
    value): the radius is the operation on the first argument's radius with the other arguments as given."""
    schema = getattr(func, "_schema", None)
    if schema is None or not schema.arguments or str(schema.arguments[0].type) != "Tensor":
        return False
    banned = ("Tensor", "float", "number", "Scalar", "complex")
    return not any(word in str(a.type) for a in schema.arguments[1:] for word in banned)


def _family(func) -> tuple:
    """(family, the callable that runs the overload, its rule): ``func._op`` skips OpOverload.__call__'s
    Python frame where torch has it."""
    packet = func.overloadpacket
    op = getattr(func, "_op", func)
    if packet in INPLACE:
        return _INPLACE, op, packet
    if packet in STRUCTURAL:
        return (_UNARY_STRUCTURAL if _one_tensor_no_fill(func) else _STRUCTURAL), op, None
    if packet in ZERO:
        return _ZERO, op, None
    if packet in VALUE_RULES:
        return _VALUE, op, VALUE_RULES[packet]
    if packet in ARG_RULES:
        return _ARG, op, ARG_RULES[packet]
    if packet in NON_FLOAT_OK:
        return _NON_FLOAT, op, None
    return _UNKNOWN, op, None


_FAMILIES: dict = {}


class RoundingMode(TorchDispatchMode):
    """Every aten operation inside the mode records a radius for each of its float64 results
    (:meth:`radius` reads it)."""

    def __init__(self) -> None:
        super().__init__()
        self._radii: dict = {}
        self._alive: list = []  # every recorded tensor: its memory (and so its key) stays its own

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._disable_dynamo unless this says False: nothing
        # here is compiled, and the wrapper costs about 15% of a deep block's radii
        return False

    def radius(self, x):
        """The radius recorded for tensor ``x``; zeros for a float tensor computed outside the mode (exact),
        ``x`` itself for a non-float tensor, 0.0 for a number."""
        if isinstance(x, torch.Tensor):
            r = self._radii.get((x.data_ptr(), x.shape, x.stride(), x.device))
            if r is not None:
                return r
            return torch.zeros_like(x) if x.is_floating_point() else x
        return 0.0

    def _structural_radii(self, args, found: list) -> list:
        """A structural operation's arguments with every tensor replaced by its radius, Python floats (fill
        values) by 0.0, anything else (integers, index tensors, masks) kept; lists recursed. ``found`` gets a
        True for every float tensor with a recorded radius."""
        out = []
        for a in args:
            if isinstance(a, torch.Tensor):
                r = self._radii.get((a.data_ptr(), a.shape, a.stride(), a.device))
                if r is not None:
                    found.append(True)
                    out.append(r)
                else:
                    out.append(torch.zeros_like(a) if a.is_floating_point() else a)
            elif type(a) is float:
                out.append(0.0)
            elif isinstance(a, (list, tuple)):
                out.append(type(a)(self._structural_radii(a, found)))
            else:
                out.append(a)
        return out

    def _structural(self, op, args, kwargs) -> torch.Tensor | None:
        """The operation applied to the radii; ``None`` when no argument carries a recorded radius (the result
        is exact: nothing to record, and :meth:`radius` gives zeros for it)."""
        found: list = []
        radii = self._structural_radii(args, found)
        kradii = dict(zip(kwargs, self._structural_radii(kwargs.values(), found), strict=True)) if kwargs else kwargs
        return op(*radii, **kradii) if found else None

    @staticmethod
    def _check_dtype(out) -> None:
        for o in out if isinstance(out, (list, tuple)) else (out,):
            if _floating(o) and o.dtype != torch.float64:
                raise TypeError(f"an operation produced {o.dtype}; claims are checked in torch.float64 only")

    def _record(self, out, radius) -> None:
        if isinstance(out, torch.Tensor):
            if not out.is_floating_point():
                return
            if out.dtype != torch.float64:
                raise TypeError(f"an operation produced {out.dtype}; claims are checked in torch.float64 only")
            if not isinstance(radius, torch.Tensor):
                radius = torch.full_like(out, radius)
            elif radius.dtype != out.dtype:
                radius = radius.to(out.dtype)
            self._radii[(out.data_ptr(), out.shape, out.stride(), out.device)] = radius
            self._alive.append(out)
        elif isinstance(out, (list, tuple)):
            for o, r in zip(out, radius, strict=False):
                self._record(o, r)

    def _inplace(self, func, packet, args, kwargs):
        target = args[0]
        before = target.clone() if packet in (aten.add_, aten.sub_, aten.mul_, aten.div_) else None
        rads = [self.radius(a) if isinstance(a, torch.Tensor) else 0.0 for a in args]
        src = args[1] if len(args) > 1 else None
        src_radius = self.radius(src) if packet is aten.copy_ and _floating(src) else None
        func(*args, **kwargs)
        if _floating(target):
            if packet is aten.copy_:
                radius = src_radius.expand_as(target).clone() if src_radius is not None else torch.zeros_like(target)
            elif packet in (aten.zero_, aten.fill_):
                radius = torch.zeros_like(target)
            else:
                radius = VALUE_RULES[INPLACE[packet]]([before, *args[1:]], rads, kwargs, target)
            self._record(target, radius)
        return target

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> object:
        family = _FAMILIES.get(func)
        if family is None:
            family = _FAMILIES[func] = _family(func)
        kind, op, rule = family
        kwargs = kwargs or {}
        if kind == _INPLACE:
            return self._inplace(func, rule, args, kwargs)
        out = op(*args, **kwargs)
        if not (out.is_floating_point() if isinstance(out, torch.Tensor) else _has_floating(out)):
            return out
        if kind == _UNARY_STRUCTURAL:
            a = args[0]
            r = self._radii.get((a.data_ptr(), a.shape, a.stride(), a.device))
            if r is None:  # an exact argument, an exact result (still float64 only)
                self._check_dtype(out)
                return out
            radius = op(r, *args[1:], **kwargs)
        elif kind == _STRUCTURAL:
            radius = self._structural(op, args, kwargs)
            if radius is None:  # exact arguments, exact result (still float64 only)
                self._check_dtype(out)
                return out
        elif kind == _VALUE:
            radius = rule(args, [self.radius(a) if isinstance(a, torch.Tensor) else 0.0 for a in args], kwargs, out)
        elif kind == _ZERO:  # exact: nothing to record (:meth:`radius` gives zeros)
            self._check_dtype(out)
            return out
        elif kind == _ARG:
            found: list = []
            radii = self._structural_radii(args, found)
            kradii = dict(zip(kwargs, self._structural_radii(kwargs.values(), found), strict=True))
            radius = rule(func, args, kwargs, out, radii, kradii)
        elif kind == _NON_FLOAT:
            raise NotImplementedError(f"{func} produced a floating tensor; no rounding rule for it")
        else:
            raise NotImplementedError(f"no rounding rule for {func}; add one to mdm_props.rounding_mode")
        self._record(out, radius)
        return out


def with_error_bounds(fn, *args, safety: float = SAFETY, **kwargs):
    """Run ``fn(*args, **kwargs)`` under :class:`RoundingMode`; return ``(values, bounds)`` with the same
    structure as its result: every float tensor replaced by its value and by ``safety`` × its radius."""
    mode = RoundingMode()
    with mode:
        result = fn(*args, **kwargs)
    values = tree_map(lambda x: x.detach() if isinstance(x, torch.Tensor) else x, result)
    bounds = tree_map(lambda x: safety * mode.radius(x) if isinstance(x, torch.Tensor) else x, result)
    return values, bounds


class _Tape(TorchDispatchMode):
    """Records every aten operation (overload, arguments, result) of a forward computation."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list = []

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> object:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _own_rounding(family: int, rule, func, args, kwargs, out):
    """An operation's own rounding: its rule with every argument exact (zero radii)."""
    if family == _VALUE:
        zero = [
            (torch.zeros_like(a) if a.is_floating_point() else a) if isinstance(a, torch.Tensor) else 0.0 for a in args
        ]
        return rule(args, zero, kwargs, out)
    radii = [torch.zeros_like(a) if _floating(a) else (0.0 if type(a) is float else a) for a in args]
    kradii = {k: torch.zeros_like(v) if _floating(v) else (0.0 if type(v) is float else v) for k, v in kwargs.items()}
    return rule(func, args, kwargs, out, radii, kradii)


def adjoint_error_bounds(fn, *args, safety: float = SAFETY, **kwargs):
    """``(value, bound)`` for a float64 tensor ``fn(*args, **kwargs)`` computed without autograd (a forward
    pass): ``|fl(y_j) − y_j| ≤ bound_j`` to first order, with the rounding model and the operations' own
    rounding terms of :class:`RoundingMode` (each rule with exact arguments), combined by the adjoint
    instead of the running radii.

    Derivation. Write the computation as operations v_k = f_k(v_<k) and their computed values as
    v̂_k = f_k(v̂_<k) + ε_k, |ε_k| ≤ own_k (the rule's own rounding at the computed arguments). To first
    order y(ε) − y(0) = Σ_k (∂y/∂v_k) ε_k, so |fl(y_j) − y_j| ≤ Σ_k |∂y_j/∂v_k| · own_k (entrywise products
    summed). The running radii bound the same sum with |∂y/∂v_k| replaced by the product of the entrywise
    absolute Jacobians of every later operation, |J_L|⋯|J_(k+1)| ≥ |J_L⋯J_(k+1)|: through a deep block (residual
    stream, attention, SwiGLU) that product grows by orders of magnitude where the signed one cancels
    (measured against the 50-digit oracle: the running radius of log p is 10²–10¹¹ times the error, this
    bound 50–700 times). The adjoints ∂y_j/∂v_k come from one reverse pass per output entry over a replay of
    the recorded operations with a zero perturbation added to every rounding one; they are evaluated at the
    computed values (first order, as the running radii are). ``safety`` (2) covers the dropped second-order
    terms, as there. In-place operations and autograd inside ``fn`` are refused (use
    :func:`with_error_bounds`)."""
    tape = _Tape()
    with torch.no_grad(), tape:
        result = fn(*args, **kwargs)
    if not (isinstance(result, torch.Tensor) and result.dtype == torch.float64):
        raise TypeError(f"fn must return one float64 tensor; got {type(result).__name__}")
    env: dict = {}
    get = lambda x: env.get(id(x), x) if isinstance(x, torch.Tensor) else x  # noqa: E731
    perturbations, owns = [], []
    with torch.enable_grad():
        for func, a, kw, out in tape.ops:
            family = _FAMILIES.get(func) or _FAMILIES.setdefault(func, _family(func))
            kind, op, rule = family
            if kind == _INPLACE or func._schema.is_mutable:
                raise NotImplementedError(f"adjoint_error_bounds does not replay the in-place operation {func}")
            a2, kw2 = _replayed(get, a), {k: get(v) for k, v in kw.items()}
            new = func(*a2, **kw2)
            outs, news = (out, new) if isinstance(out, (list, tuple)) else ((out,), (new,))
            if any(_floating(o) for o in outs):
                RoundingMode._check_dtype(out)
                if kind in (_VALUE, _ARG) and isinstance(new, torch.Tensor):
                    own = _own_rounding(
                        kind, rule, func, tree_map(_detached, a2), tree_map(_detached, kw2), new.detach()
                    )
                    delta = torch.zeros_like(new, requires_grad=True)
                    new = new + delta
                    perturbations.append(delta)
                    owns.append(own if isinstance(own, torch.Tensor) else torch.full_like(delta, own))
                    news = (new,)
                elif kind in (_NON_FLOAT, _UNKNOWN):
                    raise NotImplementedError(f"no rounding rule for {func}; add one to mdm_props.rounding_mode")
            for o, n in zip(outs, news, strict=True):
                if isinstance(o, torch.Tensor):
                    env[id(o)] = n
        y = get(result).reshape(-1)
        bound = torch.zeros(y.numel(), dtype=torch.float64, device=y.device)
        if y.requires_grad and owns:
            own = torch.cat([o.reshape(-1) for o in owns])
            for j in range(y.numel()):  # one reverse pass per output entry
                grads = torch.autograd.grad(y[j], perturbations, retain_graph=True, materialize_grads=True)
                bound[j] = (torch.cat([g.reshape(-1) for g in grads]).abs() * own).sum()
    return result.detach(), safety * bound.reshape(result.shape)


def _detached(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _replayed(get, args) -> tuple:
    """``get`` on a flat argument tuple, one level of lists deep (aten signatures nest no further)."""
    return tuple([get(e) for e in a] if isinstance(a, (list, tuple)) else get(a) for a in args)


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


def adjoint_error_bounds_batch(fn, params: dict, *, safety: float = SAFETY):
    """:func:`adjoint_error_bounds` of ``fn(params_i)`` for K draws at once: ``params`` holds every entry
    stacked on a leading axis K (one structure, K parameter draws); returns ``(values, bounds)``, each
    (K, *shape of fn's result). Draw i's bound is the same first-order bound Σ_k |∂y/∂v_k| own_k, ×
    ``safety``, as ``adjoint_error_bounds(lambda: fn(params_i))`` (the same operations, rules and adjoint;
    measured equal to 1e-13 relative, ``tests/test_c9.py``).

    How. ``fn`` runs once on draw 0 under the tape; the recorded operations are then replayed as a
    function of one draw's parameters and of one zero perturbation δ_k per rounding operation (the
    replay of :func:`adjoint_error_bounds`, each rule's own rounding evaluated at that draw's values), and
    ``torch.func.vjp`` of that function, with one vector-Jacobian product per output entry under
    ``torch.func.vmap``, gives ∂y_j/∂δ_k; the whole is ``vmap``-ed over the K draws. Every operation, rule
    and adjoint sees one draw's (logical) tensors, so draw i's bound is that draw's own. ``fn`` must take
    the parameter dict and run the same operations whatever the values (no data-dependent branches: the
    model's forward with ``checked=True``); the values are computed by vmap's kernels, which may sum in
    another order than the unbatched ones: the rules bound a sum in any order (module docstring)."""
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict of tensors stacked on a leading draw axis")
    K = {v.shape[0] if v.dim() else None for v in params.values()}
    if len(K) != 1 or None in K:
        raise ValueError(f"params must share one leading draw axis K; got leading sizes {sorted(map(str, K))}")
    first = {n: v[0] for n, v in params.items()}
    tape = _Tape()
    with torch.no_grad(), tape:
        result = fn(first)
    if not (isinstance(result, torch.Tensor) and result.dtype == torch.float64):
        raise TypeError(f"fn must return one float64 tensor; got {type(result).__name__}")
    leaves = {id(v): n for n, v in first.items()}
    plan, shapes = [], []
    for func, a, kw, out in tape.ops:
        kind, op, rule = _FAMILIES.get(func) or _FAMILIES.setdefault(func, _family(func))
        if kind == _INPLACE or func._schema.is_mutable:
            raise NotImplementedError(f"adjoint_error_bounds_batch does not replay the in-place operation {func}")
        outs = out if isinstance(out, (list, tuple)) else (out,)
        perturbed = False
        if any(_floating(o) for o in outs):
            RoundingMode._check_dtype(out)
            if kind in (_VALUE, _ARG) and isinstance(out, torch.Tensor):
                perturbed = True
                shapes.append(out.shape)
            elif kind in (_NON_FLOAT, _UNKNOWN):
                raise NotImplementedError(f"no rounding rule for {func}; add one to mdm_props.rounding_mode")
        plan.append((func, a, kw, outs, kind, rule, perturbed))

    def replay(p: dict, deltas):
        env = {i: p[n] for i, n in leaves.items()}
        get = lambda x: env.get(id(x), x) if isinstance(x, torch.Tensor) else x  # noqa: E731
        owns, it = [], iter(deltas)
        for func, a, kw, outs, kind, rule, perturbed in plan:
            a2, kw2 = _replayed(get, a), {k: get(v) for k, v in kw.items()}
            new = func(*a2, **kw2)
            if perturbed:
                own = _own_rounding(kind, rule, func, a2, kw2, new)
                owns.append(own if isinstance(own, torch.Tensor) else torch.full_like(new, own))
                new = new + next(it)
            for o, n in zip(outs, new if isinstance(new, (list, tuple)) else (new,), strict=True):
                if isinstance(o, torch.Tensor):
                    env[id(o)] = n
        return get(result), owns

    def one(p: dict):
        zeros = tuple(torch.zeros(s, dtype=torch.float64, device=result.device) for s in shapes)
        vjp_out: tuple = torch.func.vjp(lambda d: replay(p, d), zeros, has_aux=True)
        y, pull, owns = vjp_out
        n = y.numel()
        bound = torch.zeros(n, dtype=torch.float64, device=y.device)
        if owns:
            rows = torch.eye(n, dtype=y.dtype, device=y.device).reshape(n, *y.shape)
            (grads,) = torch.func.vmap(pull)(rows)  # grads[k]: (n, *shape of δ_k), row j = ∂y_j/∂δ_k
            for g, own in zip(grads, owns, strict=True):
                bound = bound + (g.abs() * own).reshape(n, -1).sum(1)
        return y, safety * bound.reshape(y.shape)

    values, bounds = torch.func.vmap(one)(params)
    return values.detach(), bounds.detach()
