import os

from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The wiring package as an app, for its system checks and ops commands."""

    name = "config"
    verbose_name = "Platform wiring"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the checks)
        from config.database import forget_pools_inherited_across_fork
        from config.replicas import replica_metrics
        from metrics.collectors import add_source

        os.register_at_fork(after_in_child=forget_pools_inherited_across_fork)
        add_source("replicas", replica_metrics)
