"""Evaluation of a plan over all the query's steps at once, and the two entry points."""
from dataclasses import dataclass, field

import numpy as np

from promql.engine import aggregate, binary, functions, histogram, labelfunctions, limits, select, semantics
from promql.engine.arrays import Scalars, Steps, Windows, drop_names
from promql.engine.compile import parse
from promql.engine.plan import SET_OPERATORS, Aggregate, Binary, Call, Negate, Num, Select, Str, Subquery
from promql.engine.values import LOOKBACK_MS, BadData, Result, Series

_TYPE_NAMES = {"matrix": "range vector", "string": "string", "vector": "instant vector", "scalar": "scalar"}


@dataclass
class Context:
    fetch: object
    steps: np.ndarray  # int64 [k]
    start_ms: int
    end_ms: int
    lookback_ms: int
    max_samples: int
    loaded: list = field(default_factory=lambda: [0])  # shared with the subqueries' contexts
    fetched: dict = field(default_factory=dict)

    def count_samples(self, count: int) -> None:
        self.loaded[0] += count
        select.check_limit(self.loaded[0], self.max_samples)

    def at_steps(self, steps: np.ndarray) -> "Context":
        """The same query evaluated at other steps (a subquery's): @ start()/end() still mean the query's."""
        return Context(self.fetch, steps, self.start_ms, self.end_ms, self.lookback_ms, self.max_samples,
                       self.loaded, self.fetched)

    def check_cells(self, cells: int) -> None:
        select.check_limit(cells, self.max_samples)


def query_range(text: str, fetch, *, start_ms: int, end_ms: int, step_ms: int, lookback_ms: int = LOOKBACK_MS,
                max_samples: int = semantics.MAX_SAMPLES) -> Result:
    _check_time("start", start_ms)
    _check_time("end", end_ms)
    if end_ms < start_ms:
        raise BadData("end timestamp must not be before start time")
    if step_ms <= 0:
        raise BadData("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end_ms - start_ms) // step_ms > semantics.MAX_RESOLUTION_POINTS:
        raise BadData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                      "resolution (?step=XX)")
    node = parse(text)
    if node.kind not in ("vector", "scalar"):
        raise BadData(f'invalid expression type "{_TYPE_NAMES[node.kind]}" for range query, must be Scalar or '
                      "instant Vector")
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    ctx = Context(fetch, steps, start_ms, end_ms, lookback_ms, max_samples)
    value = evaluate(node, ctx)
    if isinstance(value, Scalars):
        return Result("matrix", [Series((), steps, value.values)])
    series = [Series(labels, steps[value.present[i]], value.values[i, value.present[i]])
              for i, labels in enumerate(value.labels) if value.present[i].any()]
    series.sort(key=lambda s: s.labels)
    return Result("matrix", series)


def query_instant(text: str, fetch, *, time_ms: int, lookback_ms: int = LOOKBACK_MS,
                  max_samples: int = semantics.MAX_SAMPLES) -> Result:
    _check_time("time", time_ms)
    node = parse(text)
    steps = np.array([time_ms], dtype=np.int64)
    ctx = Context(fetch, steps, time_ms, time_ms, lookback_ms, max_samples)
    if node.kind == "string":
        return Result("string", string=(time_ms, node.value))
    value = evaluate(node, ctx)
    if isinstance(value, Scalars):
        return Result("scalar", scalar=(time_ms, float(value.values[0])))
    if isinstance(value, Windows):
        return Result("matrix", _raw_windows(value))
    series = [Series(labels, steps, value.values[i, :1])
              for i, labels in enumerate(value.labels) if value.present[i, 0]]
    return Result("vector", series)


def _check_time(name: str, time_ms: int) -> None:
    if not limits.MIN_TIME_MS <= time_ms <= limits.MAX_TIME_MS:
        raise BadData(f'invalid parameter "{name}": {time_ms} ms is out of range')


def _raw_windows(win: Windows) -> list[Series]:
    """An instant query of x[r]: each series' samples in the window, with their own timestamps."""
    out = []
    for i, labels in enumerate(win.raw.labels):
        lo, hi = int(win.lo[i, 0]), int(win.hi[i, 0])
        if hi > lo:
            out.append(Series(labels, win.raw.ts[lo:hi].copy(), win.raw.values[lo:hi].copy()))
    return out


