"""GET /api/v1/process/runs/{run_id}: a run's status, for its tenant only."""


def test_run_status_is_readable_by_its_tenant_only(owner, outsider):
    run_id = owner.post("/api/v1/process/run").json()["run_id"]
    mine = owner.get(f"/api/v1/process/runs/{run_id}")
    assert mine.status_code == 200 and mine.json()["status"] == "succeeded"
    assert outsider.get(f"/api/v1/process/runs/{run_id}").status_code == 404
    missing = owner.get("/api/v1/process/runs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}
