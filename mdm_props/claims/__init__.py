"""Claim checkers, one module per claim family (C0 … C4); see mdm_props.registry."""
