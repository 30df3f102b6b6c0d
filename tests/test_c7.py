"""C7 (per-layer alignment at standard initialisation, typical: MDM against ARM) for the deep block
(THEORY §2b)."""

import random

import pytest

from mdm_props.claims import c7_alignment_at_init as deep


@pytest.mark.claim("C7")
def test_c7_mdm_rate_is_separated_from_the_arm_rate():
    """120 draws per group (MDM pooled over the relative encodings; ARM), one comparison at 1e-6."""
    res = deep.run_c7(120, 0, "cpu")
    assert len(res) == 1
    r = res[0]
    assert r.holds, str(r)
    assert set(r.details["mdm_per_layer"]) == {1, 2, 3, 4}
    assert set(r.details["mdm_per_encoding"]) == {"rope", "alibi", "t5", "none"}


@pytest.mark.meta("C7")
def test_c7_check_rejects_unseparated_rates_and_bonferroni_splits_alpha():
    g = {"per_layer": {1: [30, 50]}, "chosen": [30, 50]}
    assert not deep.check_c7({"relative": g, "arm": g})[0].holds
    hi = {"per_layer": {1: [200, 200]}, "chosen": [200, 200]}
    assert deep.check_c7({"relative": hi, "arm": g})[0].holds
    assert deep.c7_alpha(4) == pytest.approx(2.5e-7)
    assert [r.details["alpha_per_comparison"] for r in deep.check_c7({"a": hi, "b": hi, "arm": g})] == [5e-7, 5e-7]
    with pytest.raises(ValueError, match="arm"):
        deep.check_c7({"relative": g})


@pytest.mark.negative_control("C7")
def test_c7_arm_in_place_of_the_mdm_is_not_separated():
    cx = deep.c7_arm_as_mdm(40, 0, "cpu")
    assert cx.found


def test_c7_case_inputs_are_validated():
    with pytest.raises(ValueError, match="block"):
        deep.c7_case(random.Random(0), kind="mdm", pos="rope", block="gpt", n_layers=1)
    with pytest.raises(ValueError, match="pos must be 'rope'"):
        deep.c7_case(random.Random(0), kind="mdm", pos="alibi", block="llada-like", n_layers=1)
