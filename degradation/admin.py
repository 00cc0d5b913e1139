"""Admin: the breakers page is the ``BreakerEvent`` changelist with the live breakers on top.

Breakers are not a table, so their live state (from the shared store) is listed above the event
history, each with force-open, force-close and reset buttons that POST to ``breakers/<name>/<action>/``
(staff with the change permission on ``BreakerEvent``; recorded as events with the user).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST
from waffle.admin import FlagAdmin as WaffleFlagAdmin

from degradation.breakers import BREAKER_NAMES, all_breakers, breaker, breaker_counters
from degradation.models import BreakerEvent, Flag

ACTIONS = {"open": "Force open", "close": "Force close", "reset": "Reset"}


@admin.register(BreakerEvent)
class BreakerEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "breaker", "from_state", "to_state", "actor_label", "reason")
    list_filter = ("breaker", "to_state")
    search_fields = ("reason",)
    list_select_related = ("actor",)
    readonly_fields = [f.name for f in BreakerEvent._meta.fields]
    change_list_template = "admin/degradation/breakerevent/change_list.html"

    @admin.display(description="actor")
    def actor_label(self, event: BreakerEvent) -> str:
        return event.actor_label

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "breakers/<str:name>/<str:action>/",
                self.admin_site.admin_view(require_POST(self.breaker_action)),
                name="degradation_breaker_action",
            ),
            *super().get_urls(),
        ]

    def breaker_action(self, request, name: str, action: str):
        if not (request.user.is_staff and super().has_change_permission(request)):
            raise PermissionDenied
        if name not in BREAKER_NAMES or action not in ACTIONS:
            messages.error(request, f"Unknown breaker or action: {name} {action}.")
        else:
            state = breaker(name).force(action, actor=request.user)
            messages.success(request, f"{ACTIONS[action]}: {name} is now {state}.")
        return HttpResponseRedirect(reverse("admin:degradation_breakerevent_changelist"))

    def changelist_view(self, request, extra_context=None):
        counters = breaker_counters()
        rows = []
        for item in all_breakers():
            info = item.describe()
            changed = info["last_change"]
            rows.append(
                {
                    **info,
                    "last_change": datetime.fromtimestamp(changed, UTC) if changed else None,
                    "counters": counters.get(item.name, {}),
                    "actions": [
                        (label, reverse("admin:degradation_breaker_action", args=[item.name, a]))
                        for a, label in ACTIONS.items()
                    ],
                }
            )
        context = {**(extra_context or {}), "breakers": rows, "title": "Circuit breakers"}
        return super().changelist_view(request, extra_context=context)


@admin.register(Flag)
class FlagAdmin(WaffleFlagAdmin):
    """waffle's flag admin (its actions flush the cache per flag) plus tenant and plan targeting.

    Tenants can be 100,000 rows: an autocomplete (``TenantAdmin.search_fields``), never a select.
    """

    autocomplete_fields = ("tenants", "plans")
