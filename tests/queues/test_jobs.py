"""The job table in one process (embedded mode: no broker, a job runs right after its commit).

What is tested here holds with a broker too: the claim, the lease, the outcome written only by the
claim's holder, retries waiting in the table, rescues, idempotency, the daily quota. The
end-to-end tests with a real worker are in tests/integration/test_celery_worker.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.utils import timezone

from queues import dispatcher, runner, services
from queues.exceptions import (
    IdempotencyConflict,
    InvalidJobPayload,
    JobNotCancellable,
    JobNotRetryable,
    UnknownJobKind,
)
from queues.kinds import RetryPolicy, get_kind, job_kind
from queues.models import Job
from tenants.exceptions import QuotaExceeded
from tests.factories import TenantFactory, plan
from tests.queues.kinds import side_effects

pytestmark = pytest.mark.django_db

LATER = timezone.now() + timedelta(days=1)


@pytest.fixture
def tenant():
    return TenantFactory(plan=plan("pro"))


def enqueue(tenant, kind: str, payload: dict | None = None, capture=None, **kwargs) -> Job:
    """Enqueue and commit (running the on-commit publish, which runs the job in embedded mode)."""
    with capture(execute=True):
        enqueued = services.job_enqueue(tenant=tenant, kind=kind, payload=payload, **kwargs)
    return Job.all_tenants.get(pk=enqueued.job.pk)


def dispatch_when_due(job: Job) -> dict[str, int]:
    """Bring the job's time (a retry's wait) to now, then dispatch, as time passing would."""
    Job.all_tenants.filter(pk=job.pk, run_at__gt=timezone.now()).update(run_at=timezone.now())
    return dispatcher.dispatch()


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    def go(tenant, kind, payload=None, **kwargs) -> Job:
        return enqueue(tenant, kind, payload, django_capture_on_commit_callbacks, **kwargs)

    return go


# --- Running ------------------------------------------------------------------------------------


def test_a_job_runs_after_commit_and_records_its_result(tenant, run):
    job = run(tenant, "diagnostics.echo", {"message": {"hello": ["world"]}})

    assert (job.status, job.result, job.attempts) == (
        "succeeded",
        {"message": {"hello": ["world"]}},
        1,
    )
    assert job.started_at and job.finished_at and job.lease_until is None
    assert (job.queue, job.worker) == ("default", "inline")


def test_nothing_runs_or_is_written_when_the_caller_rolls_back(
    tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.job_enqueue(tenant=tenant, kind="diagnostics.echo")
    assert len(callbacks) == 1  # the publish waits for the commit
    assert Job.all_tenants.get().status == "queued"


def test_the_job_runs_in_its_tenants_scope(tenant, run):
    other = TenantFactory()

    assert run(tenant, "tests.scope").result == {"tenant": tenant.pk, "attempt": 1}
    assert run(other, "tests.scope").result == {"tenant": other.pk, "attempt": 1}


def test_the_kind_decides_the_queue(tenant, run):
    assert run(tenant, "tests.side_effect").queue == "email"


def test_unknown_kinds_and_bad_payloads_are_refused_before_a_row_is_written(tenant):
    with pytest.raises(UnknownJobKind) as unknown:
        services.job_enqueue(tenant=tenant, kind="no.such.kind")
    with pytest.raises(InvalidJobPayload) as invalid:
        services.job_enqueue(tenant=tenant, kind="diagnostics.sleep", payload={"seconds": -1})

    assert "kind" in unknown.value.details
    assert "seconds" in invalid.value.details["payload"]
    assert not Job.all_tenants.exists()


def test_jobs_count_against_the_daily_quota(django_capture_on_commit_callbacks):
    tenant = TenantFactory(plan=plan("free"), limit_overrides={"jobs_per_day": 2})
    for _ in range(2):
        enqueue(tenant, "diagnostics.echo", capture=django_capture_on_commit_callbacks)

    with pytest.raises(QuotaExceeded) as refused:
        services.job_enqueue(tenant=tenant, kind="diagnostics.echo")

    assert refused.value.details["resource"] == "jobs_per_day"
    assert Job.all_tenants.filter(tenant=tenant).count() == 2


# --- Claims -------------------------------------------------------------------------------------


def test_a_message_for_a_finished_or_cancelled_job_does_nothing(tenant, run):
    done = run(tenant, "tests.side_effect")
    waiting = services.job_enqueue(
        tenant=tenant, kind="diagnostics.echo", run_at=timezone.now() + timedelta(hours=1)
    ).job
    services.job_cancel(job=waiting)

    assert runner.run_job(done.pk, worker="again") == "skipped"
    assert runner.run_job(waiting.pk, worker="again") == "skipped"
    assert side_effects(done.pk) == 1
    assert Job.all_tenants.get(pk=done.pk).attempts == 1
    assert Job.all_tenants.get(pk=waiting.pk).status == "cancelled"


def test_a_job_not_yet_due_is_not_claimed(tenant):
    job = services.job_enqueue(
        tenant=tenant, kind="diagnostics.echo", run_at=timezone.now() + timedelta(minutes=5)
    ).job

    assert job.status == "scheduled"
    assert runner.run_job(job.pk, worker="early") == "skipped"
    assert dispatcher.dispatch_due() == 0
    assert dispatch_when_due(job)["published"] == 1
    assert Job.all_tenants.get(pk=job.pk).status == "succeeded"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_job_give_it_to_one_worker(tenant):
    job = services.job_enqueue(
        tenant=tenant, kind="diagnostics.echo", run_at=timezone.now() + timedelta(hours=1)
    ).job
    Job.all_tenants.filter(pk=job.pk).update(run_at=timezone.now())
    barrier = threading.Barrier(8, timeout=30)

    def claim(i: int) -> bool:
        try:
            barrier.wait()
            return runner.claim(job.pk, f"worker-{i}")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = Counter(pool.map(claim, range(8)))

    assert claims == Counter({True: 1, False: 7})
    assert Job.all_tenants.get(pk=job.pk).attempts == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_that_lost_its_claim_writes_nothing(tenant, run):
    """The handler's writes and the success mark share a transaction: both or neither."""
    job = run(tenant, "tests.steal_lease")

    assert job.status == "running" and job.worker == "someone-else"
    assert job.result is None
    assert side_effects(job.pk) == 0


