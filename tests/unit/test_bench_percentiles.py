"""The benches' one percentile: nearest rank, the same for every README latency."""

from __future__ import annotations

import pytest
from bench.percentiles import percentile
from hypothesis import given
from hypothesis import strategies as st


def test_nearest_rank_on_a_known_sample() -> None:
    sample = [float(n) for n in range(100, 0, -1)]  # 1..100, unordered
    assert percentile(sample, 50) == 50.0
    assert percentile(sample, 99) == 99.0
    assert percentile(sample, 100) == 100.0
    assert percentile(sample, 0) == 1.0


def test_an_odd_rank_is_not_rounded_to_even() -> None:
    # 99 % of 100 samples is rank 99; round-half-to-even once made some ranks one off.
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert percentile([float(n) for n in range(1, 201)], 49.5) == 99.0


def test_a_fractional_percentile_is_not_one_rank_off_from_float_error() -> None:
    assert percentile([float(n) for n in range(1, 1001)], 99.9) == 999.0


# No subnormals: a native library the unit tier loads earlier (onnxruntime) may set the CPU's
# flush-to-zero flag, and hypothesis then refuses to draw them.
@given(
    st.lists(st.floats(allow_nan=False, allow_subnormal=False), min_size=1),
    st.floats(0, 100, allow_subnormal=False),
)
def test_at_least_q_percent_at_or_below_and_fewer_below(values: list[float], q: float) -> None:
    value = percentile(values, q)
    assert sum(v <= value for v in values) >= q * len(values) / 100 - 1e-6
    assert sum(v < value for v in values) < max(q * len(values) / 100, 1)


def test_an_empty_sample_has_no_percentile() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
