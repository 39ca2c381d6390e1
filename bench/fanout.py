"""Beat's detection pass fanned out over Celery worker processes (issue 14): 4 tenants of 250k new
points each, the per-tenant tasks that beat's pass queues, on 1 and then 2 worker processes.

usage: .venv/bin/python bench/fanout.py [--tenants 4] [--series 250] [--points 1000] [--workers 1 2]
                                        [--shards N]   (one tenant's pass split into N shard tasks)

For each worker count: loads fresh tenants (binary COPY, as bench/storage.py), starts a real
`celery worker --concurrency N` on a queue of its own (a `make run` worker on the same Redis never
sees the tasks) with DETECTION_PROCESSES=1 (each worker process one core, as a fan-out deployment
runs them), queues one `detection_tenant_pass_task` per tenant and times until every run
succeeded.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from storage import DAY_US, ShapeMix, load  # noqa: E402  (sets Django up)

from anomalies.models import DetectionRun  # noqa: E402
from anomalies.tasks import detection_tenant_pass_task  # noqa: E402
from cloudwatchdog.celery import app  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(workers: int, tenants: int, series: int, points: int, mix: ShapeMix, shards: int | None) -> float:
    start_us = (int(time.time() * 1e6) // DAY_US - 3) * DAY_US
    created = []
    for _ in range(tenants):
        tenant = tenant_create(slug=f"fanout-{uuid.uuid4().hex[:6]}")
        load(tenant, series, points, start_us, mix)
        created.append(tenant)
    queue = f"bench-fanout-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CELERY_QUEUE": queue, "DETECTION_PROCESSES": "1", "DETECTION_SHARDS": str(shards or 1)}
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
        began = time.perf_counter()
        for tenant in created:
            for shard in range(shards) if shards else [None]:
                detection_tenant_pass_task.apply_async(kwargs={"tenant_id": tenant.id, "shard": shard}, queue=queue)
        ids = [tenant.id for tenant in created]
        while DetectionRun.objects.unscoped().filter(tenant_id__in=ids, status="succeeded").count() < tenants * (shards or 1):
            if DetectionRun.objects.unscoped().filter(tenant_id__in=ids, status="failed").exists():
                raise RuntimeError("a run failed")
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    processed = sum(DetectionRun.objects.unscoped().filter(tenant_id__in=ids).values_list("points_processed", flat=True))
    print(f"{workers} worker process(es): {tenants} tenants{f' in {shards} shards' if shards else ''}, "
          f"{processed:,} points in {elapsed:.2f} s")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--series", type=int, default=250)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shards", type=int, help="split each tenant's pass into this many shard tasks")
    args = parser.parse_args()
    mix = ShapeMix()
    times = {workers: measure(workers, args.tenants, args.series, args.points, mix, args.shards)
             for workers in args.workers}
    first = times[args.workers[0]]
    for workers, elapsed in times.items():
        print(f"  {workers}: {elapsed:.2f} s = {elapsed / first:.2f} × the time of {args.workers[0]}")


if __name__ == "__main__":
    main()