# --- Failures and retries -----------------------------------------------------------------------


def test_a_failed_attempt_waits_in_the_table_and_runs_again_when_due(tenant, run):
    job = run(tenant, "diagnostics.fail", {"times": 1})

    assert (job.status, job.attempts) == ("scheduled", 1)
    assert "attempt 1 of 1 failing" in job.last_error
    assert job.run_at > timezone.now() and job.finished_at is None
    assert dispatcher.dispatch_due() == 0  # not due yet

    dispatch_when_due(job)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, {"attempts": 2})
    assert job.last_error == ""


def test_after_its_last_attempt_a_job_is_dead_and_kept(tenant, run):
    job = run(tenant, "diagnostics.fail", {"times": 10})
    for _ in range(5):
        job.refresh_from_db()
        if job.status != "scheduled":
            break
        dispatch_when_due(job)

    assert (job.status, job.attempts) == ("dead", 3)
    assert "attempt 3 of 10 failing" in job.last_error and job.finished_at


def test_an_error_the_kind_does_not_retry_fails_the_job_at_once(tenant, run):
    job = run(tenant, "tests.not_retried")

    assert (job.status, job.attempts) == ("failed", 1)
    assert "ValueError: a bug, not a blip" in job.last_error


def test_a_failed_attempts_writes_are_rolled_back(tenant, run):
    job = run(tenant, "tests.write_then_fail")
    dispatch_when_due(job)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 2)
    assert side_effects(job.pk) == 0


def test_backoff_grows_with_jitter_and_stops_at_its_ceiling():
    policy = RetryPolicy(backoff_seconds=10, backoff_max_seconds=60)
    for attempt, step in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(step / 2 <= delay <= step for delay in delays), (attempt, min(delays))
        assert len(set(delays)) > 1  # jittered


