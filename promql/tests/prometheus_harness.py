"""Real Prometheus to compare the engine with: synthetic series written as OpenMetrics, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, served by Debian's Prometheus 2.42 on a free loopback port.

The same arrays go to the engine through an in-memory `fetch`, so a difference in an answer is a difference in
semantics, not in data. The series are chosen for the edges that bite (plans/issue25.md, section 3): counters with
resets, gauges, histogram buckets with `le`, gaps longer than the 5-minute lookback, irregular intervals and
millisecond jitter, samples exactly on step boundaries, series that start late or stop early, several jobs and
instances. OpenMetrics cannot carry staleness markers; the engine's unit tests cover those.

bench/promql.py starts Prometheus over its own blocks with the same helpers."""
import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# 2024-01-01T00:00:00Z: a whole hour, so 15 s scrapes and 60 s steps fall on each other.
START_MS = 1_704_067_200_000
SPAN_MS = 2 * 3600_000
BUCKET_BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")


@dataclass
class SyntheticSeries:
    labels: dict[str, str]
    ts_ms: np.ndarray  # int64, ascending: times Prometheus stores as written (see _exactly_parsed)
    values: np.ndarray  # float64


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _exactly_parsed(ts_ms: int) -> int:
    """The nearest millisecond at or after `ts_ms` that Prometheus stores as written: its OpenMetrics parser
    multiplies the float seconds by 1000 and truncates (int64(ts * 1000)), which may land 1 ms early. Python's
    float product and int() truncation are Go's, so the check here is the parser's."""
    while int(float(_seconds(ts_ms)) * 1000) != ts_ms:
        ts_ms += 1
    return ts_ms


def _regular_times(rng, *, interval_ms: int, offset_ms: int = 0, start_ms=START_MS, end_ms=START_MS + SPAN_MS):
    return np.arange(start_ms + offset_ms, end_ms + 1, interval_ms, dtype=np.int64)


def _irregular_times(rng, *, low_s: float, high_s: float, start_ms=START_MS, end_ms=START_MS + SPAN_MS):
    gaps = rng.uniform(low_s, high_s, size=int((end_ms - start_ms) / (low_s * 1000)) + 1)
    times = start_ms + np.cumsum(np.round(gaps * 1000)).astype(np.int64)
    return times[times <= end_ms]


def _without(times: np.ndarray, low_ms: int, high_ms: int) -> np.ndarray:
    """A gap: no sample in [low_ms, high_ms)."""
    return times[(times < low_ms) | (times >= high_ms)]


def _counter(rng, n: int, *, per_sample: float, resets: int = 0) -> np.ndarray:
    steps = rng.exponential(per_sample, size=n).round(3)
    values = np.cumsum(steps)
    for at in rng.choice(np.arange(5, n - 5), size=resets, replace=False) if resets else ():
        # A restart: the counter starts again from a small value.
        values[at:] -= values[at] - rng.uniform(0, per_sample)
    return values.round(3)


def _http_requests(rng) -> list[SyntheticSeries]:
    """Counters scraped every 15 s on the minute grid (samples exactly on the query steps)."""
    out = []
    plan = [("api", "10.0.0.1:9100", "GET", "200", "/api/v1/users", 40.0, 2),
            ("api", "10.0.0.1:9100", "POST", "200", "/api/v1/users", 7.0, 0),
            ("api", "10.0.0.1:9100", "GET", "500", "/api/v1/users", 0.7, 1),
            ("api", "10.0.0.2:9100", "GET", "200", "/health", 12.0, 1),
            ("api", "10.0.0.2:9100", "GET", "404", "/missing", 1.3, 0),
            ("worker", "10.0.1.1:9100", "POST", "200", "/jobs", 3.1, 1),
            ("worker", "10.0.1.2:9100", "POST", "200", "/jobs", 2.9, 0)]
    for job, instance, method, code, path, per_sample, resets in plan:
        times = _regular_times(rng, interval_ms=15_000)
        if instance == "10.0.0.2:9100":
            times = _without(times, START_MS + 40 * 60_000, START_MS + 52 * 60_000)  # 12 minutes down
        if instance == "10.0.1.2:9100":
            times = times[times >= START_MS + 35 * 60_000 + 4_321]  # starts late, off the grid
        out.append(SyntheticSeries(
            {"__name__": "http_requests_total", "job": job, "instance": instance, "method": method, "code": code,
             "path": path}, times, _counter(rng, len(times), per_sample=per_sample, resets=resets)))
    return out


