"""Verified proposals as Django migrations: ``AddIndexConcurrently`` in the app whose model owns
the table, so the index is built without locking writes and the migration history knows it.

Only a table of a model of this project's own apps gets a migration (a third-party app's
migrations are not ours to write; its proposals keep their ``CREATE INDEX CONCURRENTLY``). One
migration per app, numbered after the app's single leaf (an app with two leaves needs
``makemigrations --merge`` first and is skipped). The model must be told too: each written index
comes with the ``models.Index(...)`` line for its ``Meta.indexes``, without which the next
``makemigrations`` would propose to remove it again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import models
from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.writer import MigrationWriter

from metrics.queries.advisor.report import Proposal


@dataclass
class Written:
    """What ``write_migrations`` did: files written, the Meta lines to add, proposals skipped."""

    paths: list[Path] = field(default_factory=list)
    meta_lines: list[str] = field(default_factory=list)  # "app.Model: models.Index(...)"
    skipped: list[tuple[Proposal, str]] = field(default_factory=list)


def _own_model(table_name: str) -> type[models.Model] | None:
    """The model of one of this project's apps (not an installed package's) on the table."""
    base = Path(settings.BASE_DIR).resolve()
    for model in apps.get_models():
        meta = model._meta
        if meta.db_table == table_name and meta.managed and not meta.proxy:
            path = Path(meta.app_config.path).resolve()
            return model if base in path.parents and "site-packages" not in path.parts else None
    return None


def index_for(model: type[models.Model], proposal: Proposal) -> models.Index | str:
    """The proposal as the model's ``models.Index``, or why it cannot be one."""
    by_column = {f.column: f.name for f in model._meta.concrete_fields}
    mixed = len(set(proposal.descending[proposal.equality :])) > 1
    fields = []
    for column, descending in zip(proposal.columns, proposal.descending, strict=True):
        if column not in by_column:
            return f"column {column} is no field of {model._meta.label}"
        fields.append(("-" if mixed and descending else "") + by_column[column])
    return models.Index(fields=fields, name=proposal.name)


def _meta_line(model: type[models.Model], index: models.Index) -> str:
    return f"{model._meta.label}: models.Index(fields={list(index.fields)!r}, name={index.name!r})"


def write_migrations(proposals: list[Proposal]) -> Written:
    """One migration per app for the verified ``proposals`` on its models' tables."""
    written = Written()
    by_app: dict[str, list[tuple[type[models.Model], models.Index, Proposal]]] = defaultdict(list)
    for proposal in proposals:
        if not proposal.verified:
            written.skipped.append((proposal, "unverified: not written to a migration"))
            continue
        model = _own_model(proposal.table.name)
        if model is None:
            written.skipped.append((proposal, "no model of this project's apps owns the table"))
            continue
        index = index_for(model, proposal)
        if isinstance(index, str):
            written.skipped.append((proposal, index))
            continue
        by_app[model._meta.app_label].append((model, index, proposal))

    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app_label, entries in by_app.items():
        leaves = loader.graph.leaf_nodes(app_label)
        if len(leaves) != 1:
            reason = f"{app_label} has {len(leaves)} leaf migrations (makemigrations --merge)"
            written.skipped.extend((proposal, reason) for _, _, proposal in entries)
            continue
        number = (MigrationAutodetector.parse_number(leaves[0][1]) or 0) + 1
        migration = Migration(f"{number:04d}_advised_indexes", app_label)
        migration.dependencies = leaves
        migration.operations = [
            AddIndexConcurrently(model._meta.model_name, index) for model, index, _ in entries
        ]
        writer = MigrationWriter(migration)
        # MigrationWriter has no option for ``atomic``, and AddIndexConcurrently cannot run in
        # the transaction Django wraps a migration in: the line goes in after the class line.
        text = writer.as_string().replace(
            "class Migration(migrations.Migration):\n",
            "class Migration(migrations.Migration):\n    atomic = False  # CREATE INDEX CONCURRENTLY\n",
            1,
        )
        path = Path(writer.path)
        path.write_text(text)
        written.paths.append(path)
        written.meta_lines.extend(_meta_line(model, index) for model, index, _ in entries)
    return written
