"""PostgreSQL's binary COPY format: faster than text both ways, and nothing to escape.

Used where many rows move at once: points into and out of metrics_point, baselines' checkpoints.
Points go as numpy arrays both ways (no Python object per point); other rows through encode_rows.
"""
import struct

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH_US = 946_684_800_000_000  # binary timestamps count microseconds from 2000-01-01

_FIXED = {"int8": struct.Struct(">iq"), "int4": struct.Struct(">ii"), "float8": struct.Struct(">id")}
_NULL = struct.pack(">i", -1)
_TRUE, _FALSE = struct.pack(">ib", 1, 1), struct.pack(">ib", 1, 0)
_LENGTH = struct.Struct(">i")


def copy(cursor, sql: str, stream) -> None:
    """Run a COPY on a Django cursor, raising Django's database errors as every other query does.

    copy_expert is psycopg2's own call, below Django's error translation: without it, a cancelled
    statement or a server gone mid-COPY would surface as psycopg2's errors, which the API's
    handlers (cloudwatchdog/errors.py, promql/views.py) do not know, and be answered 500, not 503.
    The psycopg2 error stays the Django error's __cause__ (its pgcode says which)."""
    with cursor.db.wrap_database_errors:
        cursor.cursor.copy_expert(sql, stream)


def encode_rows(rows, kinds: tuple[str, ...]) -> bytes:
    """Rows of Python values as a binary COPY stream. Kinds: int8, int4, float8, bool, text, bytea and
    timestamptz_us (µs since the Unix epoch); None is NULL."""
    count = struct.pack(">h", len(kinds))
    parts = [HEADER]
    append = parts.append
    for row in rows:
        append(count)
        for kind, value in zip(kinds, row):
            if value is None:
                append(_NULL)
            elif kind in _FIXED:
                fixed = _FIXED[kind]
                append(fixed.pack(fixed.size - 4, value))
            elif kind == "timestamptz_us":
                append(_FIXED["int8"].pack(8, value - PG_EPOCH_US))
            elif kind == "bool":
                append(_TRUE if value else _FALSE)
            else:
                data = value.encode() if kind == "text" else bytes(value)
                append(_LENGTH.pack(len(data)))
                append(data)
    append(TRAILER)
    return b"".join(parts)


def encode_points(series_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, *, tenant_id: int | None) -> bytes:
    """Points (series id, µs since the Unix epoch, value) as a binary COPY stream, with a leading
    tenant_id column when one is given: one numpy record per row."""
    fields = [("n", ">i2")]
    if tenant_id is not None:
        fields += [("l0", ">i4"), ("tenant", ">i8")]
    fields += [("l1", ">i4"), ("series", ">i8"), ("l2", ">i4"), ("ts", ">i8"), ("l3", ">i4"), ("value", ">f8")]
    table = np.empty(len(series_ids), dtype=np.dtype(fields))
    table["n"] = 4 if tenant_id is not None else 3
    for length in [name for name, _ in fields if name.startswith("l")]:
        table[length] = 8
    if tenant_id is not None:
        table["tenant"] = tenant_id
    table["series"] = series_ids
    table["ts"] = ts_us - PG_EPOCH_US
    table["value"] = values
    return HEADER + table.tobytes() + TRAILER


_POINT_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("series", ">i8"), ("l2", ">i4"), ("ts", ">i8"),
                       ("l3", ">i4"), ("value", ">f8")])


def decode_points(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A binary COPY stream of (series id bigint, ts timestamptz, value float8) rows, none NULL, as
    three arrays (series ids, µs since the Unix epoch, values)."""
    count = (len(data) - len(HEADER) - len(TRAILER)) // _POINT_ROW.itemsize
    rows = np.frombuffer(data, dtype=_POINT_ROW, offset=len(HEADER), count=max(count, 0))
    # A binary timestamptz is µs since 2000-01-01; converting here spares PostgreSQL a numeric extract per row.
    return (rows["series"].astype(np.int64), rows["ts"].astype(np.int64) + PG_EPOCH_US,
            rows["value"].astype(np.float64))
