"""Detection of many series at once, over several processes when the batch is big enough.

Series are independent, so a pass splits into shards whose results are exactly those of one
process. Worker processes are spawned (not forked: a forked child would share the parent's
database connections) once per process and kept; a small batch runs inline, where shipping
arrays to workers would cost more than it saves, and so does a batch in a daemonic process (a
Celery prefork worker may not have children; Celery already runs tenants side by side there).
"""
from __future__ import annotations

import atexit
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from anomalies.engine.config import DetectionConfig
from anomalies.engine.scan import detect

_pools: dict[int, ProcessPoolExecutor] = {}


def _pool(processes: int) -> ProcessPoolExecutor:
    if processes not in _pools:
        _pools[processes] = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    return _pools[processes]


@atexit.register
def _shutdown() -> None:
    for pool in _pools.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _pools.clear()


def _detect_shard(jobs: list, configs: list[DetectionConfig]) -> list:
    return [detect(state, ts, values, config) for (state, ts, values), config in zip(jobs, configs)]


def detect_many(jobs: list, config: DetectionConfig | list[DetectionConfig], *, processes: int = 1,
                min_points: int = 200_000) -> list:
    """`detect` for each (state, ts, values) job, with `config` or each job's own (a list as long as
    `jobs`), results in the same order.

    With `processes` > 1 and at least `min_points` points in all, the jobs are split into shards
    of about equal points and evaluated by that many worker processes.
    """
    configs = [config] * len(jobs) if isinstance(config, DetectionConfig) else list(config)
    total = sum(len(ts) for _, ts, _ in jobs)
    if processes <= 1 or total < min_points or len(jobs) < 2 or multiprocessing.current_process().daemon:
        return _detect_shard(jobs, configs)
    # Contiguous shards of about total / (4 × processes) points each, so a slow shard is not last alone.
    target = total / (4 * processes)
    shards, current, size = [], [], 0
    for index, job in enumerate(jobs):
        current.append(index)
        size += len(job[1])
        if size >= target:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    pool = _pool(processes)
    try:
        futures = [pool.submit(_detect_shard, [jobs[i] for i in shard], [configs[i] for i in shard]) for shard in shards]
        return [result for future in futures for result in future.result()]
    except BrokenProcessPool:
        # A worker died (killed, out of memory): start afresh next time, and finish this pass here.
        _pools.pop(processes, None)
        pool.shutdown(wait=False, cancel_futures=True)
        return _detect_shard(jobs, configs)
