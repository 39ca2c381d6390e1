"""Mixed load: reads and other tenants' ingest while agents flood the server (issue 26).

usage: .venv/bin/python bench/mixed_load.py --url http://127.0.0.1:8000 [--quick]
       [--key-a KEY --key-b KEY] [--skip-copy] [durations, see --help]

Against a server started by `make run` (or any, with --url and two keys of scope "all"):
- load: tenant B gets --series one-minute series over --hours (default 200 x 24 h) through
  1,000-event JSON batches (4 keep-alive connections); then, when the tenants were made here, the
  detection pass and the rollups of that backfill run to completion before the phases;
- B alone (first, before tenant A has sent anything, so no pass over A's points runs inside it): tenant
  B ingests at a modest rate (one agent, --b-rate batches/s) and reads (one reader), --flood-seconds;
- phase 1: 4 readers of tenant B (60-minute series reads and the anomalies list, in turn, back to back
  or --read-pause seconds apart) alone;
- phase 2: the same readers while 40 agents of tenant A post 100-point batches back to back;
- phase 3: B as alone, while tenant A floods with --flood-agents agents (--flood-seconds);
- no-op: 100-point batches against an authenticated no-op on the same server, 8 connections each: the
  same bodies POSTed to /api/v1/ingest/noop (the ingest key check and DRF path, 202 without reading the
  body; the server needs BENCH_ENDPOINTS=true), or where that answers 404, GET
  /prometheus/api/v1/status/buildinfo (key check, DRF, a constant answer, no query); it prints which;
- COPY: bench/ingest_http.py's 1,000-event batches against one raw COPY, median of 3 rounds.
Agents honour Retry-After on 429/503 (at most 1 s). Every client is a keep-alive http.client
connection; agents and readers run in processes of their own, and their CPU is reported with the
machine's, so a saturated load generator shows. Each phase starts once the cores are under 25% busy
(at most 45 s later): beat's detection pass over the loaded points would otherwise run inside phase 1. Without the keys, the tenants are made in the
database the project's settings point at; the COPY rounds need that database to be the server's.
Not part of make test.
"""
import argparse
import http.client
import io
import multiprocessing
import os
import sys
import threading
import time
import urllib.parse
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.ingest_http import _django, _median, bench_key, make_batches, run_copy, run_http  # noqa: E402

INGEST_PATH = "/api/v1/ingest/metrics"
NOOP_PATH = "/api/v1/ingest/noop"
NOOP_FALLBACK_PATH = "/prometheus/api/v1/status/buildinfo"
POINTS_PER_BATCH = 100


