"""Jobs API (``/api/v1/jobs/``): create a job of a public kind, list, get, cancel.

Every queryset goes through ``Job.objects`` (the tenant's rows only). ``POST`` takes an
``Idempotency-Key`` header: the same key with the same body returns the job made the first time
(200), with another body a 409.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from queues import services
from queues.exceptions import UnknownJobKind
from queues.kinds import get_kind, registered_kinds
from queues.models import Job
from queues.serializers import (
    IDEMPOTENCY_KEY_PATTERN,
    JobCreateSerializer,
    JobKindSerializer,
    JobSerializer,
    kind_request_serializer,
)

_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=IDEMPOTENCY_KEY_PATTERN,
    description="Send the same key again (after a timeout) to get the same job, not a second.",
)
STATUSES = [choice for choice, _ in Job.Status.choices]


def _filters(queryset, params):
    wanted_status, wanted_kind = params.get("status"), params.get("kind")
    if wanted_status is not None:
        if wanted_status not in STATUSES:
            raise ValidationError({"status": [f"Use one of: {', '.join(STATUSES)}."]})
        queryset = queryset.filter(status=wanted_status)
    if wanted_kind is not None:
        queryset = queryset.filter(kind=wanted_kind)
    return queryset


def _create_request():
    """The create body as a ``oneOf`` on ``kind``, one branch per public kind registered when the
    URLs load (what the schema can promise); without any, the plain envelope."""
    kinds = [kind for kind in registered_kinds() if kind.public]
    if not kinds:
        return JobCreateSerializer
    return PolymorphicProxySerializer(
        component_name="JobCreate",
        serializers={kind.name: kind_request_serializer(kind) for kind in kinds},
        resource_type_field_name="kind",
    )


def _public_kind(name: str):
    kind = get_kind(name)
    if not kind.public:
        raise UnknownJobKind(details={"kind": [f"Unknown kind {name!r}."]})
    return kind


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", enum=STATUSES, required=False),
            OpenApiParameter("kind", str, required=False),
        ]
    )
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The tenant's jobs. A job is the truth about its work: see docs/JOBS.md."""

    serializer_class = JobSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.all_tenants.none()
        queryset = Job.objects.all()
        if self.action == "list":
            return _filters(queryset, self.request.query_params)
        return queryset

    @extend_schema(
        request=_create_request(),
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: JobSerializer,
            200: OpenApiResponse(JobSerializer, description="The job this Idempotency-Key made."),
            409: OpenApiResponse(description="idempotency_conflict: the key made another job."),
        },
    )
    def create(self, request):
        serializer = JobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise ValidationError(
                {"Idempotency-Key": ["1 to 200 printable ASCII characters, not starting unique:."]}
            )
        data = serializer.validated_data
        _public_kind(data["kind"])
        enqueued = services.job_enqueue(
            tenant=request.tenant,
            kind=data["kind"],
            payload=data["payload"],
            run_at=data["run_at"],
            idempotency_key=key,
        )
        job = Job.objects.get(pk=enqueued.job.pk)  # as it is after the commit and its publish
        answer = status.HTTP_202_ACCEPTED if enqueued.created else status.HTTP_200_OK
        return Response(JobSerializer(job).data, status=answer)

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: OpenApiResponse(description="job_not_cancellable: it ran or is running."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(JobSerializer(services.job_cancel(job=self.get_object())).data)

    @extend_schema(responses=JobKindSerializer(many=True))
    @action(detail=False, methods=["get"], pagination_class=None)
    def kinds(self, request):
        """The kinds a job can be made of through this API."""
        kinds = [kind for kind in registered_kinds() if kind.public]
        rows = [
            {"name": k.name, "queue": k.queue, "max_attempts": k.retry.max_attempts} for k in kinds
        ]
        return Response(JobKindSerializer(rows, many=True).data)