def _temperatures(rng) -> list[SyntheticSeries]:
    """Gauges at irregular intervals with millisecond jitter, one going below zero, one stopping early."""
    out = []
    for instance, sensor, base in (("10.0.2.1:9100", "cpu0", 55.0), ("10.0.2.1:9100", "cpu1", 61.0),
                                   ("10.0.2.2:9100", "gpu", 48.0), ("10.0.2.3:9100", "outdoor", -3.0)):
        times = _irregular_times(rng, low_s=4.0, high_s=40.0)
        if sensor == "cpu1":
            times = _without(times, START_MS + 70 * 60_000, START_MS + 77 * 60_000)
        if sensor == "gpu":
            times = times[times < START_MS + 95 * 60_000 + 17]
        values = base + np.cumsum(rng.normal(0, 0.8, size=len(times)))
        out.append(SyntheticSeries({"__name__": "node_temperature_celsius", "job": "node", "instance": instance,
                                    "sensor": sensor}, times, values.round(4)))
    return out


def _queue_depths(rng) -> list[SyntheticSeries]:
    """Gauges every 10 s offset by 3.5 s from the grid, with a gap of 20 minutes."""
    out = []
    for queue, scale in (("emails", 30.0), ("reports", 4.0), ("thumbnails", 120.0)):
        times = _regular_times(rng, interval_ms=10_000, offset_ms=3_500)
        if queue == "reports":
            times = _without(times, START_MS + 20 * 60_000, START_MS + 40 * 60_000)
        values = np.abs(scale + np.cumsum(rng.normal(0, scale / 10, size=len(times))))
        out.append(SyntheticSeries({"__name__": "queue_depth", "job": "worker", "instance": "10.0.1.1:9100",
                                    "queue": queue}, times, values.round(2)))
    return out


def _histograms(rng) -> list[SyntheticSeries]:
    """A latency histogram per api instance: cumulative `le` buckets, `_count` and `_sum`, every 15 s at +7 s,
    one instance restarting (every bucket resets together)."""
    out = []
    shares = np.array([0.2, 0.25, 0.2, 0.15, 0.1, 0.06, 0.04])
    for instance, per_sample, reset in (("10.0.0.1:9100", 30.0, True), ("10.0.0.2:9100", 9.0, False)):
        times = _regular_times(rng, interval_ms=15_000, offset_ms=7_000)
        requests = rng.poisson(per_sample, size=len(times)).astype(float)
        per_bucket = np.zeros((len(shares), len(times)), dtype=np.int64)
        for i, total in enumerate(requests.astype(int)):
            per_bucket[:, i] = rng.multinomial(total, shares)
        if reset:
            restart = len(times) // 2
            cumulative = np.concatenate([np.cumsum(per_bucket[:, :restart], axis=1),
                                         np.cumsum(per_bucket[:, restart:], axis=1)], axis=1)
        else:
            cumulative = np.cumsum(per_bucket, axis=1)
        by_bound = np.cumsum(cumulative, axis=0).astype(float)  # bucket k counts every request <= its bound
        labels = {"job": "api", "instance": instance}
        for bound, counts in zip(BUCKET_BOUNDS, by_bound):
            out.append(SyntheticSeries({"__name__": "request_duration_seconds_bucket", **labels, "le": bound},
                                       times, counts))
        sums = np.cumsum(requests * rng.uniform(0.05, 0.4, size=len(times)))
        if reset:
            sums[restart:] -= sums[restart - 1]
        out.append(SyntheticSeries({"__name__": "request_duration_seconds_count", **labels}, times, by_bound[-1]))
        out.append(SyntheticSeries({"__name__": "request_duration_seconds_sum", **labels}, times, sums.round(6)))
    return out


