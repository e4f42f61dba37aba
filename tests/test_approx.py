"""The tolerance helper itself: it must fail where reports really differ."""

from __future__ import annotations

import pytest
from approx import assert_reports_close


def test_rounding_differences_pass_and_real_ones_fail():
    assert_reports_close({"kl": [0.01272033, 0.0]}, {"kl": [0.01272032, 1e-9]})
    for a, b in (({"kl": [0.0127]}, {"kl": [0.0128]}), ({"n": 3}, {"n": 4}),
                 ({"x": [1.0]}, {"x": [1.0, 2.0]}), ({"a": 1.0}, {"b": 1.0}),
                 ({"s": "fp32"}, {"s": "fp16"})):
        with pytest.raises(AssertionError):
            assert_reports_close(a, b)
