"""Moving files between storages (``manage.py migrate_storage``): resumable and checksummed.

A migration is a ``StorageMigration`` row and its manifest, a ``MigrationItem`` per file that was
on the source. Invariants, the ones that keep a file from being lost:

* **The row says where a file is.** Reads go to the storage its row names, so files are served
  while they move. The row is switched to the target only once a copy is on the target and has been
  checked (its size always; with ``verify``, its sha256 read back from the target against the
  record), in the same transaction that marks the item ``switched``.
* **The source is read before anything is written.** Its bytes are hashed first; a source that no
  longer matches the record's size and sha256 (bit rot, a replaced object) is reported and not
  copied, so a bad copy never replaces a record's checksum.
* **The source copy goes last.** With ``delete_source`` (which implies ``verify``) the source's
  copy is deleted only after a verified copy and after the row points at the target.
* **Every step is recorded before the next one starts**, so a run killed at any point is finished
  by the next run with the same source, target and tenant: ``pending`` and ``failed`` items are
  copied (again: a partial copy left on the target is replaced, never kept), ``copied`` ones are
  checked (with ``verify``) and switched, ``switched`` ones have their source deleted, ``moved``
  ones are not touched: nothing is copied twice once it has moved.
* A failure on one file is recorded on its item (the row stays on the source, a copy that failed
  its check is deleted from the target) and does not stop the others.

Storage calls here do not go through the ``storage`` circuit breaker on purpose: a migration that
finds its target failing must report it per file, not open the breaker that guards the tenants'
uploads and downloads on the storage they still use.

A file soft-deleted meanwhile moves like any other (its purge deletes it from where its row
says). A file purged while its copy is in flight leaves that copy as an object without a row,
which the orphan report (``storage.maintenance``) finds.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from storage.models import MigrationItem, StorageMigration, StoredFile
from tenants.models import Tenant

State = MigrationItem.State
CHUNK_BYTES = 1024 * 1024
#: A run on another host whose heartbeat is older than this is taken to be gone.
STALE_AFTER = timedelta(seconds=60)
#: What is not a storage files can live in.
NOT_FILE_STORAGES = frozenset({"default", "staticfiles", "public"})
#: Items that still have work: failed ones are tried again by the next run.
OPEN_STATES = (State.PENDING, State.COPIED, State.SWITCHED, State.FAILED)


class TransferError(Exception):
    """One file could not be moved; the message says why (recorded on its item)."""


class MigrationRefused(Exception):
    """The migration cannot start (bad storages, another run holds it); the message says why."""


def file_storages() -> list[str]:
    return [name for name in settings.STORAGES if name not in NOT_FILE_STORAGES]


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _runner_alive(migration: StorageMigration) -> bool:
    host, _, pid = migration.runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return migration.heartbeat_at > timezone.now() - STALE_AFTER


def files_to_move(*, source: str, tenant: Tenant | None):
    """The rows whose bytes are on ``source`` (soft-deleted ones too: their bytes are there)."""
    queryset = StoredFile.all_tenants.filter(storage=source)
    return queryset.filter(tenant=tenant) if tenant is not None else queryset


def check_storages(source: str, target: str) -> None:
    known = file_storages()
    for name in (source, target):
        if name not in known:
            raise MigrationRefused(
                f"{name!r} is not a configured file storage here; configured: {', '.join(known)}."
            )
    if source == target:
        raise MigrationRefused("--from and --to name the same storage.")


def start_migration(
    *,
    source: str,
    target: str,
    tenant: Tenant | None = None,
    verify: bool = False,
    delete_source: bool = False,
) -> tuple[StorageMigration, bool]:
    """Take over the unfinished migration of ``source`` → ``target`` (for ``tenant``) whose run is
    gone, or start one; add every file now on the source to its manifest. Returns it and whether it
    was resumed. Raises ``MigrationRefused`` while another live run moves files off ``source``."""
    check_storages(source, target)
    verify = verify or delete_source
    now = timezone.now()
    me = runner_id()
    with transaction.atomic():
        running = list(
            StorageMigration.objects.select_for_update().filter(
                source=source, status=StorageMigration.Status.RUNNING
            )
        )
        for other in running:
            if _runner_alive(other):
                raise MigrationRefused(
                    f"Migration #{other.pk} ({other}) is running in {other.runner} "
                    f"(last seen {other.heartbeat_at:%Y-%m-%d %H:%M:%S}Z); wait for it to finish."
                )
        resumed = next(
            (
                m
                for m in running
                if m.target == target and m.tenant_id == (tenant.pk if tenant else None)
            ),
            None,
        )
        if resumed is not None:
            resumed.runner, resumed.heartbeat_at = me, now
            resumed.verify = resumed.verify or verify
            resumed.delete_source = resumed.delete_source or delete_source
            resumed.save(update_fields=["runner", "heartbeat_at", "verify", "delete_source"])
            migration = resumed
        else:
            migration = StorageMigration.objects.create(
                source=source,
                target=target,
                tenant=tenant,
                verify=verify,
                delete_source=delete_source,
                runner=me,
                heartbeat_at=now,
            )
    _fill_manifest(migration, tenant)
    record_progress(migration)
    return migration, resumed is not None


def _fill_manifest(migration: StorageMigration, tenant: Tenant | None, batch: int = 2000) -> None:
    """Add an item for every file on the source that has none (idempotent: files uploaded to the
    source since the last run join the manifest)."""
    rows = files_to_move(source=migration.source, tenant=tenant).order_by("pk")
    last = 0
    while True:
        chunk = list(rows.filter(pk__gt=last).values_list("pk", "tenant_id", "size")[:batch])
        if not chunk:
            return
        MigrationItem.all_tenants.bulk_create(
            [
                MigrationItem(migration=migration, file_id=pk, tenant_id=tenant_id, size=size)
                for pk, tenant_id, size in chunk
            ],
            ignore_conflicts=True,
        )
        last = chunk[-1][0]


def open_items(migration: StorageMigration, batch: int = 500) -> Iterator[MigrationItem]:
    """The items with work left, in id order, read in batches (keyset, not OFFSET)."""
    last = 0
    while True:
        chunk = list(
            MigrationItem.all_tenants.filter(
                migration=migration, state__in=OPEN_STATES, pk__gt=last
            ).order_by("pk")[:batch]
        )
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].pk


@dataclass
class Progress:
    total_files: int
    total_bytes: int
    moved_files: int
    moved_bytes: int
    failed_files: int

    @property
    def left_files(self) -> int:
        return self.total_files - self.moved_files - self.failed_files


def record_progress(migration: StorageMigration, *, finish: bool = False) -> Progress:
    """Count the manifest (one GROUP BY), store the counts and the heartbeat; with ``finish``,
    close the migration as finished or incomplete."""
    counts = MigrationItem.all_tenants.filter(migration=migration).aggregate(
        total_files=Count("pk"),
        total_bytes=Sum("size", default=0),
        moved_files=Count("pk", filter=Q(state=State.MOVED)),
        moved_bytes=Sum("size", filter=Q(state=State.MOVED), default=0),
        failed_files=Count("pk", filter=Q(state=State.FAILED)),
    )
    progress = Progress(**counts)
    fields = {**counts, "heartbeat_at": timezone.now()}
    if finish:
        fields["finished_at"] = fields["heartbeat_at"]
        fields["status"] = (
            StorageMigration.Status.FINISHED
            if progress.moved_files == progress.total_files
            else StorageMigration.Status.INCOMPLETE
        )
    StorageMigration.objects.filter(pk=migration.pk).update(**fields)
    for name, value in fields.items():
        setattr(migration, name, value)
    return progress


def _digest(handle: File) -> tuple[str, int]:
    """The sha256 and size of an open file, read in chunks from its start."""
    digest, size = hashlib.sha256(), 0
    for chunk in handle.chunks(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _set_state(item: MigrationItem, state: str, error: str = "", **extra) -> None:
    item.state, item.error = state, error
    for name, value in extra.items():
        setattr(item, name, value)
    MigrationItem.all_tenants.filter(pk=item.pk).update(
        state=state, error=error, updated_at=timezone.now(), **extra
    )


class Mover:
    """Moves one item at a time for ``migration`` (thread-safe: no state between items)."""

    def __init__(self, migration: StorageMigration) -> None:
        self.migration = migration
        self.source = storages[migration.source]
        self.target = storages[migration.target]

    def move(self, item: MigrationItem) -> str:
        """Take ``item`` as far as it goes; returns its new state (``moved`` or ``failed``)."""
        try:
            self._move(item)
        except Exception as error:  # one file's failure is reported, the others go on
            _set_state(item, State.FAILED, f"{type(error).__name__}: {error}"[:2000])
        return item.state

    def _move(self, item: MigrationItem) -> None:
        stored = StoredFile.all_tenants.filter(pk=item.file_id).first()
        if stored is None:  # purged meanwhile: its item went with it, or is going
            return
        if item.state in (State.PENDING, State.FAILED) and stored.storage == self.migration.target:
            item.state = State.SWITCHED  # an earlier try switched it, then failed to delete
        if item.state in (State.PENDING, State.FAILED):
            self._copy(item, stored)
        if item.state == State.COPIED:
            if self.migration.verify:
                self._verify(item, stored)
            self._switch(item, stored)
        if item.state == State.SWITCHED:
            if self.migration.delete_source:
                self.source.delete(stored.key)
            _set_state(item, State.MOVED)

    def _copy(self, item: MigrationItem, stored: StoredFile) -> None:
        if stored.storage != self.migration.source:
            raise TransferError(f"the file is on {stored.storage!r} now, not on the source")
        with self.source.open(stored.key, "rb") as handle:
            sha256, size = _digest(handle)
            if size != stored.size or sha256 != stored.sha256:
                raise TransferError(
                    f"the source's bytes ({size} bytes, sha256 {sha256}) do not match "
                    f"the record ({stored.size} bytes, sha256 {stored.sha256}): not copied"
                )
            # a partial copy a killed run left, never another file (keys are unique); deleting
            # what is not there is no error on either kind of storage, so no exists() first
            self.target.delete(stored.key)
            handle.seek(0)
            saved = self.target.save(stored.key, handle)
        if saved != stored.key:
            self.target.delete(saved)
            raise TransferError(f"the target stored the copy as {saved!r}, not {stored.key!r}")
        copied_size = self.target.size(stored.key)
        if copied_size != stored.size:
            self.target.delete(stored.key)
            raise TransferError(f"the copy has {copied_size} bytes, the record {stored.size}")
        _set_state(item, State.COPIED, copies=item.copies + 1)

    def _verify(self, item: MigrationItem, stored: StoredFile) -> None:
        with self.target.open(stored.key, "rb") as handle:
            sha256, size = _digest(handle)
        if sha256 != stored.sha256 or size != stored.size:
            self.target.delete(stored.key)
            _set_state(item, State.PENDING)
            raise TransferError(
                f"the copy's sha256 {sha256} ({size} bytes) does not match the record's "
                f"{stored.sha256} ({stored.size} bytes): the copy was deleted, the file stays on "
                "the source"
            )

    def _switch(self, item: MigrationItem, stored: StoredFile) -> None:
        with transaction.atomic():
            switched = StoredFile.all_tenants.filter(
                pk=stored.pk, storage=self.migration.source
            ).update(storage=self.migration.target)
            if not switched:
                raise TransferError("the file left the source during the copy")
            # without a source copy to delete, switched is moved (one manifest write fewer)
            _set_state(item, State.SWITCHED if self.migration.delete_source else State.MOVED)
