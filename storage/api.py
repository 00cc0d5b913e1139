"""Files API (``/api/v1/files/``): upload, list, metadata, download (a signed link), delete.

Every queryset goes through ``StoredFile.objects`` (the tenant's rows) and hides deleted files.
An upload is multipart (one file, field ``file``) or a raw body (``Content-Type:
application/octet-stream``, ``?filename=``); either way it streams to a temporary file through
``storage.uploads``, refused the moment it passes what the tenant may still store.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import FileResponse, HttpResponseRedirect
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FileUploadParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from storage.backends import backend_named, guarded
from storage.links import attachment_disposition, download_url, signed_file
from storage.models import StoredFile, of_type
from storage.services import file_delete, file_store
from storage.uploads import upload_handlers
from tenants.exceptions import FileTooLarge, TenantsError
from tenants.limits.quotas import exceeded_error, quota_usage
from tenants.limits.registry import MAX_FILE_BYTES, STORAGE_BYTES


class FileSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="original_name", read_only=True)

    class Meta:
        model = StoredFile
        fields = ["id", "name", "size", "content_type", "sha256", "created_at"]
        read_only_fields = fields


class RawFileParser(FileUploadParser):
    """A raw body; its file name from ``?filename=`` (DRF's documented ``get_filename`` hook)."""

    media_type = "application/octet-stream"

    def get_filename(self, stream, media_type, parser_context):
        return raw_filename(parser_context["request"])


def raw_filename(request) -> str:
    return request.query_params.get("filename") or "upload"


class LinkExpired(TenantsError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "link_expired"
    default_detail = "This download link has expired. Ask the API for a new one."


def _allowance(tenant) -> tuple[int, TenantsError]:
    """How many bytes this upload may have, and the error past them: the plan's file size, or
    what is left of its storage, whichever is smaller (and never past FILES_MAX_UPLOAD_BYTES)."""
    limits = tenant.limits()
    allowance, refusal = (
        settings.FILES_MAX_UPLOAD_BYTES,
        FileTooLarge(details={"max_bytes": settings.FILES_MAX_UPLOAD_BYTES}),
    )
    if (max_file := limits[MAX_FILE_BYTES]) is not None and max_file < allowance:
        allowance = max_file
        refusal = exceeded_error(tenant, MAX_FILE_BYTES, max_file, 0, max_file + 1)
    if (storage_limit := limits[STORAGE_BYTES]) is not None:
        used = quota_usage(tenant, STORAGE_BYTES)
        left = max(0, storage_limit - used)
        if left < allowance:
            allowance = left
            refusal = exceeded_error(tenant, STORAGE_BYTES, storage_limit, used, left + 1)
    return allowance, refusal


def _filtered(queryset, params):
    if wanted := params.get("type"):  # "image/png", or a family: "image/"
        queryset = queryset.filter(of_type(wanted))
    for name, lookup in (
        ("created_after", "created_at__gte"),
        ("created_before", "created_at__lt"),
    ):
        if (raw := params.get(name)) is not None:
            queryset = queryset.filter(**{lookup: _moment(name, raw)})
    return queryset


def _moment(name: str, raw: str) -> datetime:
    """An ISO 8601 moment in UTC (a naive one is UTC): Python takes offsets PostgreSQL refuses
    (``+20:30``), so the offset is applied here; a moment outside the calendar is a 400."""
    try:
        moment = parse_datetime(raw)
        if moment is not None:
            aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return aware.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise ValidationError({name: ["An ISO 8601 date and time."]})


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("type", str, description="A type (image/png) or a family (image/)."),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="ISO 8601."),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="ISO 8601."),
        ]
    )
)
class FileViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = FileSerializer
    lookup_value_regex = r"[0-9]{1,18}"
    parser_classes = [MultiPartParser, RawFileParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StoredFile.all_tenants.none()
        queryset = StoredFile.objects.filter(deleted_at__isnull=True)
        if self.action == "list":
            return _filtered(queryset, self.request.query_params)
        return queryset

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
            "application/octet-stream": {"type": "string", "format": "binary"},
        },
        parameters=[OpenApiParameter("filename", str, description="For a raw body.")],
        responses={201: FileSerializer},
    )
    def create(self, request):
        allowance, refusal = _allowance(request.tenant)
        request.upload_handlers = upload_handlers(request, allowance=allowance, refusal=refusal)
        counter = request.upload_handlers[0]
        upload = request.data.get("file")
        try:
            if upload is None and request.content_type == RawFileParser.media_type:
                # an empty raw body is an empty file
                upload = SimpleUploadedFile(raw_filename(request), b"")
            elif upload is None or counter.files != 1:
                raise ValidationError(
                    {"file": ["Send one file: multipart field `file`, or a raw body."]}
                )
            upload.seek(0)
            stored = file_store(
                tenant=request.tenant,
                source=upload,
                name=upload.name,
                size=counter.size,
                sha256=counter.sha256,
                head=counter.head,
                uploaded_by=request.user,
                uploaded_by_key=request.api_key,
            )
        finally:
            for received in request.FILES.values():
                received.close()  # a temporary file is deleted when closed
        return Response(FileSerializer(stored).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={302: OpenApiResponse(description="To a signed, short-lived link.")})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        response = HttpResponseRedirect(download_url(self.get_object()))
        response["Cache-Control"] = "no-store, private"
        return response

    def perform_destroy(self, stored: StoredFile) -> None:
        file_delete(stored=stored)


class SignedDownloadView(APIView):
    """A local file's bytes through its signed link: no key needed, that one file only, until the
    link expires. Always an attachment with the detected type, never rendered by the browser."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: OpenApiResponse(description="The file, as an attachment.")})
    def get(self, request, token: str):
        try:
            stored = signed_file(token)
        except signing.SignatureExpired:
            raise LinkExpired() from None
        if stored is None:
            raise NotFound()
        response = FileResponse(
            guarded(backend_named(stored.storage).open, stored.key, "rb"),
            content_type=stored.content_type,
        )
        response["Content-Disposition"] = attachment_disposition(stored)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        response["Cache-Control"] = "private, no-store"
        return response
