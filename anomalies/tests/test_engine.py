"""The detection engine on arrays: determinism across batch splits, cold start, explanations."""
import numpy as np
from hypothesis import given, settings, strategies as st

from anomalies.engine import DetectionConfig, SeriesState, detect

MINUTE = 60_000_000
CONFIG = DetectionConfig()


def _series(n=1500, seed=7):
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.int64) * MINUTE + 1_700_000_000_000_000
    values = 50 + rng.normal(0, 2, n)
    values[[700, 701, 1100, 1400]] = [400, 390, -300, 90]
    return ts, values


def _run(ts, values, cuts, config=CONFIG):
    state, findings, snapshot = SeriesState(), [], None
    bounds = [0, *sorted(cuts), len(ts)]
    for start, end in zip(bounds, bounds[1:]):
        found, state, snapshot = detect(state, ts[start:end], values[start:end], config)
        state = SeriesState.from_bytes(state.to_bytes())  # as if checkpointed between runs
        findings += found
    return findings, state, snapshot


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1499), max_size=8, unique=True))
def test_output_is_identical_whatever_the_batch_boundaries(cuts):
    ts, values = _series()
    whole = _run(ts, values, [])
    split = _run(ts, values, cuts)
    assert split[0] == whole[0]
    assert split[1].to_bytes() == whole[1].to_bytes()
    assert split[2] == whole[2]


def test_spikes_and_dips_are_found_once_per_incident():
    findings, _, _ = _run(*_series(), [])
    found_at = [int((f.ts_us - 1_700_000_000_000_000) // MINUTE) for f in findings]
    assert 700 in found_at and 1100 in found_at and 1400 in found_at
    assert 701 not in found_at  # inside the cooldown of 700


def test_a_cold_series_raises_nothing():
    ts = np.arange(59, dtype=np.int64) * MINUTE
    values = np.ones(59)
    values[-1] = 1e9
    findings, _, snapshot = detect(SeriesState(), ts, values, CONFIG)
    assert findings == [] and snapshot.status == "warming"


def test_enough_points_over_too_short_a_time_is_still_warming():
    ts = np.arange(200, dtype=np.int64) * 1_000_000  # 200 points, one second apart
    values = np.ones(200)
    values[-1] = 1e9
    findings, _, snapshot = detect(SeriesState(), ts, values, CONFIG)
    assert findings == [] and snapshot.status == "warming"


def test_a_flat_series_gets_a_floored_band_instead_of_dividing_by_zero():
    ts = np.arange(300, dtype=np.int64) * MINUTE
    values = np.full(300, 10.0)
    values[-1] = 10.5
    findings, _, snapshot = detect(SeriesState(), ts, values, CONFIG)
    assert snapshot.scale > 0
    assert [f.value for f in findings] == [10.5]


def test_the_reason_is_a_sentence_built_from_the_stored_fields():
    findings, _, _ = _run(*_series(), [])
    spike = findings[0]
    assert spike.reason.startswith(f"Value {spike.value:.6g} is ")
    assert f"{spike.expected:.6g}" in spike.reason and f"{spike.upper:.6g}" in spike.reason
    assert spike.reason.endswith(".")
    assert spike.baseline["samples"] == CONFIG.window_points
    assert spike.lower < spike.expected < spike.upper < spike.value


def test_tenant_overrides_change_the_configuration_and_unknown_ones_fail():
    assert DetectionConfig.from_overrides({"threshold": 9}).threshold == 9.0
    try:
        DetectionConfig.from_overrides({"nonsense": 1})
    except ValueError as error:
        assert "nonsense" in str(error)
    else:
        raise AssertionError("an unknown setting was accepted")
