"""Parameter samplers and the checks every claim runs on its inputs.

Random tensors are always generated on the CPU in float64 from a ``torch.Generator`` seeded by
an integer, then moved to the device: CPU and CUDA random streams differ, so this is what makes
a seed mean the same parameters everywhere.
"""

from __future__ import annotations

import math

import torch

from .model import NORM_GAINS, ModelConfig, parameter_shapes
from .validation import require_seed

DEVICES = ("cpu", "cuda")


def resolve_device(device) -> torch.device:
    """``'cpu'`` or ``'cuda'`` (or a ``torch.device``); refuses CUDA when none is present."""
    name = device.type if isinstance(device, torch.device) else device
    if name not in DEVICES and not (isinstance(name, str) and name.startswith("cuda:")):
        raise ValueError(f"device must be one of 'cpu', 'cuda'; got {device!r}")
    if name != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but torch.cuda.is_available() is False; use device='cpu'")
    return torch.device(device)


def require_float64(params: dict, what: str = "params") -> None:
    """Claims are checked in float64 only: refuse any other dtype with a TypeError."""
    for name, t in params.items():
        if t.dtype != torch.float64:
            raise TypeError(f"{what}[{name!r}] has dtype {t.dtype}; claims are checked in torch.float64 only")


def require_finite(params: dict, what: str = "params") -> None:
    """Refuse NaN or ±inf entries, naming the offending parameter."""
    for name, t in params.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what}[{name!r}] contains NaN or inf; parameters must be finite")


def require_step(eta) -> float:
    """A step size η must be a finite number > 0."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta (step size) must be a finite number > 0; got {eta!r}")
    return float(eta)


def check_params(params: dict, cfg: ModelConfig) -> None:
    """Names, shapes, dtype float64 and finiteness of a parameter dict for ``cfg``."""
    shapes = parameter_shapes(cfg)
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise ValueError(f"params is missing {missing} required by this ModelConfig")
    for name, shape in shapes.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(f"params[{name!r}] has shape {tuple(params[name].shape)}; expected {shape}")
    require_float64(params)
    require_finite(params)


def orthonormal_rows(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """n orthonormal rows in R^d (QR of a Gaussian d × n matrix, signs fixed); needs d ≥ n."""
    g = torch.randn(d, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    return (q * torch.sign(torch.diagonal(r))).T.contiguous()


def init_params(
    cfg: ModelConfig,
    seed: int,
    *,
    scale: float = 1.0,
    orthonormal: bool = False,
    device="cpu",
) -> dict[str, torch.Tensor]:
    """Gaussian parameters for ``cfg`` in float64.

    Weight matrices have iid N(0, (scale/√fan_in)²) entries (fan_in = the input dimension);
    embedding rows N(0, 1/d) (‖x_t‖ ≈ 1); ``t5_bias`` N(0, scale²); norm gains 1 + N(0, 0.1²) (not all
    ones, so that a wrong gain is visible); biases like weights (fan_in = d_head). With ``orthonormal=True`` the
    V + 1 embedding rows are orthonormal (hypothesis H-orth; needs ``d_model ≥ vocab + 1``).
    """
    require_seed("seed", seed)  # torch.Generator.manual_seed holds 64 bits: 2**64 would fail without a name
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0; got {scale!r}")
    if orthonormal and cfg.d_model < cfg.vocab + 1:
        raise ValueError(
            f"orthonormal embeddings need d_model >= vocab + 1 = {cfg.vocab + 1}; got d_model={cfg.d_model}"
        )
    dev = resolve_device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    params = {}
    for name, shape in parameter_shapes(cfg).items():
        if name == "E" and orthonormal:
            t = orthonormal_rows(shape[0], shape[1], gen)
        elif name in ("E", "U", "P"):
            t = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(cfg.d_model)
        elif name in NORM_GAINS:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif name == "t5_bias":
            t = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = scale * torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(shape[-1])
        params[name] = t.to(dev)
    return params
