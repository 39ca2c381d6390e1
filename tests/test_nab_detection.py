"""Issue 15's checks on the whole NAB corpus (../shared/bench/nab, beside every checkout and CI run),
through the engine the API uses: every anomaly's band is the one the baselines endpoint draws, and
severity ranks anomalies by how often they are right."""
import numpy as np
import pytest

from anomalies.engine import DetectionConfig
from bench.nab import DEFAULT_DATA, load_file
from bench.nab_bands import check
from bench.nab_severity import inside_shares

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "labels.json").exists(),
                                reason=f"the NAB corpus is not at {DEFAULT_DATA}")


def test_every_nab_anomaly_has_the_endpoints_band_outside_its_value_never_absurd_never_negative():
    totals = {}
    for path in sorted((DEFAULT_DATA / "data").glob("*/*.csv")):
        stamps, values = load_file(path)
        ts, first = np.unique(np.asarray(stamps, np.int64), return_index=True)
        for name, count in check(ts, np.asarray(values, np.float64)[first], DetectionConfig()).items():
            totals[name] = totals.get(name, 0) + count
    assert totals["anomalies"] > 150
    assert {name: count for name, count in totals.items() if name != "anomalies"} == {
        "mismatch": 0, "alert_mismatch": 0, "inside": 0, "too_wide": 0, "negative": 0}


def test_high_anomalies_are_right_more_often_than_medium_and_medium_more_than_low():
    shares = inside_shares(DEFAULT_DATA)
    right = {severity: shares[severity][0] / shares[severity][1] for severity in ("high", "medium", "low")}
    assert right["high"] > right["medium"] > right["low"], (right, shares)
