"""Reductions over every (series, step) window of a range selector at once. Sums run in sample order, as
Prometheus adds them (no prefix-sum differences, which lose precision on long runs of large values)."""
import numpy as np

from promql.engine.arrays import Windows

_BATCH_CELLS = 4_000_000  # gathered values per batch in gather(): bounds memory, not speed


def padded(win: Windows, name: str, x: np.ndarray) -> np.ndarray:
    """x with one element more (reduce() needs an index one past the last sample), made once per range vector."""
    key = ("padded", name)
    if key not in win.cache:
        win.cache[key] = np.append(x, 0.0)
    return win.cache[key]


def reduce(ufunc, padded_x: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """ufunc over x[lo:hi] for each window (padded_x from padded()); `empty` where lo >= hi. One reduceat over
    the pairs (lo, hi): the segments between windows cost what they span, and the array is cut after the last
    window so the trailing segment costs one element."""
    out = np.full(lo.shape, empty, dtype=np.float64)
    filled = hi > lo
    if not filled.any():
        return out
    a, b = lo[filled], hi[filled]
    pairs = np.empty(2 * len(a), dtype=np.int64)
    pairs[0::2], pairs[1::2] = a, b
    out[filled] = ufunc.reduceat(padded_x[:int(b.max()) + 1], pairs)[0::2]
    return out


def first_last(win: Windows, minimum: int):
    """Index of the first and last sample of each window, and where a window holds at least `minimum`."""
    count = win.hi - win.lo
    ok = count >= minimum
    first = np.where(ok, win.lo, 0)
    last = np.where(ok, win.hi - 1, 0)
    return first, last, count, ok


def pair_counts(win: Windows, compare) -> np.ndarray:
    """How many i in (lo, hi) compare(v[i], v[i-1]) within one series."""
    where = flag_positions(win, compare)
    start = np.minimum(win.lo + 1, win.hi)
    return np.searchsorted(where, win.hi) - np.searchsorted(where, start)


def flag_positions(win: Windows, compare) -> np.ndarray:
    """The samples i where compare(v[i], v[i-1]) holds within one series, worked out once per range vector."""
    key = ("flags", compare.__name__)
    if key not in win.cache:
        values = win.raw.values
        flags = np.zeros(len(values), dtype=bool)
        if len(values) > 1:
            with np.errstate(invalid="ignore"):
                flags[1:] = compare(values[1:], values[:-1])
            starts = win.raw.offsets[:-1]
            flags[starts[starts < len(values)]] = False
        win.cache[key] = np.flatnonzero(flags)
    return win.cache[key]


def gather(win: Windows, cells: np.ndarray, *, with_times: bool = False):
    """Yield (flat cell indices, values[m, L], times[m, L] or None, valid[m, L]) for the windows at `cells` (flat
    indices into [n, k] with at least one sample), in batches; padding is NaN and invalid."""
    lo, hi = win.lo.ravel()[cells], win.hi.ravel()[cells]
    width = int((hi - lo).max(initial=1))
    step = max(1, _BATCH_CELLS // max(width, 1))
    column = np.arange(width)
    for begin in range(0, len(cells), step):
        a, b = lo[begin:begin + step], hi[begin:begin + step]
        index = a[:, None] + column[None, :]
        valid = index < b[:, None]
        index = np.where(valid, index, 0)
        yield (cells[begin:begin + step], np.where(valid, win.raw.values[index], np.nan),
               win.raw.ts[index] if with_times else None, valid)