class Connection:
    """One keep-alive connection that reconnects when the server closes it."""

    def __init__(self, url: str, key: str):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.connection = None

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str | None]:
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.connection.request(method, path, body, self.headers)
            response = self.connection.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, response.getheader("Retry-After")
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Tally:
    """What one process's threads saw: latencies (ms) of successful calls, statuses, points stored."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.points = 0

    def add(self, status: int, elapsed: float, points: int) -> None:
        with self.lock:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.latencies.append(elapsed * 1000)
                self.points += points


def _agent_events(tag: str) -> list[dict]:
    return [{"service": "mixed", "resource_id": f"{tag}-r{s}", "metric_name": "load", "value": float(s % 97),
             "timestamp": ""} for s in range(POINTS_PER_BATCH)]


def _agent(url: str, key: str, tag: str, begin: float, end: float, interval: float, tally: Tally,
           path: str = INGEST_PATH) -> None:
    """Posts 100-point batches (its own 100 series, a millisecond apart) back to back, or one every
    `interval` seconds, to `path`; the first batch (which creates the series) is sent before `begin`, untimed."""
    connection = Connection(url, key)
    events = _agent_events(tag)
    first_ms = int(time.time() * 1000)
    sent = 0

    def body() -> bytes:
        stamp = datetime.fromtimestamp((first_ms + sent) / 1000, timezone.utc).isoformat(timespec="milliseconds")
        for event in events:
            event["timestamp"] = stamp
        return orjson.dumps({"events": events})

    connection.call("POST", path, body())
    sent += 1
    time.sleep(max(0.0, begin - time.time()))
    while (started := time.time()) < end:
        began = time.perf_counter()
        status, retry_after = connection.call("POST", path, body())
        tally.add(status, time.perf_counter() - began, POINTS_PER_BATCH)
        if 200 <= status < 300:
            sent += 1
        elif status in (0, 429, 503):
            time.sleep(min(float(retry_after or 1), 1.0))
        if interval:
            time.sleep(max(0.0, interval - (time.time() - started)))


def _reader(url: str, key: str, paths: list[str], pause: float, begin: float, end: float, tally: Tally,
            offset: int) -> None:
    """GETs `paths` in turn, `pause` seconds apart (the first one untimed, before `begin`); any answer
    but 200 is an error."""
    connection = Connection(url, key)
    connection.call("GET", paths[offset % len(paths)])
    time.sleep(max(0.0, begin - time.time()))
    k = offset
    while time.time() < end:
        began = time.perf_counter()
        status, _ = connection.call("GET", paths[k % len(paths)])
        tally.add(status, time.perf_counter() - began, 0)
        k += 1
        if pause:
            time.sleep(pause)


def _process(jobs: list[tuple], begin: float, end: float, results) -> None:
    """One load-generator process: a thread per job; sends back its tallies by group and its CPU seconds."""
    tallies: dict[str, Tally] = {}
    threads = []
    for group, kind, url, key, arg, offset in jobs:
        tally = tallies.setdefault(group, Tally())
        if kind == "agent":
            target, args = _agent, (url, key, arg[0], begin, end, arg[1], tally, *arg[2:])
        else:
            target, args = _reader, (url, key, arg[0], arg[1], begin, end, tally, offset)
        threads.append(threading.Thread(target=target, args=args, daemon=True))
    cpu_before = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(({group: (t.latencies, dict(t.statuses), t.points) for group, t in tallies.items()},
                 time.process_time() - cpu_before))


def _machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def settle(limit: float, quiet: float = 0.25) -> float:
    """Waits (at most `limit` seconds) until the machine's cores are less than `quiet` busy over 2 s:
    beat's detection pass over newly loaded points, or the last phase's backlog, would otherwise
    run inside the next phase. Returns the seconds waited."""
    began = time.time()
    while time.time() - began < limit:
        before = _machine_busy()
        time.sleep(2.0)
        after = _machine_busy()
        if (after[0] - before[0]) / max(1, after[1] - before[1]) < quiet:
            break
    return time.time() - began


def run_phase(jobs: list[tuple], seconds: float, processes: int = 4, settle_limit: float = 45.0) -> dict:
    """Runs the jobs (group, kind, url, key, arg, offset) spread over `processes` processes for
    `seconds` after a 3 s warm-up, once the machine is quiet; returns per group the merged tally, plus
    the generator's CPU and the machine's busy share."""
    waited = settle(settle_limit)
    begin = time.time() + 3.0
    end = begin + seconds
    results = multiprocessing.Queue()
    shards = [jobs[i::processes] for i in range(processes) if jobs[i::processes]]
    workers = [multiprocessing.Process(target=_process, args=(shard, begin, end, results)) for shard in shards]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, begin - time.time()))
    busy_before = _machine_busy()
    merged: dict[str, dict] = {}
    cpu = 0.0
    for _ in workers:
        tallies, worker_cpu = results.get(timeout=seconds + 300)
        cpu += worker_cpu
        for group, (latencies, statuses, points) in tallies.items():
            entry = merged.setdefault(group, {"latencies": [], "statuses": Counter(), "points": 0})
            entry["latencies"] += latencies
            entry["statuses"].update(statuses)
            entry["points"] += points
    busy_after = _machine_busy()
    for worker in workers:
        worker.join()
    # To match a phase with the server's log (beat's passes, rollup refreshes).
    print(f"  {', '.join(sorted({job[0] for job in jobs}))}: {datetime.fromtimestamp(begin, timezone.utc):%H:%M:%S}"
          f"-{datetime.fromtimestamp(end, timezone.utc):%H:%M:%S} UTC", flush=True)
    cores = os.cpu_count() or 1
    machine = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    # The generator's CPU includes its warm-up; over the whole phase it is a close upper bound.
    merged["_cpu"] = {"generator_cores": cpu / (seconds + 3.0), "machine_share": machine, "cores": cores,
                      "seconds": seconds, "settled": waited}
    return merged


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(entry: dict, seconds: float) -> dict:
    statuses = entry["statuses"]
    return {"p50": percentile(entry["latencies"], 0.5), "p99": percentile(entry["latencies"], 0.99),
            "ok": len(entry["latencies"]), "requests_s": sum(statuses.values()) / seconds,
            "points_s": entry["points"] / seconds, "429": statuses.get(429, 0),
            "5xx": sum(n for s, n in statuses.items() if s >= 500), "failed": statuses.get(0, 0),
            "other": sum(n for s, n in statuses.items() if s and not 200 <= s < 300 and s != 429 and s < 500)}


def read_paths(series: int) -> list[str]:
    paths = []
    for s in range(0, series, max(1, series // 50)):
        paths.append(f"/api/v1/metrics/timeseries?service=mixed&metric_name=load&resource_id=r{s}&minutes=60")
        paths.append("/api/v1/anomalies?limit=50")
    return paths


def load_tenant_b(url: str, key: str, series: int, hours: int) -> tuple[int, float]:
    """--series one-minute series over --hours ending now, in 1,000-event batches (1,000 // series minutes each)."""
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    minutes = hours * 60
    per_batch = max(1, 1000 // series)
    bodies = []
    for first in range(0, minutes, per_batch):
        events = []
        for minute in range(first, min(first + per_batch, minutes)):
            ts = (end - timedelta(minutes=minutes - 1 - minute)).isoformat().replace("+00:00", "Z")
            events += [{"service": "mixed", "resource_id": f"r{s}", "metric_name": "load",
                        "value": 50.0 + (minute * 7 + s) % 20, "timestamp": ts} for s in range(series)]
        bodies.append(orjson.dumps({"events": events}))
    accepted, seconds = run_http(url, key, bodies, 4, "json", 0)
    return accepted, seconds


def catch_up() -> float:
    """The work a day of backfill leaves to beat (the first detection pass over it, the rollups of its
    hours), done now through the same functions, so it runs before phase 1 instead of inside whichever
    phase beat's next minute falls in: the phases measure the server's steady state. Returns seconds."""
    _django()
    from django.core.management import call_command

    from metrics.storage import rollups_refresh

    began = time.time()
    call_command("run_detection", wait=300.0, stdout=io.StringIO())
    rollups_refresh()
    return time.time() - began


def make_keys() -> tuple[str, str]:
    _django()
    from tenants.services import api_key_issue, tenant_create

    tag = f"{int(time.time())}"
    tenants = [tenant_create(slug=f"bench-mixed-{name}-{tag}") for name in "ab"]
    # B is loaded over 4 connections: its share covers them (A keeps the default, and is refused when it floods).
    tenants[1].limits = {**tenants[1].limits, "INGEST_INFLIGHT_PER_TENANT": 4}
    tenants[1].save(update_fields=["limits"])
    return tuple(api_key_issue(tenant=tenant).plaintext for tenant in tenants)


def agents(group: str, url: str, key: str, count: int, tag: str, interval: float = 0.0,
           path: str = INGEST_PATH) -> list[tuple]:
    return [(group, "agent", url, key, (f"{tag}{i}", interval, path), i) for i in range(count)]


def readers(group: str, url: str, key: str, count: int, paths: list[str], pause: float = 0.0) -> list[tuple]:
    return [(group, "reader", url, key, (paths, pause), i * 7) for i in range(count)]


def noop_jobs(url: str, key: str) -> tuple[list[tuple], str]:
    """The no-op phase's jobs: the 100-point bodies POSTed to NOOP_PATH, or GETs of NOOP_FALLBACK_PATH
    when the server answers it 404 (BENCH_ENDPOINTS is not true there)."""
    probe = Connection(url, key)
    status, _ = probe.call("POST", NOOP_PATH, orjson.dumps({"events": _agent_events("probe")}))
    probe.close()
    if status == 202:
        return agents("noop", url, key, 8, "noop", path=NOOP_PATH), f"POST {NOOP_PATH}, the same 100-point bodies"
    return readers("noop", url, key, 8, [NOOP_FALLBACK_PATH]), (
        f"GET {NOOP_FALLBACK_PATH} ({NOOP_PATH} answered {status}: start the server with BENCH_ENDPOINTS=true)")


def noop_phases(args, key_a: str, figures: dict) -> None:
    # A tenant of their own whose share covers the 8 connections: the request's cost measured, not A's share.
    key_a = bench_key(f"noop{int(time.time())}", inflight=8)
    batches = run_phase(agents("batch", args.url, key_a, 8, "noop-cmp"), args.noop_seconds)
    figures["100-point batches, 8 conn"] = (summary(batches["batch"], args.noop_seconds), batches["_cpu"])
    jobs, used = noop_jobs(args.url, key_a)
    print(f"no-op: {used}")
    noop = run_phase(jobs, args.noop_seconds)
    figures["no-op, 8 conn"] = (summary(noop["noop"], args.noop_seconds), noop["_cpu"])


def phases(args, key_a: str, key_b: str) -> dict:
    paths = read_paths(args.series)
    figures = {}
    b_jobs = (agents("b ingest", args.url, key_b, 1, "b-agent", 1.0 / args.b_rate)
              + readers("b read", args.url, key_b, 1, paths, args.read_pause))
    # B alone comes first, before A has sent anything: later, beat's passes over the flood's last points
    # would run inside it. As long as the phase it is compared with: at 10 requests/s a 20 s phase's p99
    # is its 2nd-slowest request, and it holds one of beat's top-of-the-minute passes or none; 60 s hold one.
    b_alone = run_phase(b_jobs, args.flood_seconds)
    alone = run_phase(readers("read", args.url, key_b, 4, paths, args.read_pause), args.alone_seconds)
    figures["reads alone"] = (summary(alone["read"], args.alone_seconds), alone["_cpu"])
    flood = run_phase(readers("read", args.url, key_b, 4, paths, args.read_pause)
                      + agents("ingest", args.url, key_a, args.agents, "agent"), args.flood_seconds)
    figures["reads under flood"] = (summary(flood["read"], args.flood_seconds), flood["_cpu"])
    figures["agents (flood)"] = (summary(flood["ingest"], args.flood_seconds), flood["_cpu"])
    figures["B ingest alone"] = (summary(b_alone["b ingest"], args.flood_seconds), b_alone["_cpu"])
    figures["B reads alone"] = (summary(b_alone["b read"], args.flood_seconds), b_alone["_cpu"])
    b_flood = run_phase(b_jobs + agents("a ingest", args.url, key_a, args.flood_agents, "flood"), args.flood_seconds)
    figures["B ingest, A floods"] = (summary(b_flood["b ingest"], args.flood_seconds), b_flood["_cpu"])
    figures["B reads, A floods"] = (summary(b_flood["b read"], args.flood_seconds), b_flood["_cpu"])
    figures["A flood"] = (summary(b_flood["a ingest"], args.flood_seconds), b_flood["_cpu"])
    noop_phases(args, key_a, figures)
    return figures


def copy_rounds(args, key_a: str) -> tuple[float, float]:
    # A tenant of their own whose share (INGEST_INFLIGHT_PER_TENANT) is the 4 connections: ingest measured,
    # not A's share of it.
    key_a = bench_key(f"copy{int(time.time())}", inflight=4)
    http_rates, copy_rates = [], []
    for _ in range(args.copy_rounds):
        start = datetime.now(timezone.utc)
        bodies = make_batches(args.copy_batches + 4, 1000, start, f"copy{int(time.time())}")
        accepted, seconds = run_http(args.url, key_a, bodies, 4, "json", 1000)
        http_rates.append(accepted / seconds)
        copy_rates.append(args.copy_batches * 1000 / run_copy(args.copy_batches * 1000, 1000, start))
    return _median(http_rates), _median(copy_rates)


def print_table(figures: dict) -> None:
    print(f"\n{'':28} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'points/s':>9} {'429':>6} {'5xx':>5} "
          f"{'other':>5} {'no answer':>9} {'gen CPU':>8} {'machine':>8} {'settled':>8}")
    for name, (row, cpu) in figures.items():
        print(f"{name:28} {row['p50']:8.1f} {row['p99']:8.1f} {row['requests_s']:8.1f} {row['points_s']:9,.0f} "
              f"{row['429']:6} {row['5xx']:5} {row['other']:5} {row['failed']:9} "
              f"{cpu['generator_cores']:7.2f}c {cpu['machine_share']:7.0%} {cpu['settled']:7.0f}s")
    print(f"(gen CPU: cores used by the load generator's processes; machine: all {os.cpu_count()} cores' busy share; "
          "settled: seconds waited before the phase for the machine to be under 25% busy, at most 45)")


def print_ratios(figures: dict, copy: tuple[float, float] | None, rounds: int) -> None:
    def ratio(a: str, b: str, field: str = "p99") -> float:
        return figures[a][0][field] / figures[b][0][field]

    print("\nacceptance (issue 26):")
    if "reads alone" in figures:
        _print_flood_ratios(figures, ratio)
    print(f"  100-point batches / authenticated no-op, requests/s: "
          f"{ratio('100-point batches, 8 conn', 'no-op, 8 conn', 'requests_s'):.2f} (target >= 0.5)")
    if copy:
        print(f"  1,000-event batches / raw COPY: {copy[0]:,.0f} / {copy[1]:,.0f} = {copy[0] / copy[1]:.2f} "
              f"(median of {rounds} rounds each; target >= 0.5)")


def _print_flood_ratios(figures: dict, ratio) -> None:
    print(f"  read p99 under the 40-agent flood / alone: {ratio('reads under flood', 'reads alone'):.1f}x "
          f"(target <= 3x); read errors: {figures['reads under flood'][0]['5xx'] + figures['reads under flood'][0]['other'] + figures['reads under flood'][0]['failed']}")
    print(f"  B's ingest p99 while A floods / alone: {ratio('B ingest, A floods', 'B ingest alone'):.1f}x "
          f"(target <= 2x); 429s: A {figures['A flood'][0]['429']}, B {figures['B ingest, A floods'][0]['429']} "
          "(target: A some, B none)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key-a", help="a key (scope all) of the flooding tenant; made here when absent")
    parser.add_argument("--key-b", help="a key (scope all) of the tenant that reads and ingests modestly")
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute of load in all)")
    parser.add_argument("--series", type=int, default=200, help="tenant B's stored series (default 200)")
    parser.add_argument("--hours", type=int, default=24, help="hours of one-minute points per series (default 24)")
    parser.add_argument("--agents", type=int, default=40, help="agents posting back to back in phase 2 (default 40)")
    parser.add_argument("--flood-agents", type=int, default=40, help="tenant A's agents in phase 3 (default 40)")
    parser.add_argument("--b-rate", type=float, default=10.0, help="tenant B's 100-point batches per second (default 10)")
    parser.add_argument("--read-pause", type=float, default=0.0,
                        help="seconds each reader waits between reads (default 0: back to back, as the issue has it; "
                             "4 such readers already keep 2 cores busy)")
    parser.add_argument("--alone-seconds", type=float, default=20.0, help="phase 1: the readers alone (default 20)")
    parser.add_argument("--flood-seconds", type=float, default=60.0,
                        help="phase 2, B alone, and B while A floods (default 60)")
    parser.add_argument("--noop-seconds", type=float, default=15.0)
    parser.add_argument("--copy-rounds", type=int, default=3)
    parser.add_argument("--copy-batches", type=int, default=100, help="1,000-event batches per COPY round")
    parser.add_argument("--ingest-only", action="store_true",
                        help="only the 100-point batches against the no-op, and the COPY rounds (no tenant B, no flood)")
    parser.add_argument("--skip-copy", action="store_true", help="no COPY rounds (the server's database is not ours)")
    args = parser.parse_args()
    if args.quick:  # a smoke run: 10 s phases may hold none of beat's passes, so its ratios are rough
        args.hours, args.alone_seconds, args.flood_seconds, args.noop_seconds = 6, 5.0, 10.0, 4.0
        args.copy_rounds, args.copy_batches = 1, 30
    local = not (args.key_a and args.key_b)  # the server's database is the one our settings point at
    key_a, key_b = make_keys() if local else (args.key_a, args.key_b)
    if args.ingest_only:
        figures = {}
        noop_phases(args, key_a, figures)
    else:
        accepted, seconds = load_tenant_b(args.url, key_b, args.series, args.hours)
        print(f"loaded tenant B: {args.series} series x {args.hours} h of minutes "
              f"({accepted / seconds:,.0f} points/s in 1,000-event batches)")
        if local:
            print(f"caught up with the backfill (detection pass, rollups) in {catch_up():.0f} s")
        figures = phases(args, key_a, key_b)
    copy = None if args.skip_copy else copy_rounds(args, key_a)
    print_table(figures)
    print_ratios(figures, copy, args.copy_rounds)


if __name__ == "__main__":
    main()
