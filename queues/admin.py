"""The queue console (Django Admin): jobs, dead letters and the figures of every queue.

Made to stay fast with a million job rows: the changelist never counts the whole table (a capped
count, ``show_full_result_count`` off), its filters are on indexed columns (status, queue, kind,
the tenant by slug, dates), and the tenant is shown by a join, never a per-row query. Actions go
through ``queues.services`` one job at a time (the row lock, the state rules) and are recorded in
Django's admin log with the staff member.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from rest_framework.exceptions import ValidationError as DRFValidationError

from queues import services
from queues.exceptions import QueuesError
from queues.kinds import get_kind, registered_kinds
from queues.models import Job
from queues.selectors import queue_stats
from tenants.admin import CappedCountPaginator
from tenants.context import tenant_scope


class KindFilter(admin.SimpleListFilter):
    """The registered kinds (no ``DISTINCT`` over the table to find them)."""

    title = parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(kind.name, kind.name) for kind in registered_kinds()]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


#: The chart's bar size, in pixels (an inline SVG: no script, no asset from elsewhere).
BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 12, 3, 30


def _bars(timeline, peak: int) -> list[dict]:
    """SVG rectangles of one queue's last hour: succeeded at the bottom, failed stacked on top,
    heights relative to the busiest bucket of any queue."""
    bars = []
    for i, (start, ok, bad) in enumerate(timeline):
        ok_h, bad_h = ok * CHART_HEIGHT // peak, bad * CHART_HEIGHT // peak
        bars.append(
            {
                "x": i * (BAR_WIDTH + BAR_GAP),
                "ok_y": CHART_HEIGHT - ok_h,
                "ok_h": ok_h,
                "bad_y": CHART_HEIGHT - ok_h - bad_h,
                "bad_h": bad_h,
                "title": f"{start:%H:%M}: {ok} succeeded, {bad} failed or dead",
            }
        )
    return bars


class JobAdminForm(forms.ModelForm):
    """Only the payload of a failed, dead or cancelled job is editable; it is checked by its
    kind's payload serializer here, so a bad edit is a form error, not a failed retry."""

    class Meta:
        model = Job
        fields = ("payload",)

    def clean_payload(self):
        payload = self.cleaned_data["payload"]
        try:
            return get_kind(self.instance.kind).clean_payload(payload)
        except (DRFValidationError, QueuesError) as error:
            raise forms.ValidationError(f"Not a payload of {self.instance.kind}: {error}") from None

    def full_clean(self) -> None:
        """Model validation runs in the job's tenant scope: its constraint checks query the
        default manager, the tenant-scoped one, which refuses to run outside a scope."""
        with tenant_scope(self.instance.tenant):
            super().full_clean()


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    form = JobAdminForm
    list_display = (
        "id",
        "tenant",
        "kind",
        "status",
        "queue",
        "attempts",
        "rescues",
        "run_at",
        "finished_at",
        "error",
    )
    list_filter = ("status", "queue", KindFilter, "created_at", "finished_at")
    list_select_related = ("tenant",)
    search_fields = ("=tenant__slug", "=id", "=idempotency_key")
    search_help_text = "A tenant's slug, a job id or an idempotency key (exact)."
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)
    actions = ("retry_jobs", "cancel_jobs", "discard_jobs")
    readonly_fields = (
        "tenant",
        "kind",
        "queue",
        "status",
        "attempts",
        "max_attempts",
        "rescues",
        "run_at",
        "lease_until",
        "worker",
        "last_error",
        "result",
        "idempotency_key",
        "created_at",
        "published_at",
        "started_at",
        "finished_at",
    )
    fields = ("payload", *readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Job.all_tenants.select_related("tenant")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are made by the code and the API (job_enqueue)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # "discard" removes dead letters; nothing else is deleted by hand

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is not None and obj.status in services.RETRYABLE:
            return self.readonly_fields  # the payload can be edited, and saving retries
        return ("payload", *self.readonly_fields)

    @admin.display(description="Last error")
    def error(self, job: Job) -> str:
        return (job.last_error.splitlines() or [""])[-1][:120]

    def save_model(self, request, obj, form, change) -> None:
        """Saving a failed, dead or cancelled job retries it with the payload as edited."""
        try:
            services.job_retry(job=obj, payload=form.cleaned_data["payload"])
        except QueuesError as error:
            self.message_user(request, f"Job {obj.pk} not retried: {error.detail}", messages.ERROR)
            return
        self.message_user(request, f"Job {obj.pk} queued again with the edited payload.")

    def _each(self, request, queryset, act, verb: str) -> None:
        done, refused = 0, 0
        for job in queryset.select_related("tenant"):
            try:
                act(job)
            except QueuesError:
                refused += 1
                continue
            self.log_change(request, job, f"{verb} from the queue console")
            done += 1
        self.message_user(request, f"{done} job(s) {verb.lower()}; {refused} not in a state to.")

    @admin.action(description="Retry selected jobs (failed, dead or cancelled)")
    def retry_jobs(self, request, queryset) -> None:
        self._each(request, queryset, lambda job: services.job_retry(job=job), "Retried")

    @admin.action(description="Cancel selected jobs (queued or scheduled)")
    def cancel_jobs(self, request, queryset) -> None:
        self._each(request, queryset, lambda job: services.job_cancel(job=job), "Cancelled")

    @admin.action(description="Discard selected dead letters (failed or dead: deleted)")
    def discard_jobs(self, request, queryset) -> None:
        discarded = []
        for job in queryset.filter(status__in=[Job.Status.FAILED, Job.Status.DEAD]):
            try:
                services.job_discard(job=job)
            except QueuesError:
                continue  # retried meanwhile
            discarded.append(job)
        if discarded:
            self.log_deletions(request, discarded)
        self.message_user(request, f"{len(discarded)} dead letter(s) discarded.")

    def get_urls(self):
        console = self.admin_site.admin_view(self.console_view)
        return [path("console/", console, name="queues_job_console"), *super().get_urls()]

    def console_view(self, request: HttpRequest) -> TemplateResponse:
        stats = queue_stats()
        peak = max([ok + bad for q in stats.queues for _, ok, bad in q.timeline] or [0]) or 1
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue console",
            "stats": stats,
            "rows": [(queue, _bars(queue.timeline, peak)) for queue in stats.queues],
            "jobs_url": reverse("admin:queues_job_changelist"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/queues/console.html", context)

    def changelist_view(self, request, extra_context=None):
        extra = {"console_url": reverse("admin:queues_job_console"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)
