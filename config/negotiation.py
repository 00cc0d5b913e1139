"""The API's content negotiation (``DEFAULT_CONTENT_NEGOTIATION_CLASS``).

A module of its own: DRF reads the setting while ``rest_framework.views`` is being imported, so
this class must not live in a module that imports DRF's views (``config.api`` does).
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, with a shortcut for what nearly every API client sends.

    No ``Accept`` header, ``*/*`` or exactly the first renderer's media type, and no ``?format=``:
    the answer is the one DRF's own rules give (the first renderer, with its media type), decided
    without parsing the header. Anything else is negotiated by DRF as before (406 included).
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        first = renderers[0] if renderers else None
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if (
            first is not None
            and format_suffix is None
            and accept in ("*/*", first.media_type)
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
