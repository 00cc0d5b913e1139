"""``manage.py migrate_storage`` between local disk and a real S3-compatible server (moto over
HTTP): killed with SIGKILL and run again, a corrupted copy, a corrupted source, resuming, refusing.

The runs that are killed are real processes (``manage.py`` on this test's database); the others
run in this process with ``call_command``, whose worker threads need committed rows
(``transaction=True``).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from storage.models import MigrationItem, StorageMigration, StoredFile
from storage.transfer import runner_id
from tests.factories import TenantFactory, issue_key, key_client
from tests.live import live_database_url
from tests.storage.helpers import random_bytes, store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _files(tenant, count: int, size: int = 4096) -> list[StoredFile]:
    return [store(tenant, random_bytes(size), f"file-{i}.bin") for i in range(count)]


def _migrate(*args: str) -> str:
    out = StringIO()
    call_command("migrate_storage", *args, "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def _sha256(storage_name: str, key: str) -> str:
    with storages[storage_name].open(key, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _command(pair, *args: str) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "manage.py", "migrate_storage", *args, "--no-progress"]
    return argv, pair.env(live_database_url())


def test_killed_mid_run_then_run_again_every_file_moves_once_with_its_checksum(storage_pair):
    tenant = TenantFactory()
    files = _files(tenant, 300, size=16 * 1024)
    argv, env = _command(storage_pair, "--from", "local", "--to", "s3", "--verify",
                         "--concurrency", "2")  # fmt: skip
    first = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while MigrationItem.all_tenants.filter(state=MigrationItem.State.MOVED).count() < 10:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no file moved in 120 s"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    moved_before = set(
        MigrationItem.all_tenants.filter(state=MigrationItem.State.MOVED).values_list(
            "file_id", flat=True
        )
    )
    assert 10 <= len(moved_before) < len(files), "killed in the middle, not at the end"
    migration = StorageMigration.objects.get()
    assert migration.status == StorageMigration.Status.RUNNING  # nobody closed it

    second = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    assert f"Resuming migration #{migration.pk}" in second.stdout
    migration.refresh_from_db()
    assert migration.status == StorageMigration.Status.FINISHED
    assert (migration.moved_files, migration.failed_files) == (300, 0)
    assert storage_pair.bucket.keys() == sorted(f.key for f in files)  # each once, no renamed copy
    for stored in StoredFile.all_tenants.all():
        assert stored.storage == "s3"
        assert _sha256("s3", stored.key) == stored.sha256
    copies = dict(MigrationItem.all_tenants.values_list("file_id", "copies"))
    assert {copies[pk] for pk in moved_before} == {1}  # what had moved was not copied again
    assert storage_pair.local_keys() == sorted(f.key for f in files)  # the source is kept

    # and back, deleting each source copy once its copy is verified
    back, env = _command(storage_pair, "--from", "s3", "--to", "local", "--delete-source")
    result = subprocess.run(back, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "verifying copies, deleting source copies" in result.stdout
    assert storage_pair.bucket.keys() == []
    assert storage_pair.local_keys() == sorted(f.key for f in files)
    for stored in StoredFile.all_tenants.all():
        assert stored.storage == "local"
        assert _sha256("local", stored.key) == stored.sha256


def test_a_corrupted_copy_left_by_a_killed_run_is_caught_by_verify(storage_pair):
    tenant = TenantFactory()
    good, bad = _files(tenant, 2)
    # what a run killed after copying leaves: items marked copied, the copies on the target; one
    # copy corrupted (same size, one byte changed)
    migration = StorageMigration.objects.create(
        source="local", target="s3", runner="gone-host:1", heartbeat_at="2026-01-01T00:00:00Z"
    )
    for stored in (good, bad):
        MigrationItem.all_tenants.create(
            migration=migration, file=stored, tenant=tenant, size=stored.size,
            state=MigrationItem.State.COPIED, copies=1,
        )  # fmt: skip
        with storages["local"].open(stored.key, "rb") as handle:
            data = bytearray(handle.read())
        if stored is bad:
            data[100] ^= 0xFF
        storages["s3"].save(stored.key, ContentFile(bytes(data)))

    with pytest.raises(CommandError) as refused:
        _migrate("--from", "local", "--to", "s3", "--verify")

    assert refused.value.returncode == 3
    bad_item = MigrationItem.all_tenants.get(file=bad)
    assert bad_item.state == MigrationItem.State.FAILED
    assert "does not match the record" in bad_item.error
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (good.storage, bad.storage) == ("s3", "local")  # the bad file is still read from local
    assert storage_pair.bucket.keys() == [good.key]  # the corrupted copy was deleted
    migration.refresh_from_db()
    assert migration.status == StorageMigration.Status.INCOMPLETE

    # run again: a new migration copies it afresh, verified
    output = _migrate("--from", "local", "--to", "s3", "--verify")
    assert "1 of 1 files moved" in output
    bad.refresh_from_db()
    assert bad.storage == "s3" and _sha256("s3", bad.key) == bad.sha256


def test_a_source_that_no_longer_matches_its_record_is_not_copied_and_the_rest_moves(
    storage_pair,
):
    tenant = TenantFactory()
    files = _files(tenant, 5)
    rotten = files[2]
    path = storages["local"].path(rotten.key)
    with open(path, "r+b") as handle:  # bit rot on the source disk
        handle.seek(10)
        handle.write(b"\x00\x01\x02")

    with pytest.raises(CommandError) as refused:
        _migrate("--from", "local", "--to", "s3", "--concurrency", "3")

    assert refused.value.returncode == 3
    assert "1 files did not move" in str(refused.value)
    item = MigrationItem.all_tenants.get(file=rotten)
    assert item.state == MigrationItem.State.FAILED and "do not match the record" in item.error
    rotten.refresh_from_db()
    assert rotten.storage == "local"
    assert storage_pair.bucket.keys() == sorted(f.key for f in files if f is not rotten)


def test_dry_run_counts_and_changes_nothing(storage_pair):
    tenant = TenantFactory()
    _files(tenant, 3, size=1000)
    output = _migrate("--from", "local", "--to", "s3", "--dry-run")
    assert "3 files (0.0 MB) would move from local to s3" in output
    assert not StorageMigration.objects.exists()
    assert storage_pair.bucket.keys() == []
    assert set(StoredFile.all_tenants.values_list("storage", flat=True)) == {"local"}


def test_one_tenants_files_only(storage_pair):
    mine, other = TenantFactory(), TenantFactory()
    my_files, other_files = _files(mine, 2), _files(other, 2)
    _migrate("--from", "local", "--to", "s3", "--tenant", mine.slug)
    assert storage_pair.bucket.keys() == sorted(f.key for f in my_files)
    assert {f.storage for f in StoredFile.all_tenants.filter(tenant=other)} == {"local"}
    assert all(storages["local"].exists(f.key) for f in other_files)


def test_downloads_follow_the_row_during_and_after_a_migration(storage_pair):
    tenant = TenantFactory()
    data = random_bytes(3000)
    stored = store(tenant, data, "report.bin")
    api_client = key_client(issue_key(tenant)[1])
    before = api_client.get(f"/api/v1/files/{stored.pk}/download/")
    assert before.status_code == 302 and "/api/v1/files/signed/" in before["Location"]

    _migrate("--from", "local", "--to", "s3")

    after = api_client.get(f"/api/v1/files/{stored.pk}/download/")
    assert after.status_code == 302
    assert after["Location"].startswith(storage_pair.bucket.endpoint)
    with urllib.request.urlopen(after["Location"], timeout=10) as answer:  # the presigned link
        assert answer.read() == data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "local", "--to", "local"), "same storage"),
        (("--from", "local", "--to", "nowhere"), "'nowhere' is not a configured file storage"),
        (("--from", "staticfiles", "--to", "s3"), "'staticfiles' is not a configured file storage"),
        (("--from", "local", "--to", "s3", "--concurrency", "0"), "--concurrency is 1 to 64"),
        (("--from", "local", "--to", "s3", "--tenant", "no-such-tenant"), "No tenant"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(storage_pair, args, message):
    with pytest.raises(CommandError, match=message):
        _migrate(*args)
    assert not StorageMigration.objects.exists()


def test_a_second_run_is_refused_while_the_first_is_alive(storage_pair):
    tenant = TenantFactory()
    _files(tenant, 1)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = runner_id().rpartition(":")[0]
        StorageMigration.objects.create(
            source="local", target="s3", runner=f"{host}:{sleeper.pid}",
            heartbeat_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
        with pytest.raises(CommandError, match="is running in"):
            _migrate("--from", "local", "--to", "s3")
    finally:
        sleeper.kill()
        sleeper.wait()
    # its runner gone, the next run takes the migration over
    output = _migrate("--from", "local", "--to", "s3")
    assert "Resuming migration" in output and "1 of 1 files moved" in output
