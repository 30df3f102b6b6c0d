"""mdm_props: an executable specification of why masked diffusion models mitigate the reversal curse.

See ``docs/index.md`` for the mechanism and the claim map, ``THEORY`` claim ids C0–C4.
"""

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
