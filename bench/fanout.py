"""Beat's detection pass fanned out over Celery worker processes (issue 14): 4 tenants of 250k new
points each, the per-tenant tasks that beat's pass queues, on 1 and then 2 worker processes.

usage: .venv/bin/python bench/fanout.py [--tenants 4] [--series 250] [--points 1000] [--workers 1 2]
                                        [--shards N]   (one tenant's pass split into N shard tasks)
       .venv/bin/python bench/fanout.py --small-series 10 --series 1000 --shards 8 --workers 2 --slots 8 1

For each worker count: loads fresh tenants (binary COPY, as bench/storage.py), starts a real
`celery worker --concurrency N` on a queue of its own (a `make run` worker on the same Redis never
sees the tasks) with DETECTION_PROCESSES=1 (each worker process one core, as a fan-out deployment
runs them), queues one `detection_tenant_pass_task` per tenant and times until every run
succeeded.

With --small-series (issue 26): one big tenant (--series × --points, in --shards shard tasks) and
one small tenant, queued as beat queues them (the big one's shards first), on a worker of
--workers processes, once for each of --slots (DETECTION_SLOTS_PER_TENANT; a value of --shards or
more is as before the slots: the shards may take every worker process). Prints the small
tenant's detection lag (queued to its run finished) and when the big tenant's last shard finished.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from django.utils import timezone  # noqa: E402
from storage import DAY_US, ShapeMix, load  # noqa: E402  (sets Django up)

from anomalies.models import DetectionRun  # noqa: E402
from anomalies.tasks import detection_tenant_pass_task  # noqa: E402
from cloudwatchdog.celery import app  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextmanager
def worker_running(workers: int, env_extra: dict[str, str]):
    """A real `celery worker` of `workers` processes on a queue of its own; yields the queue."""
    queue = f"bench-fanout-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CELERY_QUEUE": queue, "DETECTION_PROCESSES": "1", **env_extra}
    worker = subprocess.Popen(
        [os.path.join(ROOT, ".venv", "bin", "celery"), "-A", "cloudwatchdog", "worker", "--pool", "prefork",
         "--concurrency", str(workers), "--queues", queue, "--loglevel", "WARNING", "--without-mingle",
         "--without-gossip", "--hostname", f"{queue}@%h"],
        cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not start")
        yield queue
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def _runs_wait(ids: list[int], count: int) -> None:
    while DetectionRun.objects.unscoped().filter(tenant_id__in=ids, status="succeeded").count() < count:
        if DetectionRun.objects.unscoped().filter(tenant_id__in=ids, status="failed").exists():
            raise RuntimeError("a run failed")
        time.sleep(0.05)


def measure(workers: int, tenants: int, series: int, points: int, mix: ShapeMix, shards: int | None) -> float:
    start_us = (int(time.time() * 1e6) // DAY_US - 3) * DAY_US
    created = []
    for _ in range(tenants):
        tenant = tenant_create(slug=f"fanout-{uuid.uuid4().hex[:6]}")
        load(tenant, series, points, start_us, mix)
        created.append(tenant)
    ids = [tenant.id for tenant in created]
    with worker_running(workers, {"DETECTION_SHARDS": str(shards or 1)}) as queue:
        began = time.perf_counter()
        for tenant in created:
            for shard in range(shards) if shards else [None]:
                detection_tenant_pass_task.apply_async(kwargs={"tenant_id": tenant.id, "shard": shard}, queue=queue)
        _runs_wait(ids, tenants * (shards or 1))
        elapsed = time.perf_counter() - began
    processed = sum(DetectionRun.objects.unscoped().filter(tenant_id__in=ids).values_list("points_processed", flat=True))
    print(f"{workers} worker process(es): {tenants} tenants{f' in {shards} shards' if shards else ''}, "
          f"{processed:,} points in {elapsed:.2f} s")
    return elapsed


def measure_small_lag(workers: int, slots: int, series: int, small_series: int, points: int, shards: int,
                      mix: ShapeMix) -> tuple[float, float]:
    """(the small tenant's lag, the big tenant's last shard) in seconds from queueing."""
    start_us = (int(time.time() * 1e6) // DAY_US - 3) * DAY_US
    big, small = (tenant_create(slug=f"fanout-{size}-{uuid.uuid4().hex[:6]}") for size in ("big", "small"))
    load(big, series, points, start_us, mix)
    load(small, small_series, points, start_us, mix)
    env = {"DETECTION_SHARDS": str(shards), "DETECTION_SLOTS_PER_TENANT": str(slots)}
    with worker_running(workers, env) as queue:
        queued_at = timezone.now()
        for shard in range(shards):
            detection_tenant_pass_task.apply_async(kwargs={"tenant_id": big.id, "shard": shard}, queue=queue)
        detection_tenant_pass_task.apply_async(kwargs={"tenant_id": small.id}, queue=queue)
        _runs_wait([big.id, small.id], shards + 1)
    finished = {tenant_id: max(ends) for tenant_id, ends in _finish_times([big.id, small.id]).items()}
    lag, big_done = ((finished[t] - queued_at).total_seconds() for t in (small.id, big.id))
    print(f"{workers} worker processes, {slots} slot(s) per tenant: big tenant {series * points:,} points in {shards} "
          f"shards, small tenant {small_series * points:,} points; small tenant's lag {lag:.2f} s, big tenant's "
          f"last shard {big_done:.2f} s")
    return lag, big_done


def _finish_times(ids: list[int]) -> dict[int, list]:
    found: dict[int, list] = {}
    for tenant_id, finished_at in DetectionRun.objects.unscoped().filter(tenant_id__in=ids).values_list(
            "tenant_id", "finished_at"):
        found.setdefault(tenant_id, []).append(finished_at)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--series", type=int, default=250)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shards", type=int, help="split each tenant's pass into this many shard tasks")
    parser.add_argument("--small-series", type=int,
                        help="one big tenant (--series, in --shards) and one small tenant of this many series: "
                             "the small tenant's detection lag")
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 1],
                        help="with --small-series: DETECTION_SLOTS_PER_TENANT values to compare")
    args = parser.parse_args()
    mix = ShapeMix()
    if args.small_series:
        for slots in args.slots:
            measure_small_lag(args.workers[-1], slots, args.series, args.small_series, args.points, args.shards or 8,
                              mix)
        return
    times = {workers: measure(workers, args.tenants, args.series, args.points, mix, args.shards)
             for workers in args.workers}
    first = times[args.workers[0]]
    for workers, elapsed in times.items():
        print(f"  {workers}: {elapsed:.2f} s = {elapsed / first:.2f} × the time of {args.workers[0]}")


if __name__ == "__main__":
    main()
