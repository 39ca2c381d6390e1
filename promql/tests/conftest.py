"""The differential harness's Prometheus: started once a session over the synthetic blocks, killed at its end."""
from dataclasses import dataclass

import pytest

from promql.tests.prometheus_harness import (
    PrometheusClient,
    SyntheticSeries,
    build_blocks,
    running_prometheus,
    synthetic_series,
    write_openmetrics,
)


@dataclass
class SyntheticPrometheus:
    client: PrometheusClient
    series: list[SyntheticSeries]


@pytest.fixture(scope="session")
def synthetic_prometheus(prometheus_binaries, tmp_path_factory) -> SyntheticPrometheus:
    prometheus, promtool = prometheus_binaries
    workdir = tmp_path_factory.mktemp("synthetic-prometheus")
    series = synthetic_series()
    write_openmetrics(series, workdir / "synthetic.om")
    build_blocks(promtool, workdir / "synthetic.om", workdir / "data")
    with running_prometheus(prometheus, workdir, storage=workdir / "data") as client:
        yield SyntheticPrometheus(client, series)
