"""``/api/degradation/health`` (public summary) and ``/api/degradation/circuits`` (staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from degradation.breakers import BREAKER_NAMES, OPEN, all_breakers, breaker, breaker_counters
from degradation.flags import flags_active_for_tenant
from degradation.models import Flag


class CircuitSerializer(serializers.Serializer):
    name = serializers.CharField()
    state = serializers.ChoiceField(choices=["closed", "open", "half-open"])
    forced = serializers.BooleanField(help_text="Forced open by staff: no automatic trial call.")
    failure_count = serializers.IntegerField(help_text="Consecutive failures now.")
    failure_threshold = serializers.IntegerField()
    reset_timeout_seconds = serializers.FloatField()
    retry_after_seconds = serializers.FloatField()
    last_change = serializers.FloatField(allow_null=True, help_text="Unix time of the last change.")
    shared_state = serializers.BooleanField(
        help_text="State read from Redis (False: this process)."
    )
    counters = serializers.DictField(child=serializers.IntegerField(), required=False)


class CircuitActionSerializer(serializers.Serializer):
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=["open", "close", "reset"])


def _circuits() -> list[dict]:
    counters = breaker_counters()
    return [{**b.describe(), "counters": counters.get(b.name, {})} for b in all_breakers()]


class DegradationHealthView(APIView):
    """``ok`` or ``degraded`` with the open breakers; staff also get every breaker's details."""

    permission_classes = [AllowAny]

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        circuits = _circuits()
        open_names = [c["name"] for c in circuits if c["state"] == OPEN]
        body = {"status": "degraded" if open_names else "ok", "open": open_names}
        if request.user and request.user.is_staff:
            body["circuits"] = circuits
        return Response(body)


class CircuitsView(APIView):
    """Every breaker (GET); force open, force close or reset one (POST), recorded with the user."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=CircuitSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response({"circuits": CircuitSerializer(_circuits(), many=True).data})

    @extend_schema(request=CircuitActionSerializer, responses=CircuitSerializer)
    def post(self, request: Request) -> Response:
        action = CircuitActionSerializer(data=request.data)
        action.is_valid(raise_exception=True)
        name = action.validated_data["name"]
        if name not in BREAKER_NAMES:
            error = NotFound(f"No circuit breaker named {name!r}.")
            error.details = {"name": name, "known": list(BREAKER_NAMES)}
            raise error
        target = breaker(name)
        target.force(action.validated_data["action"], actor=request.user)
        return Response(
            CircuitSerializer({**target.describe(), "counters": breaker_counters()[name]}).data
        )


class ActiveFlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flag
        fields = ["name"]


class ActiveFlagsView(ListAPIView):
    """``GET /api/v1/flags/``: the flags on for the calling tenant (tenant rules only, no user).

    Invariant (isolation): the list is computed for ``request.tenant`` alone and shows only flag
    names: never which tenants or plans a flag targets, its percentage, or its staff note (notes
    may name customers). Default tenant permissions; cursor pagination on ``-id``.
    """

    serializer_class = ActiveFlagSerializer

    def get_queryset(self):
        ids = flags_active_for_tenant(self.request.tenant)
        return Flag.objects.filter(pk__in=ids).only("id", "name")