def evaluate(node, ctx: Context):
    k = len(ctx.steps)
    if isinstance(node, Num):
        return Scalars(np.full(k, node.value))
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Select):
        return select.instant(ctx, node) if node.range_ms is None else select.windows(ctx, node)
    if isinstance(node, Subquery):
        return _subquery(node, ctx)
    if isinstance(node, Negate):
        inner = evaluate(node.expr, ctx)
        if isinstance(inner, Scalars):
            return Scalars(-inner.values)
        return drop_names(Steps(inner.labels, -inner.values, inner.present))
    if isinstance(node, Binary):
        return _binary(node, ctx)
    if isinstance(node, Aggregate):
        param = evaluate(node.param, ctx) if node.param is not None else None
        return aggregate.aggregate(node.op, evaluate(node.expr, ctx), node.by, node.labels, param)
    if isinstance(node, Call):
        return _call(node, ctx)
    raise BadData(f"{type(node).__name__} is not supported")


def _binary(node: Binary, ctx: Context):
    lhs, rhs = evaluate(node.lhs, ctx), evaluate(node.rhs, ctx)
    if isinstance(lhs, Scalars) and isinstance(rhs, Scalars):
        return binary.scalars(node.op, lhs, rhs)
    if isinstance(rhs, Scalars):
        return binary.with_scalar(node, lhs, rhs, scalar_on_left=False)
    if isinstance(lhs, Scalars):
        return binary.with_scalar(node, rhs, lhs, scalar_on_left=True)
    if node.op in SET_OPERATORS:
        return binary.set_operation(node, lhs, rhs)
    return binary.match_vectors(node, lhs, rhs)


def _call(node: Call, ctx: Context):
    name, k = node.name, len(ctx.steps)
    if name == "time":
        return Scalars(ctx.steps / 1000.0)
    if name == "pi":
        return Scalars(np.full(k, np.pi))
    if name in functions.RANGE_FUNCTIONS:
        return _range_call(node, ctx)
    args = [evaluate(arg, ctx) for arg in node.args]
    if name == "vector":
        return Steps([()], args[0].values[None, :].copy(), np.ones((1, k), dtype=bool))
    if name == "scalar":
        return functions.scalar_of(args[0])
    if name in functions.MATH or name in functions.CLAMPS:
        return functions.math_function(name, args[0], args[1:])
    if name in functions.CALENDAR:
        vector = args[0] if args else Steps([()], ctx.steps[None, :] / 1000.0, np.ones((1, k), dtype=bool))
        return drop_names(Steps(vector.labels, functions.calendar(name, vector.values), vector.present))
    if name == "timestamp":
        return _timestamp(args[0], ctx)
    if name == "absent":
        labels = functions.absent_labels(node.args[0]) if isinstance(node.args[0], Select) else ()
        missing = ~args[0].present.any(axis=0) if args[0].n else np.ones(k, dtype=bool)
        return Steps([labels], np.ones((1, k)), missing[None, :])
    if name in ("sort", "sort_desc"):
        return functions.sorted_rows(args[0], descending=name == "sort_desc")
    if name == "label_replace":
        return labelfunctions.label_replace(args[0], *args[1:])
    if name == "label_join":
        return labelfunctions.label_join(args[0], args[1], args[2], list(args[3:]))
    if name == "histogram_quantile":
        return histogram.histogram_quantile(args[0].values, args[1])
    raise BadData(f"function {name}() is not supported")


def _timestamp(vector: Steps, ctx: Context) -> Steps:
    """timestamp(v): the sample's own time for a selector, the step's for anything computed."""
    times = vector.sample_ts if vector.sample_ts is not None else np.broadcast_to(ctx.steps, vector.values.shape)
    return drop_names(Steps(vector.labels, times / 1000.0, vector.present))


def _subquery(node: Subquery, ctx: Context) -> Windows:
    inner_steps = select.subquery_steps(ctx, node)
    if len(inner_steps) == 0:
        inner = Steps([], np.zeros((0, 0)), np.zeros((0, 0), dtype=bool))
    else:
        inner = evaluate(node.expr, ctx.at_steps(inner_steps))
        if isinstance(inner, Scalars):
            inner = Steps([()], inner.values[None, :], np.ones((1, len(inner_steps)), dtype=bool))
    return select.subquery_windows(ctx, node, inner, inner_steps)


def _range_call(node: Call, ctx: Context):
    name = node.name
    matrix_arg = next(arg for arg in node.args if arg.kind == "matrix")
    win = evaluate(matrix_arg, ctx)
    if name == "absent_over_time":
        labels = functions.absent_labels(matrix_arg) if isinstance(matrix_arg, Select) else ()
        missing = ~(win.hi > win.lo).any(axis=0) if len(win.raw.labels) else np.ones(len(ctx.steps), bool)
        return Steps([labels], np.ones((1, len(ctx.steps))), missing[None, :])
    scalars = [evaluate(arg, ctx).values for arg in node.args if arg is not matrix_arg]
    return functions.range_function(name, win, scalars)


