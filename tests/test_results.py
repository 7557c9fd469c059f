"""Result documents as contract section 4 describes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.plugin.errors import ErrorCode, JobError
from app.protocol.results import ErrorInfo, Metrics, failure_result, replayed_result, success_result

T0 = datetime(2026, 1, 30, 15, 0, 0, tzinfo=UTC)


def test_success_result_has_every_contract_field() -> None:
    doc = success_result(
        "job-00000001", worker_id="worker-01", started_at=T0, finished_at=T0 + timedelta(seconds=1.25),
        attempt=2, idempotency_key="k", data={"answer": 42}, primary="/out/report.json", artifacts=["/out/a"],
        metrics=Metrics(cpu_seconds=0.5, peak_memory_mb=12.0, disk_read_bytes=10, disk_write_bytes=0),
        observability={"trace_id": "t1"},
    ).to_dict()
    assert doc == {
        "job_id": "job-00000001", "status": "completed", "completed_at": "2026-01-30T15:00:01.250000Z",
        "worker_id": "worker-01",
        "execution_summary": {"started_at": "2026-01-30T15:00:00Z", "duration_seconds": 1.25, "attempt": 2,
                              "idempotency_key": "k"},
        "outputs": {"primary": "/out/report.json", "artifacts": ["/out/a"]}, "data": {"answer": 42},
        "metrics": {"cpu_seconds": 0.5, "peak_memory_mb": 12.0, "disk_read_bytes": 10, "disk_write_bytes": 0},
        "observability": {"trace_id": "t1"},
    }
    assert isinstance(doc["execution_summary"]["duration_seconds"], float)


def test_failure_result_carries_the_error_and_failed_at() -> None:
    error = JobError(ErrorCode.DUPLICATE_IN_PROGRESS, "busy", details={"holder": "other"})
    doc = failure_result("job-00000002", ErrorInfo.from_job_error(error, "submission"), status="failed",
                         finished_at=T0, observability={"correlation_id": "c"}).to_dict()
    assert doc["status"] == "failed" and doc["failed_at"] == "2026-01-30T15:00:00Z"
    assert "completed_at" not in doc and "data" not in doc
    assert doc["error"] == {"code": "DUPLICATE_IN_PROGRESS", "message": "busy", "phase": "submission",
                            "details": {"holder": "other"}, "recoverable": True, "retry_recommended": True}
    assert doc["observability"] == {"correlation_id": "c"}
    assert doc["execution_summary"]["duration_seconds"] == 0.0


def test_timeout_and_cancelled_statuses() -> None:
    for status, code in (("timeout", ErrorCode.TIMEOUT), ("cancelled", ErrorCode.CANCELLED)):
        doc = failure_result("job-00000003", ErrorInfo.from_job_error(JobError(code, "m")), status=status,
                             started_at=T0, finished_at=T0 + timedelta(seconds=3)).to_dict()
        assert doc["status"] == status and doc["error"]["code"] == code.value
        assert doc["execution_summary"]["duration_seconds"] == 3.0


def test_replay_names_the_earlier_job() -> None:
    earlier = {"job_id": "first-job", "status": "completed", "data": {"x": 1}}
    replay = replayed_result(earlier, "second-job")
    assert replay == {"job_id": "second-job", "status": "completed", "data": {"x": 1},
                      "idempotent_replay_of": "first-job"}
    assert earlier["job_id"] == "first-job"
