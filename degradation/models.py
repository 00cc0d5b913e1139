from __future__ import annotations

import hashlib
import logging
import threading

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.http import HttpRequest
from waffle.models import CACHE_EMPTY, AbstractUserFlag
from waffle.utils import get_cache, keyfmt

from tenants.context import current_tenant

logger = logging.getLogger(__name__)


class BreakerEvent(models.Model):
    """One state change of a circuit breaker. Global (breakers are platform-wide, not per tenant)."""

    id = models.BigAutoField(primary_key=True)
    breaker = models.CharField(max_length=64, db_index=True)
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=255, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff user who forced it; empty when the system changed it.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["breaker", "-id"], name="degradation_breaker_recent")]

    def __str__(self) -> str:
        return f"{self.breaker}: {self.from_state} -> {self.to_state}"

    @property
    def actor_label(self) -> str:
        return self.actor.get_username() if self.actor else "system"


_missing_flags_logged: set[str] = set()
_missing_flags_lock = threading.Lock()


def log_missing_flag_once(name: str) -> None:
    """One warning per process per unknown flag name: a typo is visible but cannot flood the log."""
    with _missing_flags_lock:
        if name in _missing_flags_logged:
            return
        _missing_flags_logged.add(name)
    logger.warning("Feature flag %r does not exist; it answers off.", name)


def tenant_bucket(flag_name: str, tenant_id: int) -> int:
    """The tenant's bucket (0-999) for a flag: SHA-256 of name and id, the same in every process."""
    digest = hashlib.sha256(f"{flag_name}:{tenant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1000


class Flag(AbstractUserFlag):
    """waffle's flag, targeted at tenants and plans as well as users and groups.

    For a tenant (``is_active_for_tenant``): ``everyone`` Yes/No decides alone; otherwise the flag
    is on when the tenant is listed, its plan is listed, or its bucket (``tenant_bucket``) falls
    under ``percent`` (one decimal: 30.0 means buckets 0-299). The percentage is per tenant, not per
    browser: the same tenant always gets the same answer, in every process, without a cookie.
    For a request (waffle's ``flag_is_active``, our decorator and permission) waffle's own rules
    for users, groups, staff, superusers and languages still apply, and the tenant rules are added.
    Flags are global rows; the tenants they target are never shown to tenants.
    """

    FLAG_TENANTS_CACHE_KEY = "flag:%s:tenants"
    FLAG_PLANS_CACHE_KEY = "flag:%s:plans"

    tenants = models.ManyToManyField(
        "tenants.Tenant",
        blank=True,
        related_name="+",
        help_text="Activate this flag for these tenants.",
    )
    plans = models.ManyToManyField(
        "tenants.Plan",
        blank=True,
        related_name="+",
        help_text="Activate this flag for every tenant on these plans.",
    )

    class Meta(AbstractUserFlag.Meta):
        verbose_name = "Flag"
        verbose_name_plural = "Flags"

    def get_flush_keys(self, flush_keys: list[str] | None = None) -> list[str]:
        flush_keys = super().get_flush_keys(flush_keys)
        flush_keys.extend(
            [
                keyfmt(self.FLAG_TENANTS_CACHE_KEY, self.name),
                keyfmt(self.FLAG_PLANS_CACHE_KEY, self.name),
            ]
        )
        return flush_keys

    def _cached_ids(self, key_format: str, related: str) -> set[int]:
        """The ids of a targeting relation, cached like waffle caches users and groups."""
        store, key = get_cache(), keyfmt(key_format, self.name)
        cached = store.get(key)
        if cached == CACHE_EMPTY:
            return set()
        if cached:
            return cached
        ids = set(getattr(self, related).values_list("pk", flat=True))
        store.add(key, ids or CACHE_EMPTY)
        return ids

    def tenant_ids(self) -> set[int]:
        return self._cached_ids(self.FLAG_TENANTS_CACHE_KEY, "tenants")

    def plan_ids(self) -> set[int]:
        return self._cached_ids(self.FLAG_PLANS_CACHE_KEY, "plans")

    def _targets_tenant(self, tenant) -> bool:
        if tenant is None or tenant.pk is None:
            return False
        if tenant.pk in self.tenant_ids() or tenant.plan_id in self.plan_ids():
            return True
        return bool(self.percent) and tenant_bucket(self.name, tenant.pk) < int(self.percent * 10)

    def is_active_for_tenant(self, tenant) -> bool:
        """The flag's answer for a tenant alone (no user); an unknown flag answers off."""
        if not self.pk:
            log_missing_flag_once(self.name)
            return False
        if self.everyone is not None:
            return bool(self.everyone)
        return self._targets_tenant(tenant)

    def is_active(self, request: HttpRequest, read_only: bool = False) -> bool | None:
        if not self.pk:
            log_missing_flag_once(self.name)
            return False
        return super().is_active(request, read_only=read_only)

    def _is_active_for_user(self, request: HttpRequest) -> bool | None:
        # waffle answers False (final) when the request has no user; we go on to the tenant rules.
        user = getattr(request, "user", None)
        if user and self.is_active_for_user(user):
            return True
        return None

    def _is_active_for_percent(self, request: HttpRequest, read_only: bool) -> bool | None:
        """Replaces waffle's per-browser random percentage (kept in a cookie) by the tenant rules."""
        tenant = getattr(request, "tenant", None) or current_tenant()
        return True if self._targets_tenant(tenant) else None


@receiver(m2m_changed, sender=Flag.tenants.through)
@receiver(m2m_changed, sender=Flag.plans.through)
@receiver(m2m_changed, sender=Flag.users.through)
@receiver(m2m_changed, sender=Flag.groups.through)
def _flush_flag_on_targeting_change(sender, instance, action: str, reverse: bool, **kwargs) -> None:
    """A targeting list changed outside ``Flag.save`` (``flag.tenants.add(...)``): flush on commit."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    flags = [instance] if not reverse else list(Flag.objects.filter(pk__in=kwargs["pk_set"] or []))
    if reverse and action == "post_clear":
        flags = list(Flag.objects.all())
    for flag in flags:
        transaction.on_commit(flag.flush)
