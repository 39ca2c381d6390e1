"""The detection engine on arrays: determinism across batch splits, cold start, each detector and its sentence."""
import math
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalies.engine import (
    DetectionConfig,
    SeriesState,
    detect,
    expected_band,
    reason_sentence,
    recurring_patterns,
    restart_at,
    state_from_history,
)

FIVE_MINUTES = 300_000_000
DAY = 86_400_000_000
START = 1_700_006_400_000_000  # a UTC midnight
CONFIG = DetectionConfig()


def _times(n):
    return START + np.arange(n, dtype=np.int64) * FIVE_MINUTES


def _noisy(n=2016, seed=7):
    """A week of 5-minute points with noise, a spike on day 3, a dip on day 5."""
    rng = np.random.default_rng(seed)
    values = 50 + rng.normal(0, 2, n)
    values[900] = 400.0
    values[1500] = -300.0
    return _times(n), values


def _run(ts, values, cuts, config=CONFIG):
    """Detection over the points in batches cut at `cuts`; the snapshot's alarms_ended are those of
    every batch."""
    state, findings, snapshot, ended = SeriesState(), [], None, ()
    bounds = [0, *sorted(cuts), len(ts)]
    for start, end in zip(bounds, bounds[1:]):
        found, state, snapshot = detect(state, ts[start:end], values[start:end], config)
        state = SeriesState.from_bytes(state.to_bytes())  # as if checkpointed between runs
        findings += found
        ended += snapshot.alarms_ended
    return findings, state, replace(snapshot, alarms_ended=ended)


def _as_recorded(findings, state) -> dict:
    """What the store keeps of a series' alarms before a boundary: the alert times (escalations are not
    alerts), the alarm going on, the deviation of the last anomaly, when the last alarm ended."""
    last = findings[-1] if findings else None
    return dict(alerts_before=[f.ts_us for f in findings if not f.escalation], alarm_since_us=state.alarm_since_us,
                alarm_peak=last.value - last.expected if last else math.nan, recovered_us=state.recovered_us)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2015), max_size=8, unique=True))
def test_output_is_identical_whatever_the_batch_boundaries(cuts):
    ts, values = _noisy()
    whole = _run(ts, values, [])
    split = _run(ts, values, cuts)
    assert split[0] == whole[0]
    assert split[1].to_bytes() == whole[1].to_bytes()
    assert split[2] == whole[2]


def test_the_state_at_a_day_boundary_can_be_rebuilt_from_history():
    ts, values = _noisy()
    day_start = restart_at(int(ts[1600]))
    cut = int(np.searchsorted(ts, day_start))
    findings, in_order, _ = _run(ts[:cut], values[:cut], [])
    _, later, _ = _run(ts, values, [])  # the checkpoint: it remembers the excursions before the day
    assert len(later.excursion_keys) > 0
    history_from = max(0, cut - 2 * CONFIG.window_points)
    rebuilt = state_from_history(
        history_ts=ts[history_from:cut].tolist(), history_values=values[history_from:cut].tolist(),
        first_ts_us=int(ts[0]), lowest_before=float(values[:history_from].min(initial=math.inf)),
        highest_before=float(values[:history_from].max(initial=-math.inf)), **_as_recorded(findings, in_order),
        config=CONFIG, excursions_from=later,
    )
    assert rebuilt.to_bytes() == in_order.to_bytes()