@pytest.mark.redis
def test_a_kinds_rate_per_second_holds_and_refused_runs_wait_uncounted(tenant, monkeypatch):
    """tests.rate_limited allows 2 runs a second, counted in the shared counter store."""
    monkeypatch.setattr(runner, "current_second", lambda: 1_000_000_007)
    jobs = [
        services.job_enqueue(tenant=tenant, kind="tests.rate_limited", run_at=LATER).job
        for _ in range(5)
    ]
    Job.all_tenants.update(run_at=timezone.now())

    dispatcher.dispatch_due()

    rows = Job.all_tenants.filter(pk__in=[job.pk for job in jobs])
    assert Counter(rows.values_list("status", flat=True)) == Counter(succeeded=2, scheduled=3)
    for job in rows.filter(status="scheduled"):
        assert (job.attempts, job.worker, job.started_at) == (0, "", None)
        assert job.run_at > timezone.now()

    monkeypatch.setattr(runner, "current_second", lambda: 1_000_000_008)  # the next second
    Job.all_tenants.filter(status="scheduled").update(run_at=timezone.now())
    dispatcher.dispatch_due()
    assert Counter(rows.values_list("status", flat=True)) == Counter(succeeded=4, scheduled=1)


# --- Retry, edit and cancel ---------------------------------------------------------------------


def test_a_dead_job_retried_runs_again_from_its_first_attempt(
    tenant, run, django_capture_on_commit_callbacks
):
    job = run(
        tenant,
        "diagnostics.fail",
        {"times": 1},
    )
    Job.all_tenants.filter(pk=job.pk).update(status="dead", finished_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(job=job, payload={"times": 0})

    job.refresh_from_db()
    assert (job.status, job.attempts, job.payload) == ("succeeded", 1, {"times": 0})


def test_only_finished_unsuccessful_jobs_are_retried_and_payload_edits_are_checked(tenant, run):
    done = run(tenant, "diagnostics.echo")
    dead = run(tenant, "diagnostics.fail", {"times": 1})
    Job.all_tenants.filter(pk=dead.pk).update(status="dead")

    with pytest.raises(JobNotRetryable):
        services.job_retry(job=done)
    with pytest.raises(InvalidJobPayload):
        services.job_retry(job=dead, payload={"times": "many"})
    assert Job.all_tenants.get(pk=dead.pk).status == "dead"


def test_a_job_that_started_cannot_be_cancelled(tenant, run):
    done = run(tenant, "diagnostics.echo")

    with pytest.raises(JobNotCancellable):
        services.job_cancel(job=done)


# --- Idempotency --------------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_job_made_with_it(tenant, run):
    first = services.job_enqueue(tenant=tenant, kind="diagnostics.echo", idempotency_key="k1")
    again = services.job_enqueue(tenant=tenant, kind="diagnostics.echo", idempotency_key="k1")
    elsewhere = services.job_enqueue(
        tenant=TenantFactory(), kind="diagnostics.echo", idempotency_key="k1"
    )

    assert (first.created, again.created, elsewhere.created) == (True, False, True)
    assert again.job.pk == first.job.pk != elsewhere.job.pk
    with pytest.raises(IdempotencyConflict):
        services.job_enqueue(
            tenant=tenant, kind="diagnostics.echo", payload={"message": 1}, idempotency_key="k1"
        )
    assert Job.all_tenants.filter(tenant=tenant).count() == 1


def test_a_unique_key_makes_one_job_per_window_whatever_the_payload(tenant):
    first = services.job_enqueue(
        tenant=tenant,
        kind="diagnostics.echo",
        payload={"message": 1},
        run_at=LATER,
        unique_key="nightly-report",
        unique_for=timedelta(hours=1),
    )
    again = services.job_enqueue(
        tenant=tenant,
        kind="diagnostics.echo",
        payload={"message": 2},
        run_at=LATER,
        unique_key="nightly-report",
        unique_for=timedelta(hours=1),
    )

    assert (first.created, again.created, again.job.pk) == (True, False, first.job.pk)
    assert Job.all_tenants.get().payload == {"message": 1}
    with pytest.raises(IdempotencyConflict):  # the same work cannot be another kind
        services.job_enqueue(
            tenant=tenant,
            kind="diagnostics.fail",
            payload={"times": 0},
            unique_key="nightly-report",
            unique_for=timedelta(hours=1),
        )


@pytest.mark.parametrize(("later_by", "jobs"), [(59, 1), (60, 2)])
def test_windows_are_aligned_on_the_epoch(tenant, monkeypatch, later_by, jobs):
    window_start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=1)
    for moment in (window_start, window_start + timedelta(seconds=later_by)):
        monkeypatch.setattr(timezone, "now", lambda moment=moment: moment)
        services.job_enqueue(
            tenant=tenant,
            kind="diagnostics.echo",
            run_at=window_start + timedelta(days=1),
            unique_key="k",
            unique_for=timedelta(minutes=1),
        )

    assert Job.all_tenants.filter(tenant=tenant).count() == jobs


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_with_one_key_make_one_job(tenant):
    barrier = threading.Barrier(8, timeout=30)

    def enqueue_once(i: int) -> tuple[int, bool]:
        try:
            barrier.wait()
            enqueued = services.job_enqueue(
                tenant=tenant,
                kind="diagnostics.echo",
                run_at=timezone.now() + timedelta(hours=1),
                idempotency_key="same",
            )
            return enqueued.job.pk, enqueued.created
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(enqueue_once, range(8)))

    assert len({pk for pk, _ in results}) == 1
    assert Counter(created for _, created in results) == Counter({True: 1, False: 7})
    assert Job.all_tenants.filter(tenant=tenant).count() == 1


