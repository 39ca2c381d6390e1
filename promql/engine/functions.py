"""PromQL's functions over the arrays: dispatch, and the instant-vector ones. The range-vector ones are in
rangefunctions.py, histogram_quantile and the label functions in their own modules."""
import numpy as np

from promql.engine import rangefunctions
from promql.engine.arrays import Scalars, Steps, drop_names, merge_same_labels

RATES = {"rate": dict(counter=True, per_second=True), "increase": dict(counter=True, per_second=False),
         "delta": dict(counter=False, per_second=False)}
OVER_TIME = frozenset({"count_over_time", "present_over_time", "sum_over_time", "avg_over_time",
                       "min_over_time", "max_over_time", "last_over_time"})
GATHERED = frozenset({"stddev_over_time", "stdvar_over_time", "quantile_over_time", "deriv", "predict_linear",
                      "holt_winters"})
RANGE_FUNCTIONS = RATES.keys() | OVER_TIME | GATHERED | {"irate", "idelta", "changes", "resets",
                                                         "absent_over_time"}

MATH = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "ln": np.log, "log2": np.log2,
    "log10": np.log10, "sqrt": np.sqrt, "sgn": lambda v: np.where(v < 0, -1.0, np.where(v > 0, 1.0, v)),
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh, "deg": np.degrees, "rad": np.radians,
}
CLAMPS = frozenset({"clamp", "clamp_min", "clamp_max", "round"})
CALENDAR = frozenset({"minute", "hour", "day_of_week", "day_of_month", "days_in_month", "month", "year"})
OTHERS = frozenset({"time", "pi", "timestamp", "vector", "scalar", "absent", "sort", "sort_desc",
                    "label_replace", "label_join", "histogram_quantile"})
SUPPORTED_FUNCTIONS = RANGE_FUNCTIONS | MATH.keys() | CLAMPS | CALENDAR | OTHERS


# Rows of series a range function works on at once: its temporaries stay a few MB (and in cache) however many
# series and steps the query has.
_CELLS_PER_BLOCK = 262_144


def range_function(name: str, win, scalars: list[np.ndarray]) -> Steps:
    """A function of a range vector: one value per (series, step) that has enough samples."""
    if name in GATHERED:
        values, present = rangefunctions.gathered(name, win, scalars)
    else:
        values = np.empty(win.lo.shape)
        present = np.empty(win.lo.shape, dtype=bool)
        rows = max(1, _CELLS_PER_BLOCK // max(win.lo.shape[1], 1))
        for first in range(0, win.lo.shape[0], rows):
            block = slice(first, first + rows)
            values[block], present[block] = _by_name(name, win.rows(first, first + rows))
    steps = Steps(win.raw.labels, values, present)
    if name == "last_over_time":
        return steps
    return drop_names(steps, whole_series=True)


def _by_name(name: str, win):
    if name in RATES:
        return rangefunctions.extrapolated(win, **RATES[name])
    if name in ("irate", "idelta"):
        return rangefunctions.instant_value(win, per_second=name == "irate")
    if name == "changes":
        return rangefunctions.count_flags(win, rangefunctions.changed)
    if name == "resets":
        return rangefunctions.count_flags(win, np.less)
    return rangefunctions.over_time(name, win)


def math_function(name: str, steps: Steps, args: list) -> Steps:
    values = steps.values
    with np.errstate(all="ignore"):
        if name in MATH:
            values = MATH[name](values)
        elif name == "clamp":
            low, high = args[0].values[None, :], args[1].values[None, :]
            values = np.maximum(low, np.minimum(high, values))
            present = steps.present & ~(high < low)
            return drop_names(Steps(steps.labels, values, present))
        elif name == "clamp_min":
            values = np.maximum(values, args[0].values[None, :])
        elif name == "clamp_max":
            values = np.minimum(values, args[0].values[None, :])
        elif name == "round":
            nearest = args[0].values[None, :] if args else 1.0
            inverse = 1.0 / nearest
            values = np.floor(values * inverse + 0.5) / inverse
    return drop_names(Steps(steps.labels, values, steps.present))


def calendar(name: str, seconds: np.ndarray) -> np.ndarray:
    """minute() .. year() of Unix seconds, in UTC; NaN and infinities stay NaN."""
    finite = np.isfinite(seconds)
    moments = np.where(finite, np.trunc(np.where(finite, seconds, 0)), 0).astype(np.int64).astype("datetime64[s]")
    if name == "minute":
        out = (moments.astype("datetime64[m]").astype(np.int64) % 60)
    elif name == "hour":
        out = (moments.astype("datetime64[h]").astype(np.int64) % 24)
    elif name == "day_of_week":
        out = (moments.astype("datetime64[D]").astype(np.int64) + 4) % 7  # 1970-01-01 was a Thursday
    elif name == "day_of_month":
        out = (moments.astype("datetime64[D]") - moments.astype("datetime64[M]")).astype(np.int64) + 1
    elif name == "days_in_month":
        month = moments.astype("datetime64[M]")
        out = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
    elif name == "month":
        out = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    else:
        out = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    return np.where(finite, out.astype(np.float64), np.nan)


def scalar_of(steps: Steps) -> Scalars:
    """scalar(v): the value when exactly one series is present at the step, else NaN."""
    single = steps.present.sum(axis=0) == 1
    values = np.where(steps.present, steps.values, 0.0).sum(axis=0)
    return Scalars(np.where(single, values, np.nan))


def absent_labels(select) -> tuple:
    """absent()'s labels: the selector's equality matchers, minus a name matched twice or not by '=' (as 2.42)."""
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in select.matchers:
        if matcher.name == "__name__":
            continue
        if matcher.op == "=" and matcher.name not in seen:
            labels[matcher.name] = matcher.value
            seen.add(matcher.name)
        else:
            labels.pop(matcher.name, None)
    return tuple(sorted((name, value) for name, value in labels.items() if value != ""))


def sorted_rows(steps: Steps, descending: bool) -> Steps:
    """sort/sort_desc: only an instant query's order changes (a range query's matrix is sorted by labels)."""
    if steps.values.shape[1] != 1:
        return steps
    column = steps.values[:, 0]
    key = -column if descending else column
    order = np.lexsort((key, np.isnan(column)))
    return merge_same_labels(Steps([steps.labels[i] for i in order], steps.values[order], steps.present[order]))
