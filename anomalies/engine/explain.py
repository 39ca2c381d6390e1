"""Reason sentences, built only from an anomaly's stored fields, so they can be rebuilt any time.

Numbers in sentences are for people: four significant digits, thousands separated (the stored
fields keep full precision)."""
from __future__ import annotations

import math
from datetime import datetime, timezone


def readable(number: float, digits: int = 4) -> str:
    """`digits` significant digits, thousands separated: -0.010700000000000001 -> -0.0107, 1234567.8 -> 1,235,000,
    48.50071 -> 48.5; beyond a billion or below 0.0001, scientific (2.5e+12)."""
    if not math.isfinite(number):
        return str(number)
    if number == 0:
        return "0"
    if abs(number) >= 1e9 or abs(number) < 1e-4:
        mantissa, exponent = f"{number:.{digits - 1}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    rounded = float(f"{number:.{digits}g}")
    if rounded == int(rounded) and abs(rounded) >= 1:
        return f"{int(rounded):,}"
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(rounded)))), 0)
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_num = readable


def _since(start_us: int, at_us: int | None) -> str:
    """When summed-up evidence began: the time of day, with the date when it is not the anomaly's day."""
    start = datetime.fromtimestamp(start_us / 1_000_000, timezone.utc)
    same_day = at_us is not None and start_us // 86_400_000_000 == at_us // 86_400_000_000
    return f"{start:%H:%M} UTC" if same_day else f"{start:%Y-%m-%d %H:%M} UTC"


def _basis(baseline: dict) -> str:
    """What the expected value is: the same time on earlier days or weeks, or the trailing median."""
    if baseline["method"] == "daily_seasonal_median":
        return "the same time on the previous 1-3 days"
    if baseline["method"] == "weekly_seasonal_median":
        return "the same time in the previous 1-3 weeks"
    return f"the median of the previous {baseline['samples']} points"


def _summed_sentence(*, detector: str, value: float, expected: float, baseline: dict, parameters: dict, rate: bool,
                     at_us: int | None) -> str:
    """The sentence of a detector that sums points up (cusum, variance, flatline): over which points
    and since when, when the anomaly kept it."""
    started = baseline.get("drift_started_us")
    quantity = "rate" if rate else "value"
    per_second = " per second" if rate else ""
    if detector == "cusum" and started is not None:
        mean = baseline["drift_mean"]
        return (f"The last {baseline['drift_points']} {quantity}s averaged {_num(mean)}, "
                f"{'above' if mean > expected else 'below'} the expected {_num(expected)} ({_basis(baseline)}), since "
                f"{_since(started, at_us)}: a cumulative excess of {_num(baseline['cusum_sigma'])} standard "
                f"deviations, over the threshold of {_num(parameters['cusum_threshold'])}")
    if detector == "cusum":
        return (f"The {'rate' if rate else 'level'} has drifted {'up' if value > expected else 'down'} from the expected "
                f"{_num(expected)} ({_basis(baseline)}): a cumulative excess of {_num(baseline['cusum_sigma'])} standard "
                f"deviations since the day began or the last alert, over the threshold of "
                f"{_num(parameters['cusum_threshold'])}")
    if detector == "variance":
        points = (f"The last {baseline['drift_points']} {quantity}s, since {_since(started, at_us)}, averaged "
                  f"{_num(baseline['drift_mean'])} and deviate" if started is not None
                  else f"The last {parameters['variance_points']} {quantity}s deviate")
        return (f"{points} from the expected {_num(expected)} by {_num(baseline['recent_mean_abs_sigma'])} standard "
                f"deviations on average, over the threshold of {_num(parameters['variance_threshold'])}: the spread "
                f"or level has shifted")
    how_long = (f"since {_since(started, at_us)} ({baseline['run_length']} points)" if started is not None
                else f"for {baseline['run_length']} points")
    return (f"The {quantity} has stayed at exactly {_num(value)}{per_second} {how_long}, longer than "
            f"{_num(parameters['flatline_factor'])} times the longest recent run ({baseline['longest_recent_run']})")


def reason_sentence(*, value: float, expected: float, lower: float, upper: float, detector: str, baseline: dict,
                    parameters: dict, suppression: dict, at_us: int | None = None) -> str:
    """One sentence: what was observed, against what baseline, by how much (and any reduced sensitivity).

    A counter is evaluated by its rate (baseline["input"] == "rate_per_second"), and said so. The
    detectors that sum points up (cusum, variance, flatline) say over which points and since when
    (baseline["drift_started_us"], "drift_points", "drift_mean"; anomalies stored before these were
    kept are told without them).
    """
    rate = baseline.get("input") == "rate_per_second"
    observed = f"The rate of increase, {_num(value)} per second," if rate else f"Value {_num(value)}"
    quantity = "rate" if rate else "value"
    if detector == "range":
        low, high = baseline["lowest_seen"], baseline["highest_seen"]
        beyond = (value - high) if value > high else (low - value)
        share = beyond / (high - low)
        amount = f"{_num(share * 100)}% of" if share < 10 else f"{_num(round(share, 1))} times"
        edge = f"above the highest {quantity} seen so far ({_num(high)})" if value > high else \
            f"below the lowest {quantity} seen so far ({_num(low)})"
        text = f"{observed} is {edge} by {amount} the observed range {_num(low)} to {_num(high)}"
    elif detector == "residual":
        direction = "above" if value > expected else "below"
        text = (f"{observed} is {_num(abs(baseline['deviation_sigma']))} robust standard deviations {direction} the "
                f"expected {_num(expected)} ({_basis(baseline)}), outside the band {_num(lower)} to {_num(upper)}")
    elif detector in ("cusum", "variance", "flatline"):
        text = _summed_sentence(detector=detector, value=value, expected=expected, baseline=baseline,
                                parameters=parameters, rate=rate, at_us=at_us)
    else:
        text = f"{observed} is outside the expected band {_num(lower)} to {_num(upper)}"
    escalates = suppression.get("escalates")
    if escalates:
        peak = escalates["peak_deviation"]
        times = abs(value - expected) / abs(peak) if peak else math.inf
        farther = f"{_num(round(times, 1))} times as far" if math.isfinite(times) else "farther"
        text = (f"Worse: {text[0].lower()}{text[1:]}, {farther} from the expected value as the peak of the alarm going on "
                f"since {_since(escalates['alarm_since_us'], at_us)}")
    multiplier = suppression.get("threshold_multiplier", 1.0)
    if multiplier >= 1.05:
        text += f"; thresholds were {_num(round(multiplier, 2))}x higher after recent alerts"
    return text + "." + _rarity_sentence(baseline)


def _rarity_sentence(baseline: dict) -> str:
    """What the severity stands on: how often the series went as far in the time looked back (kept
    since the score became a rarity; older anomalies are told without it)."""
    if "chance" not in baseline:
        return ""
    days = baseline["rarity_seconds"] / 86_400
    span = f"{_num(round(days, 1))} days" if days >= 2 else f"{_num(round(days * 24, 1))} hours"
    odds = f"1 in {_num(round(1 / baseline['chance']))}"
    if baseline["comparable_slots"] == 0:
        return f" Nothing went as far in the previous {span} (chance {odds})."
    times = baseline["comparable_slots"]
    return (f" It went as far in {times} five-minute slot{'s' if times != 1 else ''} of the previous {span} "
            f"(chance {odds}).")