# --- Rescues ------------------------------------------------------------------------------------


def _running_with_expired_lease(tenant, rescues: int = 0) -> Job:
    job = services.job_enqueue(
        tenant=tenant, kind="diagnostics.echo", run_at=timezone.now() + timedelta(hours=1)
    ).job
    Job.all_tenants.filter(pk=job.pk).update(
        status="running",
        worker="gone:1",
        attempts=1,
        rescues=rescues,
        run_at=timezone.now() - timedelta(minutes=1),
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    return job


def test_a_job_whose_worker_is_gone_is_rescued_and_runs(tenant, settings):
    job = _running_with_expired_lease(tenant)

    counts = dispatcher.dispatch()

    job.refresh_from_db()
    assert counts == {"requeued": 1, "dead": 0, "published": 1}
    assert (job.status, job.rescues, job.attempts) == ("succeeded", 1, 2)


def test_a_job_rescued_too_often_is_dead_with_the_reason(tenant, settings):
    settings.JOB_MAX_RESCUES = 3
    job = _running_with_expired_lease(tenant, rescues=3)

    assert dispatcher.rescue_expired() == {"requeued": 0, "dead": 1}

    job.refresh_from_db()
    assert (job.status, job.rescues) == ("dead", 4)
    assert "quarantined after 4 rescues" in job.last_error and "gone:1" in job.last_error


def test_a_live_lease_is_not_rescued(tenant):
    job = _running_with_expired_lease(tenant)
    Job.all_tenants.filter(pk=job.pk).update(lease_until=timezone.now() + timedelta(minutes=1))

    assert dispatcher.rescue_expired() == {"requeued": 0, "dead": 0}
    assert Job.all_tenants.get(pk=job.pk).status == "running"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_while_the_job_runs(tenant, settings):
    """A job runs three leases long; a rescuer looking after two leases finds it alive."""
    settings.JOB_LEASE_SECONDS = 0.4
    job = services.job_enqueue(
        tenant=tenant,
        kind="diagnostics.sleep",
        payload={"seconds": 1.2},
        run_at=timezone.now() + timedelta(hours=1),
    ).job
    Job.all_tenants.filter(pk=job.pk).update(run_at=timezone.now())
    started = threading.Event()

    def work() -> str:
        try:
            started.set()
            return runner.run_job(job.pk, worker="busy")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        outcome = pool.submit(work)
        started.wait()
        rescued = []
        while not outcome.done():
            rescued.append(dispatcher.rescue_expired())
            threading.Event().wait(0.1)

    assert outcome.result() == "succeeded"
    assert rescued and all(counts == {"requeued": 0, "dead": 0} for counts in rescued)
    assert Job.all_tenants.get(pk=job.pk).rescues == 0


# --- Configuration ------------------------------------------------------------------------------


def test_the_visibility_timeout_must_outlast_a_lease(settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 30}
    settings.JOB_LEASE_SECONDS = 60

    assert "queues.E001" in [message.id for message in run_checks()]


def test_a_kind_on_an_unknown_queue_is_refused_at_registration():
    with pytest.raises(ValueError, match="not in JOB_QUEUES"):
        job_kind("tests.nowhere", queue="no-such-queue")(lambda payload, context: None)

    with pytest.raises(UnknownJobKind):
        get_kind("tests.nowhere")
