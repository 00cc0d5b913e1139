"""The admin's sign-in page, throttled: password guessing gets 429, and the lockout clears itself.

Sign-in attempts (POSTs) are counted by django-ratelimit's public ``get_usage`` (through
``tenants.limits.ratelimits.attempts_over_budget``, as failed API keys are), per client
address (``ip``: ``REMOTE_ADDR`` or ``RATELIMIT_IP_META_KEY``) and per username tried, in windows
of a minute: past ``ADMIN_LOGIN_ATTEMPTS_PER_MINUTE`` on either, the attempt is refused with 429
and ``Retry-After`` until the window ends, without checking the password. Showing the page is
never limited. The counters are the rate limits' (``RATELIMIT_USE_CACHE``): with them down,
``RATELIMIT_FAIL_OPEN`` decides, as for the API (fail-closed answers 503).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from tenants.exceptions import RateLimitUnavailable
from tenants.limits.ratelimits import attempts_over_budget

_COUNTERS = [("admin-login", "ip"), ("admin-login-user", "post:username")]


def _refused(status: int, message: str, wait: int) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(max(wait, 1))
    return response


def admin_login(request: HttpRequest, extra_context=None):
    """``admin.site.login`` behind the attempt limits (see the module docstring)."""
    if request.method == "POST":
        try:
            wait = attempts_over_budget(
                request, _COUNTERS, settings.ADMIN_LOGIN_ATTEMPTS_PER_MINUTE
            )
        except RateLimitUnavailable as error:
            return _refused(
                503, "Sign-in is unavailable for a moment. Try again shortly.", error.wait
            )
        if wait is not None:
            return _refused(429, "Too many sign-in attempts. Wait a minute and try again.", wait)
    return admin.site.login(request, extra_context)
