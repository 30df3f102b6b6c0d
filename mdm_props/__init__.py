"""mdm_props: an executable specification of why masked diffusion models mitigate the reversal curse.

See ``docs/index.md`` for the mechanism and the claim map, ``THEORY`` claim ids C0–C4.
"""

import importlib
from typing import TYPE_CHECKING

# The public names, imported on first use (PEP 562), so that ``import mdm_props.cli`` (and with it
# ``mdm-props --help``) does not import torch.
_EXPORTS = {
    "Query": "facts",
    "Template": "facts",
    "arm_forward_query": "facts",
    "arm_reverse_query": "facts",
    "canonical_template": "facts",
    "forward_loss": "facts",
    "forward_query": "facts",
    "query_loss": "facts",
    "reverse_loss": "facts",
    "reverse_query": "facts",
    "ForwardOutput": "model",
    "ModelConfig": "model",
    "forward": "model",
    "init_params": "params",
}

if TYPE_CHECKING:  # static checkers see the names as if imported eagerly
    from .facts import (
        Query,
        Template,
        arm_forward_query,
        arm_reverse_query,
        canonical_template,
        forward_loss,
        forward_query,
        query_loss,
        reverse_loss,
        reverse_query,
    )
    from .model import ForwardOutput, ModelConfig, forward
    from .params import init_params


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "ForwardOutput",
    "ModelConfig",
    "Query",
    "Template",
    "arm_forward_query",
    "arm_reverse_query",
    "canonical_template",
    "forward",
    "forward_loss",
    "forward_query",
    "init_params",
    "query_loss",
    "reverse_loss",
    "reverse_query",
]
