"""Staff ops API for the read replicas: ``GET /api/ops/replicas``."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.replicas import monitor


class DatabaseStateSerializer(serializers.Serializer):
    alias = serializers.CharField()
    host = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["primary", "healthy", "lagging", "promoted", "down", "unknown"]
    )
    lag_seconds = serializers.FloatField(allow_null=True)
    checked_at = serializers.FloatField(allow_null=True, help_text="Unix time of the last check.")
    error = serializers.CharField(allow_blank=True)
    reads = serializers.IntegerField(help_text="Reads routed here by this process.")
    read_share = serializers.FloatField(help_text="Share of this process's routed reads, 0 to 1.")


class ReplicasSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    max_lag_seconds = serializers.FloatField()
    pin_seconds = serializers.FloatField()
    databases = DatabaseStateSerializer(many=True)


class ReplicasView(APIView):
    """Each replica's state, lag and share of reads, as this process's monitor sees them."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=ReplicasSerializer)
    def get(self, request: Request) -> Response:
        if settings.READ_REPLICA_ALIASES:
            monitor.ensure_running()
        return Response(
            ReplicasSerializer(
                {
                    "enabled": bool(settings.READ_REPLICA_ALIASES),
                    "max_lag_seconds": settings.REPLICA_MAX_LAG_SECONDS,
                    "pin_seconds": settings.REPLICA_PIN_SECONDS,
                    "databases": monitor.snapshot(),
                }
            ).data
        )
