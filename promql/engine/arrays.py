"""What the evaluator passes between nodes: an instant vector at every step (Steps), a scalar at every step
(Scalars), and the raw samples of a range selector with each step's window (Windows). All are dense over the
query's k steps, so every operator works on whole [series, step] arrays."""
from dataclasses import dataclass, field

import numpy as np

from promql.engine.values import ExecutionError, Labels


@dataclass
class Raw:
    """Samples of n series in one array, series i at [offsets[i], offsets[i+1])."""
    labels: list[Labels]
    offsets: np.ndarray  # int64 [n+1]
    ts: np.ndarray  # int64 [N], ascending within a series
    values: np.ndarray  # float64 [N]


@dataclass
class Steps:
    labels: list[Labels]
    values: np.ndarray  # float64 [n, k]
    present: np.ndarray  # bool [n, k]
    sample_ts: np.ndarray | None = field(default=None)  # int64 [n, k]: the sample each value came from

    @property
    def n(self) -> int:
        return len(self.labels)


@dataclass
class Scalars:
    values: np.ndarray  # float64 [k]


@dataclass
class Windows:
    """A range selector at every step: series i's samples at step j are raw[lo[i, j]:hi[i, j]] (stale markers
    removed); each window ends at end_ms[j]. A function of it is evaluated at eval_ms[j]: the step, or for a
    selector with @ the query's start (2.42 evaluates such a step-invariant expression once, at the start)."""
    raw: Raw
    lo: np.ndarray  # int64 [n, k], indices into raw.ts / raw.values
    hi: np.ndarray
    end_ms: np.ndarray  # int64 [k]
    range_ms: int
    eval_ms: np.ndarray  # int64 [k]
    cache: dict = field(default_factory=dict)  # per-sample arrays a function derives once, shared by row slices

    def rows(self, first: int, last: int) -> "Windows":
        return Windows(self.raw, self.lo[first:last], self.hi[first:last], self.end_ms, self.range_ms,
                       self.eval_ms, self.cache)


def without_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != "__name__")


def merge_same_labels(steps: Steps, *, whole_series: bool = False) -> Steps:
    """Join rows that carry one label set. Two of them with a value at the same step is Prometheus' error
    (or, for range-vector functions, `whole_series`: two such series at all, as 2.42 checks its matrix)."""
    rows: dict[Labels, list[int]] = {}
    for index, labels in enumerate(steps.labels):
        rows.setdefault(labels, []).append(index)
    if len(rows) == steps.n:
        return steps
    keep, labels_out = [], []
    values, present = steps.values.copy(), steps.present.copy()
    for labels, indices in rows.items():
        first = indices[0]
        if len(indices) > 1:
            overlap = steps.present[indices].sum(axis=0) > 1
            if overlap.any() or (whole_series and sum(steps.present[i].any() for i in indices) > 1):
                raise ExecutionError("vector cannot contain metrics with the same labelset")
            for other in indices[1:]:
                mask = steps.present[other]
                values[first, mask] = steps.values[other, mask]
                present[first] |= mask
        keep.append(first)
        labels_out.append(labels)
    return Steps(labels_out, values[keep], present[keep])


def drop_names(steps: Steps, *, whole_series: bool = False) -> Steps:
    renamed = Steps([without_name(labels) for labels in steps.labels], steps.values, steps.present)
    return merge_same_labels(renamed, whole_series=whole_series)