def synthetic_series(seed: int = 25) -> list[SyntheticSeries]:
    """The differential harness's data: 32 series and about 15,000 samples over two hours from START_MS."""
    rng = np.random.default_rng(seed)
    series = [*_http_requests(rng), *_temperatures(rng), *_queue_depths(rng), *_histograms(rng)]
    for one in series:
        one.ts_ms = np.array([_exactly_parsed(int(t)) for t in one.ts_ms], dtype=np.int64)
        one.values = np.asarray(one.values, dtype=np.float64)
    return series


def write_openmetrics(series, path: Path) -> None:
    """One OpenMetrics text with every sample timestamped; families stay together, as the format asks."""
    with path.open("w") as out:
        for one in sorted(series, key=lambda s: s.labels["__name__"]):
            name = one.labels["__name__"]
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(one.labels.items()) if k != "__name__")
            for t, v in zip(one.ts_ms.tolist(), one.values.tolist()):
                out.write(f"{name}{{{labels}}} {v!r} {_seconds(t)}\n")
        out.write("# EOF\n")


def build_blocks(promtool: str, openmetrics: Path, blocks: Path) -> None:
    blocks.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(blocks)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from failed: {done.stderr or done.stdout}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusClient:
    """Prometheus' HTTP API, the calls the comparisons need, answers parsed into arrays."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}

    def get(self, path: str, params: dict | None = None, *, timeout: float = 60) -> dict:
        query = urllib.parse.urlencode(params or {}, doseq=True)
        request = urllib.request.Request(f"{self.base_url}{path}?{query}", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            raise AssertionError(f"{path} {params} answered {error.code}: {body[:2000]}") from None

    def query_range(self, expr: str, *, start_ms: int, end_ms: int, step_ms: int) -> dict:
        """The matrix as {labels (sorted tuple): (ts_ms int64[], values float64[])}."""
        body = self.get("/api/v1/query_range", {"query": expr, "start": _seconds(start_ms), "end": _seconds(end_ms),
                                                "step": _seconds(step_ms)})
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "matrix", body
        return parse_matrix(body["data"]["result"])

    def query_instant(self, expr: str, *, time_ms: int) -> dict:
        body = self.get("/api/v1/query", {"query": expr, "time": _seconds(time_ms)})
        assert body["status"] == "success", body
        return body["data"]

    def sample(self, expr: str) -> float:
        """The one value of an instant query now (a metric of Prometheus' own)."""
        result = self.get("/api/v1/query", {"query": expr})["data"]["result"]
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])


def parse_matrix(result: list[dict]) -> dict:
    parsed = {}
    for item in result:
        labels = tuple(sorted(item["metric"].items()))
        assert labels not in parsed, f"two series with labels {labels}"
        points = item.get("values", [])
        parsed[labels] = (np.array([round(t * 1000) for t, _ in points], dtype=np.int64),
                          np.array([float(v) for _, v in points], dtype=np.float64))
    return parsed


@contextmanager
def running_prometheus(prometheus: str, workdir: Path, *, config: str = "global: {}\n", port: int | None = None,
                       storage: Path | None = None, extra_args: tuple[str, ...] = ()):
    """Prometheus in server mode on a loopback port (a free one unless given), ready before this yields its
    client; killed after."""
    (workdir / "prometheus.yml").write_text(config)
    port = port or free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [prometheus, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={storage or workdir / 'data'}", "--storage.tsdb.retention.time=100y",
         f"--web.listen-address=127.0.0.1:{port}", *extra_args],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}", workdir / "prometheus.log")
        yield PrometheusClient(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(process, base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"prometheus was not ready within 60 s: {log.read_text()[-3000:]}")
