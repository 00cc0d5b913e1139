"""Feature flags for tenants: ``flag_is_active_for_tenant``, ``flag_required``, ``FlagRequired``.

Built on django-waffle with the custom model ``degradation.Flag`` (``WAFFLE_FLAG_MODEL``); the
targeting rules are documented on that model and in docs/DEGRADATION.md. Flags are read through
waffle's cache (the ``flags`` alias, global keys), so a warm check costs no SQL query.

A flag name that does not exist answers off and is logged once per process per name; it never
raises, so a typo or a deleted flag hides a feature instead of breaking a page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from waffle import get_waffle_flag_model

from tenants.context import current_tenant

if TYPE_CHECKING:
    from tenants.models import Tenant

#: Answers a view gives while its flag is off: 404 hides the feature, 403 admits it exists.
FLAG_OFF_STATUSES = (403, 404)


def flag_is_active_for_tenant(name: str, tenant: Tenant | None = None) -> bool:
    """Whether the flag is on for the tenant (default: the current scope's); users play no part."""
    return get_waffle_flag_model().get(name).is_active_for_tenant(tenant or current_tenant())


def flags_active_for_tenant(tenant: Tenant) -> list[int]:
    """The ids of the flags on for the tenant, from waffle's cached list of every flag."""
    flags = get_waffle_flag_model().get_all()
    return [flag.pk for flag in flags if flag.is_active_for_tenant(tenant)]


def flag_is_active_for_request(request: HttpRequest | Request, name: str) -> bool:
    """waffle's answer for the request: its tenant (or the scope's), plus waffle's user rules."""
    return bool(get_waffle_flag_model().get(name).is_active(request))


def _check_status(status: int) -> None:
    if status not in FLAG_OFF_STATUSES:
        raise ValueError(f"A flag that is off answers 403 or 404, not {status}.")


def _refuse(name: str, status: int):
    if status == 404:
        return NotFound()
    error = PermissionDenied(f"The feature {name!r} is not enabled for this tenant.")
    error.details = {"flag": name}
    return error


def flag_required(name: str, status: int = 404) -> Callable:
    """Run the view only while the flag is on for the request; otherwise answer ``status``.

    Decorates a Django function view ``view(request, ...)``, a DRF function view or a view method
    ``get(self, request, ...)`` (on DRF methods it runs after authentication and permissions).
    """
    _check_status(status)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            request = args[0] if isinstance(args[0], HttpRequest | Request) else args[1]
            if flag_is_active_for_request(request, name):
                return view(*args, **kwargs)
            if isinstance(request, Request):
                raise _refuse(name, status)
            if status == 404:
                raise Http404
            raise DjangoPermissionDenied

        return wrapper

    return decorator


def FlagRequired(name: str, status: int = 404) -> type[BasePermission]:
    """A DRF permission class for ``permission_classes``: the view runs only while the flag is on.

    ``permission_classes = [IsTenantMember, FlagRequired("new-reports")]``. A flag that is off
    answers ``404 not_found`` (default: the feature stays hidden) or ``403 permission_denied``.
    """
    _check_status(status)

    class _FlagRequired(BasePermission):
        def has_permission(self, request, view) -> bool:
            if flag_is_active_for_request(request, name):
                return True
            raise _refuse(name, status)

    _FlagRequired.__name__ = _FlagRequired.__qualname__ = f"FlagRequired_{name}"
    return _FlagRequired
