"""histogram_quantile over classic `le` buckets, as Prometheus 2.42's bucketQuantile, for every step of a group
of buckets at once."""
import math

import numpy as np

from promql.engine.arrays import Steps


def _bound(labels) -> tuple[tuple, float] | None:
    """The series' group (labels without le and __name__) and its upper bound; None without a readable le."""
    values = dict(labels)
    text = values.get("le")
    if text is None:
        return None
    try:
        bound = float(text.strip())
    except ValueError:
        return None
    group = tuple((n, v) for n, v in labels if n not in ("le", "__name__"))
    return group, bound


def histogram_quantile(q: np.ndarray, steps: Steps) -> Steps:
    groups: dict[tuple, list[tuple[float, int]]] = {}
    for row, labels in enumerate(steps.labels):
        found = _bound(labels)
        if found is not None:
            groups.setdefault(found[0], []).append((found[1], row))
    k = steps.values.shape[1]
    labels_out, values_out, present_out = [], [], []
    for group, members in groups.items():
        members.sort(key=lambda member: member[0])
        rows = np.array([row for _, row in members])
        bounds = np.array([bound for bound, _ in members])
        present = steps.present[rows]
        value = np.full(k, np.nan)
        any_present = present.any(axis=0)
        for pattern, columns in _presence_patterns(present, any_present):
            value[columns] = _quantiles(q[columns], bounds[pattern], steps.values[rows[pattern]][:, columns])
        labels_out.append(group)
        values_out.append(value)
        present_out.append(any_present)
    if not labels_out:
        return Steps([], np.zeros((0, k)), np.zeros((0, k), dtype=bool))
    return Steps(labels_out, np.array(values_out), np.array(present_out))


def _presence_patterns(present: np.ndarray, any_present: np.ndarray):
    """Each distinct set of buckets present at some step, with the steps it is present at (usually one set)."""
    if len(present) <= 62:  # one int64 code per step instead of sorting [buckets, steps] columns
        codes = (present.astype(np.int64) << np.arange(len(present), dtype=np.int64)[:, None]).sum(axis=0)
        for code in np.unique(codes[any_present]).tolist():
            yield (code >> np.arange(len(present))) & 1 == 1, any_present & (codes == code)
        return
    for pattern in np.unique(present[:, any_present], axis=1).T:
        yield pattern, any_present & (present == pattern[:, None]).all(axis=0)


def _quantiles(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """bounds ascending [b]; counts [b, m] for m steps. Coalesce equal bounds, force the counts monotonic,
    then interpolate inside the bucket the rank falls in."""
    m = counts.shape[1]
    if len(bounds) == 0 or not math.isinf(bounds[-1]) or bounds[-1] < 0:
        return np.full(m, np.nan)
    unique, first = np.unique(bounds, return_index=True)
    counts = np.add.reduceat(counts, first, axis=0) if len(unique) < len(bounds) else counts
    counts = np.fmax.accumulate(counts, axis=0)
    if len(unique) < 2:
        return np.full(m, np.nan)
    total = counts[-1]
    with np.errstate(all="ignore"):
        rank = q * total
        # sort.Search over all but the last bucket: the first with count >= rank, else the last.
        reached = counts[:-1] >= rank[None, :]
        bucket = np.where(reached.any(axis=0), reached.argmax(axis=0), len(unique) - 1)
        columns = np.arange(m)
        end = unique[bucket]
        start = np.where(bucket > 0, unique[np.maximum(bucket - 1, 0)], 0.0)
        below = np.where(bucket > 0, counts[np.maximum(bucket - 1, 0), columns], 0.0)
        inside = counts[bucket, columns] - below
        result = start + (end - start) * ((rank - below) / inside)
        result = np.where(bucket == len(unique) - 1, unique[-2], result)
        result = np.where((bucket == 0) & (unique[0] <= 0), unique[0], result)
        result = np.where((total == 0) | np.isnan(total), np.nan, result)
    result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    return np.where(np.isnan(q), np.nan, result)
