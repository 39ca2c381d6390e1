"""Aggregations with by/without, over all steps at once: rows are grouped, then reduced in their input order."""
import re

import numpy as np

from promql.engine.arrays import Steps
from promql.engine.format import format_go, format_value
from promql.engine.rangefunctions import quantile_rows
from promql.engine.values import ExecutionError

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def group_labels(labels, by: bool, names: tuple[str, ...]):
    if by:
        wanted = set(names)
        return tuple(pair for pair in labels if pair[0] in wanted)
    unwanted = set(names) | {"__name__"}
    return tuple(pair for pair in labels if pair[0] not in unwanted)


def _groups(steps: Steps, by: bool, names):
    ids: dict[tuple, int] = {}
    gid = np.array([ids.setdefault(group_labels(labels, by, names), len(ids)) for labels in steps.labels],
                   dtype=np.int64)
    return list(ids), gid


def aggregate(op: str, steps: Steps, by: bool, names, param) -> Steps:
    k = steps.values.shape[1]
    if steps.n == 0:
        return Steps([], np.zeros((0, k)), np.zeros((0, k), dtype=bool))
    if op in ("topk", "bottomk"):
        return _top(steps, by, names, param.values, op == "topk")
    if op == "count_values":
        return _count_values(steps, by, names, param)
    labels, gid = _groups(steps, by, names)
    order = np.argsort(gid, kind="stable")
    starts = np.searchsorted(gid[order], np.arange(len(labels)))
    values, present = steps.values[order], steps.present[order]
    count = np.add.reduceat(present.astype(np.int64), starts, axis=0)
    with np.errstate(all="ignore"):
        out = _reduce(op, values, present, starts, count, gid[order], param)
    return Steps(labels, out, count > 0)


def _reduce(op, values, present, starts, count, gid, param):
    zeroed = np.where(present, values, 0.0)
    if op == "sum":
        return np.add.reduceat(zeroed, starts, axis=0)
    if op == "avg":
        return np.add.reduceat(zeroed, starts, axis=0) / count
    if op == "count":
        return count.astype(np.float64)
    if op == "group":
        return np.ones(count.shape)
    if op in ("min", "max"):
        ufunc = np.fmin if op == "min" else np.fmax
        return ufunc.reduceat(np.where(present, values, np.nan), starts, axis=0)
    if op in ("stddev", "stdvar"):
        mean = np.add.reduceat(zeroed, starts, axis=0) / count
        spread = np.where(present, (values - mean[gid]) ** 2, 0.0)
        variance = np.add.reduceat(spread, starts, axis=0) / count
        return np.sqrt(variance) if op == "stddev" else variance
    if op == "quantile":
        return _quantile(values, present, starts, count, param.values)
    raise AssertionError(op)


def _quantile(values, present, starts, count, q):
    k = values.shape[1]
    out = np.empty((len(starts), k))
    ends = np.append(starts[1:], len(values))
    for group, (begin, end) in enumerate(zip(starts, ends)):
        out[group] = quantile_rows(q, values[begin:end].T, present[begin:end].T)
    return out


def _top(steps: Steps, by: bool, names, k_values: np.ndarray, largest: bool) -> Steps:
    """topk/bottomk: at each step and in each group, the k rows with the largest (smallest) values; NaN ranks
    last, ties go to the earlier row. The rows keep all their labels."""
    _, gid = _groups(steps, by, names)
    values, present = steps.values, steps.present
    unusable = ~((k_values >= -(2.0**63)) & (k_values <= 9223372036854774784.0))  # NaN included
    if unusable.any():
        raise ExecutionError(f"Scalar value {format_go(k_values[unusable][0])} overflows int64")
    wanted = np.trunc(np.clip(k_values, -1, 2**53)).astype(np.int64)
    selected = np.zeros(present.shape, dtype=bool)
    for group in np.unique(gid):
        rows = np.flatnonzero(gid == group)
        v, p = values[rows].T, present[rows].T  # [k, m]
        kind = np.where(~p, 2, np.where(np.isnan(v), 1, 0))
        key = np.where(np.isnan(v), 0.0, -v if largest else v)
        order = np.lexsort((np.broadcast_to(np.arange(len(rows)), v.shape), key, kind), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[None, :].repeat(len(v), 0), axis=1)
        selected[rows] = (p & (rank < wanted[:, None])).T
    return Steps(steps.labels, values, selected)


def _count_values(steps: Steps, by: bool, names, label: str) -> Steps:
    """count_values("label", v): per group and step, how many rows hold each value (as Go formats it)."""
    if not _LABEL_NAME.match(label):
        raise ExecutionError(f"invalid label name \"{label}\"")
    k = steps.values.shape[1]
    groups, gid = _groups(steps, by, names)
    rows, columns = np.nonzero(steps.present)
    distinct, which = np.unique(steps.values[rows, columns], return_inverse=True)
    codes, slot = np.unique(gid[rows] * max(len(distinct), 1) + which, return_inverse=True)
    counts = np.zeros((len(codes), k))
    np.add.at(counts, (slot, columns), 1.0)
    labels_out = []
    for code in codes.tolist():
        group, value_id = divmod(code, max(len(distinct), 1))
        labels_out.append(tuple(sorted({**dict(groups[group]), label: format_value(distinct[value_id])}.items())))
    return Steps(labels_out, counts, counts > 0)
