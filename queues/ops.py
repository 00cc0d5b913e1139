"""Staff ops API of the job queues, on the seed's paths: ``/api/queues/stats`` (staff) and
``/api/queues/health`` (``ok``/``degraded`` for anyone, the figures for staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from queues.selectors import queue_stats


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    broker_depth = serializers.IntegerField(
        allow_null=True, help_text="Messages on the broker; empty: no broker, or it is down."
    )
    queued = serializers.IntegerField()
    scheduled = serializers.IntegerField()
    running = serializers.IntegerField()
    oldest_waiting_seconds = serializers.FloatField(allow_null=True)
    succeeded_last_hour = serializers.IntegerField()
    failed_last_hour = serializers.IntegerField(help_text="Failed or dead in the last hour.")
    failure_rate = serializers.FloatField(allow_null=True)


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    queues = serializers.CharField()
    concurrency = serializers.IntegerField()
    last_seen = serializers.DateTimeField()
    alive = serializers.BooleanField()
    running = serializers.SerializerMethodField()

    def get_running(self, worker) -> list[dict]:
        return [{"job": job_id, "kind": kind} for job_id, kind in worker.running]


class QueueStatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"], source="health")
    broker_up = serializers.BooleanField(allow_null=True)
    workers_alive = serializers.IntegerField()
    queues = QueueSerializer(many=True)
    workers = WorkerSerializer(many=True)


class QueueStatsView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=QueueStatsSerializer)
    def get(self, request):
        return Response(QueueStatsSerializer(queue_stats()).data)


class QueueHealthView(APIView):
    """``ok``, or ``degraded`` when the broker is down or no worker is alive (jobs wait)."""

    permission_classes = [AllowAny]

    @extend_schema(responses=dict)
    def get(self, request):
        stats = queue_stats()
        body = {"status": stats.health}
        if request.user and request.user.is_staff:
            body.update(QueueStatsSerializer(stats).data)
        return Response(body)
