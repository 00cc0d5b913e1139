"""The four plans every deployment starts with. Staff change their limits in admin afterwards."""

from django.db import migrations

MB = 1024**2
GB = 1024**3

PLANS = [
    # code, name, requests/min, members, api keys, storage, file size, jobs/day, api calls/month
    ("free", "Free", 60, 3, 2, 100 * MB, 5 * MB, 100, 10_000),
    ("starter", "Starter", 300, 10, 5, 5 * GB, 50 * MB, 1_000, 100_000),
    ("pro", "Pro", 1_200, 50, 25, 50 * GB, 500 * MB, 20_000, 2_000_000),
    ("enterprise", "Enterprise", 6_000, None, 100, 1024 * GB, 5 * GB, 500_000, None),
]
FIELDS = ("requests_per_minute", "max_members", "max_api_keys", "storage_bytes",
          "max_file_bytes", "jobs_per_day", "api_calls_per_month")


def create_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, name, *limits in PLANS:
        Plan.objects.get_or_create(code=code, defaults={"name": name, **dict(zip(FIELDS, limits))})


def remove_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    Plan.objects.filter(code__in=[code for code, *_ in PLANS], tenants__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(create_plans, remove_plans)]
