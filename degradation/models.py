from django.conf import settings
from django.db import models


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
