"""How fast request-sized COPYs store points, by the way PostgreSQL inserts them (run by hand).

usage: .venv/bin/python bench/copy_modes.py [--batches 300] [--series 1000]
Stores --batches transactions of --series rows into a fresh table shaped like metrics_point
(range-partitioned, primary key led by tenant_id), one COPY and one commit each:
COPY as PostgreSQL buffers it by default, COPY with a volatile WHERE (row by row), and one big
COPY of every row for reference. Shows why the ingest path uses the row-by-row COPY before
PostgreSQL 17 (see metrics.storage.write._row_by_row).
"""
import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402
from django.db import connection  # noqa: E402

from cloudwatchdog import pgcopy  # noqa: E402

_ROW = np.dtype([("n", ">i2"), ("l0", ">i4"), ("tenant", ">i8"), ("l1", ">i4"), ("series", ">i8"), ("l2", ">i4"),
                 ("ts", ">i8"), ("l3", ">i4"), ("value", ">f8")])


def _batch(batch: int, batches: int, series: int, now_us: int) -> bytes:
    rows = np.empty(series, dtype=_ROW)
    rows["n"] = 4
    for length in ("l0", "l1", "l2", "l3"):
        rows[length] = 8
    rows["tenant"] = 1
    rows["series"] = np.arange(series) + 1
    rows["ts"] = now_us - (batches - batch) * 1_000_000 - pgcopy.PG_EPOCH_US
    rows["value"] = ((batch * 31 + np.arange(series)) % 1000) / 10.0
    return rows.tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--series", type=int, default=1000)
    args = parser.parse_args()
    now_us = int(time.time()) * 1_000_000
    bodies = [_batch(b, args.batches, args.series, now_us) for b in range(args.batches)]
    conn = psycopg2.connect(**connection.get_connection_params())
    cursor = conn.cursor()
    print(f"PostgreSQL {conn.server_version}; {args.batches} transactions of {args.series} rows")

    def fresh_table():
        cursor.execute("DROP TABLE IF EXISTS bench_copy_modes")
        cursor.execute("CREATE TABLE bench_copy_modes (tenant_id bigint NOT NULL, series_id bigint NOT NULL, "
                       "ts timestamptz NOT NULL, value float8 NOT NULL, PRIMARY KEY (tenant_id, series_id, ts)) "
                       "PARTITION BY RANGE (ts)")
        cursor.execute("CREATE TABLE bench_copy_modes_all PARTITION OF bench_copy_modes "
                       "FOR VALUES FROM ('2000-01-01') TO ('2100-01-01')")
        conn.commit()

    for label, clause in (("COPY, buffered (default)", ""), ("COPY, row by row (volatile WHERE)", " WHERE random() >= 0")):
        fresh_table()
        began = time.perf_counter()
        for body in bodies:
            cursor.copy_expert("COPY bench_copy_modes FROM STDIN WITH (FORMAT binary)" + clause,
                               io.BytesIO(pgcopy.HEADER + body + pgcopy.TRAILER))
            conn.commit()
        elapsed = time.perf_counter() - began
        print(f"{label:36s} {args.batches * args.series / elapsed:>10,.0f} rows/s ({elapsed / args.batches * 1000:.2f} ms "
              "per transaction)")
    fresh_table()
    began = time.perf_counter()
    cursor.copy_expert("COPY bench_copy_modes FROM STDIN WITH (FORMAT binary)",
                       io.BytesIO(pgcopy.HEADER + b"".join(bodies) + pgcopy.TRAILER))
    conn.commit()
    elapsed = time.perf_counter() - began
    print(f"{'one COPY of every row':36s} {args.batches * args.series / elapsed:>10,.0f} rows/s")
    cursor.execute("DROP TABLE bench_copy_modes")
    conn.commit()
    conn.close()


if __name__ == "__main__":
    main()