def test_a_spike_and_a_dip_are_found_once_per_incident_and_explained():
    findings, _, _ = _run(*_noisy(), [])
    found_at = {int((f.ts_us - START) // FIVE_MINUTES): f for f in findings}
    assert 900 in found_at and 1500 in found_at
    spike = found_at[900]
    assert spike.lower < spike.expected < spike.upper < spike.value
    assert spike.reason.startswith("Value 400 is ") and spike.reason.endswith(".")
    assert not [i for i in found_at if 900 < i < 900 + 72]  # 6 h cooldown


def test_a_cold_series_raises_nothing():
    ts = _times(287)  # under a day and under 288 points
    values = np.ones(287)
    values[-1] = 1e9
    findings, _, snapshot = detect(SeriesState(), ts, values, CONFIG)
    assert findings == [] and snapshot.status == "warming"


def test_many_points_over_too_short_a_time_are_still_warming():
    ts = START + np.arange(2000, dtype=np.int64) * 1_000_000  # 2,000 points a second apart
    values = np.ones(2000)
    values[-1] = 1e9
    findings, _, snapshot = detect(SeriesState(), ts, values, CONFIG)
    assert findings == [] and snapshot.status == "warming"


def test_range_novelty_explains_a_new_extreme():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 100, 700)
    values[650] = 130.0
    findings, _, _ = detect(SeriesState(), _times(700), values, CONFIG)
    assert [(f.detector, f.value) for f in findings] == [("range", 130.0)]
    assert "above the highest value seen so far" in findings[0].reason


def test_the_seasonal_residual_flags_a_normal_value_at_the_wrong_time():
    n = 288 * 6
    ts = _times(n)
    phase = (ts - START) / DAY * 2 * math.pi
    values = 50 + 40 * np.sin(phase) + np.random.default_rng(2).normal(0, 0.5, n)
    trough = 288 * 5 + 216  # 18:00 on day 6, the daily low
    values[trough] = 88.0  # the daily high, at the wrong time
    findings, _, _ = detect(SeriesState(), ts, values, CONFIG)
    assert [(f.detector, int((f.ts_us - START) // FIVE_MINUTES)) for f in findings] == [("residual", trough)]
    assert "the same time on the previous 1-3 days" in findings[0].reason
    assert findings[0].baseline["method"] == "daily_seasonal_median"


def test_cusum_catches_a_small_sustained_shift_inside_the_band():
    rng = np.random.default_rng(3)
    values = 10 + rng.normal(0, 1, 900)
    values[:20] = [40, -20] * 10  # a wide range early on, during warm-up
    values[700:] += 2.5  # a 2.5 σ shift: no single point leaves the band
    findings, _, _ = detect(SeriesState(), _times(900), values, CONFIG)
    assert findings and findings[0].detector == "cusum" and findings[0].ts_us > _times(900)[700]
    # It says what crossed its threshold and since when: the shift began at point 700, 10:20 on day 3.
    assert findings[0].baseline["drift_started_us"] == _times(900)[700]
    drifted = int((findings[0].ts_us - _times(900)[700]) // FIVE_MINUTES) + 1
    assert findings[0].reason.startswith(f"The last {drifted} values averaged 12.36, above the expected 10.11 (the "
                                         "median of the previous 725 points), since 10:20 UTC: a cumulative excess")


def test_the_variance_detector_catches_a_wider_spread():
    rng = np.random.default_rng(4)
    values = 10 + rng.normal(0, 1, 900)
    values[:20] = [60, -40] * 10
    scale = 1.4826 * np.median(np.abs(values[300:700] - np.median(values[300:700])))
    values[700:] = 10 + np.where(np.arange(200) % 2, 4.6, -4.6) * scale  # |z| 4.6, alternating
    findings, _, _ = detect(SeriesState(), _times(900), values, CONFIG)
    assert findings and findings[0].detector == "variance"
    assert "the spread or level has shifted" in findings[0].reason


def test_a_stuck_series_is_flagged_as_a_flatline():
    rng = np.random.default_rng(5)
    values = 10 + rng.normal(0, 1, 900)
    values[:20] = [40, -20] * 10
    values[700:] = 10.0
    findings, _, _ = detect(SeriesState(), _times(900), values, CONFIG)
    assert [(f.detector, int((f.ts_us - START) // FIVE_MINUTES)) for f in findings] == [("flatline", 711)]
    assert "has stayed at exactly 10 since 10:20 UTC (12 points)" in findings[0].reason
    assert findings[0].baseline["drift_started_us"] == _times(900)[700]


def test_sensitivity_is_lowered_after_an_alert_and_says_so():
    rng = np.random.default_rng(6)
    values = 50 + rng.normal(0, 2, 1200)
    values[:20] = [110, -10] * 10
    values[700] = values[800] = 95.0  # the second one 8 h later, past the cooldown
    findings, _, _ = detect(SeriesState(), _times(1200), values, CONFIG)
    assert [int((f.ts_us - START) // FIVE_MINUTES) for f in findings][:2] == [700, 800]
    assert findings[1].suppression["threshold_multiplier"] > 1.5
    assert "thresholds were" in findings[1].reason


def test_tenant_overrides_change_the_configuration_and_unknown_ones_fail():
    assert DetectionConfig.from_overrides({"residual_threshold": 9}).residual_threshold == 9.0
    for bad in ({"nonsense": 1}, {"sensitivity": "high"}, {"cooldown_seconds": -5}, {"sensitivity": "nan"},
                {"recurring_jitter_seconds": 86_400}, {"sensitivity": 10**400}, {"sensitivity": float("inf")}):
        try:
            DetectionConfig.from_overrides(bad)
        except ValueError as error:
            assert list(bad)[0] in str(error)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_detect_leaves_the_state_it_was_given_unchanged():
    ts, values = _noisy()
    _, state, _ = detect(SeriesState(), ts[:1000], values[:1000], CONFIG)
    before = state.to_bytes()
    detect(state, ts[1000:], values[1000:], CONFIG)
    assert state.to_bytes() == before


def test_a_checkpoint_in_the_first_format_is_still_read():
    import struct
    import zlib

    ts, values = _noisy()
    _, state, _ = detect(SeriesState(), ts[:1500], values[:1500], CONFIG)
    # Formats before the third did not keep where the CUSUMs' excursions began, nor, before the
    # fourth, the excursions themselves.
    state.cusum_up_since = state.cusum_down_since = None
    state.excursion_keys, state.excursion_peaks = np.empty(0, np.int64), np.empty(0)
    # Nor, before the fifth, the alarm.
    state.last_out_us = state.alarm_since_us = state.recovered_us = None
    state.alarm_peak = math.nan
    # The first format: the same scalars, then every array raw, all zlib-compressed.
    head = SeriesState._SCALARS_V2.pack(
        state.first_ts_us, state.lowest, state.highest, state.last_alert_us, state.gain_at_alert, state.cusum_up,
        state.cusum_down, state.cusum_day, state.run_length, state.bucket, state.median, state.scale,
        state.plain_mad, state.period_days, state.longest_run, int(state.run_alerted), len(state.window_ts),
        len(state.recent_abs_z),
    )
    arrays = [np.asarray(a, "<i8" if i == 0 else "<f8").tobytes() for i, a in enumerate(
        (state.window_ts, state.window_values, state.window_residuals, state.window_weekly_residuals,
         state.recent_abs_z))]
    first_format = zlib.compress(head + b"".join(arrays))
    assert struct.unpack_from("B", first_format)[0] == 0x78
    assert SeriesState.from_bytes(first_format).to_bytes() == state.to_bytes()
    assert not SeriesState.from_bytes(first_format).excursions_known
    assert detect(SeriesState.from_bytes(first_format), ts[1500:], values[1500:], CONFIG)[0] == \
        detect(state, ts[1500:], values[1500:], CONFIG)[0]


def test_detecting_many_series_over_processes_gives_what_one_process_gives():
    from anomalies.engine import detect_many

    rng = np.random.default_rng(11)
    jobs = []
    for k in range(6):
        values = 50 + rng.normal(0, 2, 600)
        values[400 + k] = 300.0
        jobs.append((SeriesState(), _times(600), values))
    inline = detect_many(jobs, CONFIG, processes=1)
    spread = detect_many(jobs, CONFIG, processes=2, min_points=0)
    assert [findings for findings, _, _ in spread] == [findings for findings, _, _ in inline]
    assert [state.to_bytes() for _, state, _ in spread] == [state.to_bytes() for _, state, _ in inline]
    assert sum(len(findings) for findings, _, _ in inline) >= 6


def test_a_pass_survives_a_worker_process_that_died():
    import os
    import signal

    from anomalies.engine import detect_many
    from anomalies.engine.parallel import _pool

    jobs = [(SeriesState(), _times(400), 50 + np.random.default_rng(k).normal(0, 2, 400)) for k in range(4)]
    inline = detect_many(jobs, CONFIG, processes=1)
    pool = _pool(2)
    pool.submit(int).result()  # the workers are up
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    again = detect_many(jobs, CONFIG, processes=2, min_points=0)
    assert [state.to_bytes() for _, state, _ in again] == [state.to_bytes() for _, state, _ in inline]
    assert _pool(2) is not pool  # a fresh pool next time
    assert [state.to_bytes() for _, state, _ in detect_many(jobs, CONFIG, processes=2, min_points=0)] == \
        [state.to_bytes() for _, state, _ in inline]


def test_numbers_in_sentences_have_four_significant_digits_and_thousands_separators():
    from anomalies.engine.explain import readable

    assert [readable(v) for v in (-0.010700000000000001, 1234567.891, 0.000123456, 48.50071, 500.0, 2.5e12, 0.0)] == [
        "-0.0107", "1,235,000", "0.0001235", "48.5", "500", "2.5e+12", "0"]
    reason = reason_sentence(value=1234.5678, expected=87.8541, lower=-1087.9612, upper=1263.6721, detector="residual",
                             baseline={"method": "trailing_median", "samples": 1000, "deviation_sigma": 7.123456},
                             parameters={}, suppression={})
    assert reason == ("Value 1,235 is 7.123 robust standard deviations above the expected 87.85 (the median of the "
                      "previous 1000 points), outside the band -1,088 to 1,264.")


def _bands_checked(ts, values, config=CONFIG):
    findings, _, _ = detect(SeriesState(), ts, values, config)
    expected, lower, upper, warm, _, _ = expected_band(SeriesState(), ts, values, config)
    at = {t: i for i, t in enumerate(ts.tolist())}
    for finding in findings:
        i = at[finding.ts_us]
        assert (finding.lower, finding.upper) == (lower[i], upper[i]), finding.detector
        if finding.detector in ("range", "residual"):
            assert not lower[i] <= finding.value <= upper[i], finding.reason
    week_from = np.searchsorted(ts, ts - 7 * DAY)
    for i in np.flatnonzero(warm).tolist():
        week = values[week_from[i]:i]
        assert upper[i] - lower[i] <= 10 * (week.max() - week.min())
        if values[:i].min() >= 0:
            assert lower[i] >= 0
    return findings


def test_an_anomaly_carries_the_band_the_series_had_then_never_negative_never_absurdly_wide():
    # Two weeks of a positive load with a daily cycle; a huge spike early (it widens the range seen
    # so far), then a spike, a slow drift and a dip near zero: every detector's anomalies.
    n = 4032
    ts = _times(n)
    rng = np.random.default_rng(11)
    day_phase = (ts % DAY) / DAY
    values = 30 + 10 * np.sin(2 * np.pi * day_phase) + rng.normal(0, 1.5, n)
    values[400] = 5000.0
    values[2300] = 160.0
    values[3000:3300] += np.linspace(0, 12, 300)
    values[3700] = 0.5
    findings = _bands_checked(ts, np.clip(values, 0, None))
    assert {f.detector for f in findings} >= {"range", "residual"}
    # after the alerts the thresholds are many times higher, and the band still stays near the data
    assert any(f.suppression["threshold_multiplier"] > 1.5 for f in findings)


def test_the_band_of_the_noisy_week_matches_its_anomalies():
    _bands_checked(*_noisy())


def _daily_spikes(days=13, seed=5, spike_days=range(1, 13)):
    """A 1-minute series (noise around 20) with a 5-minute spike of +40 at 03:00 ± 20 minutes on
    `spike_days`; returns times, values and the spikes' first indices."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    ts = START + np.arange(n, dtype=np.int64) * 60_000_000
    values = 20 + rng.normal(0, 1, n)
    starts = []
    for day in spike_days:
        first = day * 1440 + 180 + int(rng.integers(-20, 21))
        values[first:first + 5] += 40
        starts.append(first)
    return ts, values, starts


def test_a_daily_spike_is_expected_from_its_third_day_and_a_spike_at_another_time_is_still_raised():
    ts, values, _ = _daily_spikes()
    last_day = 12 * 1440
    values[last_day + 14 * 60:last_day + 14 * 60 + 5] += 40  # 14:00 on the last day
    findings, state, _ = detect(SeriesState(), ts, values, CONFIG)
    days_alerted = {(f.ts_us - START) // DAY for f in findings if (f.ts_us - START) % DAY < 5 * 3600 * 1_000_000}
    assert len(days_alerted) <= 2 and days_alerted <= {1, 2}
    afternoon = [f for f in findings if f.ts_us >= ts[last_day + 14 * 60] and f.ts_us < ts[last_day + 14 * 60 + 5]]
    assert len(afternoon) == 1 and afternoon[0].detector == "residual"
    # Without patterns (as before the engine learned them) the spike is raised day after day, and
    # the thresholds those alerts raised grow many times; the afternoon one, larger than all but two
    # five-minute slots of the three weeks, is still seen: the gain never hides a clear, rare deviation.
    ignoring = replace(CONFIG, recurring_occurrences=4)
    unrecognised = detect(SeriesState(), ts, values, ignoring)[0]
    assert len({(f.ts_us - START) // DAY for f in unrecognised if (f.ts_us - START) % DAY < 5 * 3600 * 1_000_000}) >= 4
    seen = [f for f in unrecognised if f.ts_us >= ts[last_day + 14 * 60] and f.ts_us < ts[last_day + 14 * 60 + 5]]
    assert len(seen) == 1 and seen[0].suppression["threshold_multiplier"] > 10 and seen[0].baseline["comparable_slots"] <= 2
    # The baseline names what it recognised.
    patterns = recurring_patterns(state, CONFIG)
    assert [(p["period"], p["direction"]) for p in patterns] == [("daily", "above")]
    assert patterns[0]["start"] >= "02:40" and "03:00" < patterns[0]["end"] <= "03:25"


def test_a_recurring_spike_much_larger_than_before_is_still_raised():
    ts, values, starts = _daily_spikes(days=8, spike_days=range(1, 8))
    values[starts[-1]:starts[-1] + 5] += 200  # the seventh day's spike, six times the others
    findings = detect(SeriesState(), ts, values, CONFIG)[0]
    assert any(ts[starts[-1]] <= f.ts_us < ts[starts[-1] + 5] for f in findings)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=13 * 1440 - 1), max_size=6, unique=True))
def test_recognising_patterns_does_not_depend_on_the_batch_boundaries(cuts):
    ts, values, _ = _daily_spikes()
    whole = _run(ts, values, [])
    split = _run(ts, values, cuts)
    assert split[0] == whole[0]
    assert split[1].to_bytes() == whole[1].to_bytes()


def test_a_state_rebuilt_from_a_short_history_keeps_the_excursions_of_the_checkpoint():
    ts, values, _ = _daily_spikes()
    day_start = int(ts[0]) + 9 * DAY
    cut = int(np.searchsorted(ts, day_start))
    findings, in_order, _ = _run(ts[:cut], values[:cut], [])
    _, checkpoint, _ = _run(ts, values, [])  # a later checkpoint of the same series
    history_from = cut - 2 * CONFIG.window_points  # a day and a half: the older spikes are not in it
    rebuild = dict(
        history_ts=ts[history_from:cut].tolist(), history_values=values[history_from:cut].tolist(),
        first_ts_us=int(ts[0]), lowest_before=float(values[:history_from].min()),
        highest_before=float(values[:history_from].max()), **_as_recorded(findings, in_order), config=CONFIG)
    rebuilt = state_from_history(**rebuild, excursions_from=checkpoint)
    assert detect(rebuilt, ts[cut:], values[cut:], CONFIG)[0] == detect(in_order, ts[cut:], values[cut:], CONFIG)[0]
    # The CUSUMs restart with the day: the only difference a rebuild may have.
    in_order.cusum_up = in_order.cusum_down = 0.0
    in_order.cusum_up_since = in_order.cusum_down_since = None
    assert rebuilt.to_bytes() == in_order.to_bytes()
    assert state_from_history(**rebuild).to_bytes() != in_order.to_bytes()


def test_the_score_is_how_rare_the_deviation_is_in_the_series_last_weeks_whatever_the_detector():
    """One scale: (1 + 5-minute slots with a deviation at least as large) / (1 + slots seen), on four
    decades. A new extreme after a day and a half is medium, one after nine days high, and a spike
    the series has every hour is mostly low however many σ it is."""
    rng = np.random.default_rng(3)
    n = 10 * 288
    values = 50 + rng.normal(0, 1, n)
    hourly = list(range(432, 1400, 13))  # every 65 minutes from day 1.5 on
    values[hourly] += 12
    values[2736] = 120.0  # day 9.5: far beyond anything before
    config = replace(CONFIG, gain_factor=1.0, cooldown_seconds=600, recurring_occurrences=4)
    findings = {f.ts_us: f for f in detect(SeriesState(), _times(n), values, config)[0]}
    first = findings[int(_times(n)[432])]
    assert first.detector == "range" and first.baseline["comparable_slots"] == 0
    assert 0.5 <= first.score < 0.8 and first.baseline["slots_seen"] == 432
    assert math.isclose(first.score, -math.log10(1 / 433) / 4)
    late = [findings[int(_times(n)[i])] for i in hourly[40:] if int(_times(n)[i]) in findings]
    assert len(late) >= 20 and all(f.detector == "residual" for f in late)
    # The spikes are alike: most had many as large before them (the largest of them, fewer).
    assert sum(f.score < 0.5 for f in late) > len(late) / 2
    for f in late:
        assert f.baseline["comparable_slots"] < 75 and (f.score < 0.5 or f.baseline["comparable_slots"] < 15)
        chance = (1 + f.baseline["comparable_slots"]) / (1 + f.baseline["slots_seen"])
        assert math.isclose(f.score, -math.log10(chance) / 4) and f.baseline["chance"] == chance
    last = findings[int(_times(n)[2736])]
    assert last.detector == "range" and last.score >= 0.8


def test_a_checkpoint_of_the_third_format_is_read_and_a_rebuild_then_finds_the_excursions_itself():
    import zlib

    ts, values, _ = _daily_spikes()
    cut = int(np.searchsorted(ts, int(ts[0]) + 9 * DAY))
    _, state, _ = _run(ts[:cut], values[:cut], [])
    current = state.to_bytes()
    # The third format: the same up to the recent |z|, without the excursions' count and arrays.
    head = SeriesState._SCALARS.unpack_from(current, 4)
    keys = zlib.compress(np.diff(state.excursion_keys, prepend=0).astype("<i8").tobytes(), 1)
    keys_part = 4 + len(keys) + 8 * len(state.excursion_peaks)
    third = b"CWD3" + SeriesState._SCALARS_V3.pack(*head[:20]) + current[4 + SeriesState._SCALARS.size:-keys_part]
    old = SeriesState.from_bytes(third)
    assert not old.excursions_known and len(old.excursion_keys) == 0
    assert old.window_ts.tolist() == state.window_ts.tolist() and old.recent_abs_z.tolist() == state.recent_abs_z.tolist()
    history_from = cut - 2 * CONFIG.window_points
    rebuilt = state_from_history(
        history_ts=ts[history_from:cut].tolist(), history_values=values[history_from:cut].tolist(),
        first_ts_us=int(ts[0]), lowest_before=float(values[:history_from].min()),
        highest_before=float(values[:history_from].max()), alerts_before=[], config=CONFIG, excursions_from=old)
    assert len(rebuilt.excursion_keys) > 0  # from the history, not the (empty) old checkpoint
    assert (rebuilt.excursion_keys >> 1).min() * 300_000_000 >= ts[history_from]


def test_a_weekly_job_is_expected_from_its_third_week():
    rng = np.random.default_rng(8)
    n = 29 * 288  # four weeks and a day of 5-minute points
    values = 20 + rng.normal(0, 1, n)
    # 04:00 ± 20 minutes once a week (START is a Wednesday: the job runs on Tuesdays)
    job_starts = [day * 288 + 48 + int(rng.integers(-4, 5)) for day in (6, 13, 20, 27)]
    for first in job_starts:
        values[first:first + 3] += 40
    findings, state, _ = detect(SeriesState(), _times(n), values, CONFIG)
    raised = [k for k, first in enumerate(job_starts)
              if any(_times(n)[first] <= f.ts_us < _times(n)[first + 3] for f in findings)]
    assert raised == [0, 1]
    unrecognised = detect(SeriesState(), _times(n), values, replace(CONFIG, recurring_occurrences=4))[0]
    assert all(any(_times(n)[first] <= f.ts_us < _times(n)[first + 3] for f in unrecognised) for first in job_starts)
    assert [(p["period"], p["start"][:10]) for p in recurring_patterns(state, CONFIG)] == [("weekly", "Tuesday 03")]


def _alarming(n=2016, seed=11):
    """A week of 5-minute points: a spike then one four times as far 15 minutes later (day 3), a
    10-hour level shift across midnight (days 4-5), an hour of flapping (day 5)."""
    rng = np.random.default_rng(seed)
    values = 50 + rng.normal(0, 1, n)
    values[870], values[873] = 62.0, 110.0
    values[1380:1500] += 15.0
    values[1700:1712:2] += 25.0
    return _times(n), values


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2015), max_size=8, unique=True))
def test_alarms_escalations_and_recoveries_do_not_depend_on_the_batch_boundaries(cuts):
    ts, values = _alarming()
    whole = _run(ts, values, [])
    split = _run(ts, values, cuts)
    assert split[0] == whole[0]
    assert split[1].to_bytes() == whole[1].to_bytes()
    assert split[2] == whole[2]


def test_an_alarm_holds_while_out_of_band_escalates_past_its_peak_and_ends_after_the_recovery_time():
    ts, values = _alarming()
    findings, state, snapshot = _run(ts, values, [])
    at = {int((f.ts_us - START) // FIVE_MINUTES): f for f in findings}
    assert at[873].escalation and at[873].alarm_since_us == ts[870] and not at[870].escalation
    assert at[873].reason.startswith("Worse: value 110 is ")
    assert at[873].suppression["escalates"]["peak_deviation"] == at[870].value - at[870].expected
    # One alert for the whole shift (no re-alert as its sums grow, nothing when it ends), one for the flapping.
    assert [i for i in at if 1380 <= i < 1600] == [1380]
    assert [i for i in at if 1690 <= i < 1800] == [1700]
    ended = dict(snapshot.alarms_ended)
    assert ended[int(ts[870])] == ts[873 + 3]  # 15 minutes after the last point out of band
    assert ended[int(ts[1380])] == ts[1499 + 3]
    assert ended[int(ts[1700])] == ts[1710 + 3]  # the flapping is one alarm
    # The band is the model's: the shifted points lie outside it, however high the alert threshold.
    expected, lower, upper, warm, alert_lower, alert_upper = expected_band(SeriesState(), ts, values, CONFIG)
    assert (values[1380:1500] > upper[1380:1500]).all()
    assert (alert_upper[1380:1500] >= upper[1380:1500]).all() and (alert_upper > upper).any()
    assert snapshot.state == "ok" and snapshot.state_since_us == ts[1713] and not snapshot.out_of_band


def test_an_alarm_going_on_at_a_day_boundary_is_rebuilt_from_what_was_recorded():
    ts, values = _alarming()
    day_start = restart_at(int(ts[1450]))  # midnight inside the shift
    cut = int(np.searchsorted(ts, day_start))
    findings, in_order, _ = _run(ts[:cut], values[:cut], [])
    assert in_order.alarm_since_us == ts[1380]
    _, checkpoint, _ = _run(ts, values, [])
    history_from = max(0, cut - 2 * CONFIG.window_points)
    rebuilt = state_from_history(
        history_ts=ts[history_from:cut].tolist(), history_values=values[history_from:cut].tolist(),
        first_ts_us=int(ts[0]), lowest_before=float(values[:history_from].min(initial=math.inf)),
        highest_before=float(values[:history_from].max(initial=-math.inf)), **_as_recorded(findings, in_order),
        config=CONFIG, excursions_from=checkpoint)
    later = detect(rebuilt, ts[cut:], values[cut:], CONFIG)
    assert later[0] == detect(in_order, ts[cut:], values[cut:], CONFIG)[0]
    assert later[2].alarms_ended[0] == (int(ts[1380]), int(ts[1502]))


def test_direction_above_raises_nothing_for_a_drop_and_does_not_count_it_out_of_band():
    ts, values = _noisy()  # a spike on day 3, a dip on day 5
    above = DetectionConfig.from_overrides({"direction": "above"})
    found = {int((f.ts_us - START) // FIVE_MINUTES) for f in _run(ts, values, [], above)[0]}
    assert 900 in found and 1500 not in found
    below = DetectionConfig.from_overrides({"direction": "below"})
    assert 1500 in {int((f.ts_us - START) // FIVE_MINUTES) for f in _run(ts, values, [], below)[0]}
    for bad in ("sideways", 1, None):
        try:
            DetectionConfig.from_overrides({"direction": bad})
        except ValueError as error:
            assert "direction must be one of both, above, below" in str(error)
        else:
            raise AssertionError(bad)


def test_a_setting_the_engine_cannot_run_with_is_refused_with_its_range():
    for setting, value, says in (("window_points", 1e18, "window_points must be from 10 to 100000"),
                                 ("refresh_seconds", 1e300, "refresh_seconds must be from 60 to 604800"),
                                 ("sensitivity", 1e-300, "sensitivity must be from 0.001 to 1000"),
                                 ("range_tolerance", -5, "range_tolerance must be from 0 to 1e+06"),
                                 ("escalation_factor", 1e300, "escalation_factor must be from 1 to 1000")):
        try:
            DetectionConfig.from_overrides({setting: value})
        except ValueError as error:
            assert says in str(error)
        else:
            raise AssertionError(setting)
    assert DetectionConfig.from_overrides({"window_points": 100_000, "range_tolerance": 0}).window_points == 100_000
