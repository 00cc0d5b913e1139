"""The index advisor (metrics/queries/advisor/) and ``manage.py recommend_indexes``.

The database tests run on the suite's throwaway PostgreSQL (pg_stat_statements preloaded, HypoPG
installed). Each creates the extensions and an unindexed tenant table inside its test transaction,
so everything, including a dropped extension, is rolled back afterwards.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from metrics.models import QueryFingerprint
from metrics.queries.advisor import (
    Candidate,
    TableInfo,
    advise,
    index_choices,
    parse,
    to_dollar_params,
)
from scripts.services import ServiceUnavailable, postgres_server
from tests.child_process import run_django

ROWS, TENANTS = 120_000, 200
ORDERS_SQL = (
    'SELECT "advisor_orders"."id", "advisor_orders"."total" FROM "advisor_orders" '
    'WHERE ("advisor_orders"."status" = %s AND "advisor_orders"."tenant_id" = %s) '
    'ORDER BY "advisor_orders"."created_at" DESC LIMIT 20'
)
EXPECTED_STATEMENT = (
    'CREATE INDEX CONCURRENTLY "advisor_orders_tena_b7476f_adv" '
    'ON "public"."advisor_orders" ("tenant_id", "status", "created_at");'
)
COSTS = re.compile(r"plan cost: before ([\d,.]+), after ([\d,.]+) \(")


def _sql(statement: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _run(*args: str) -> str:
    out = StringIO()
    call_command("recommend_indexes", *args, stdout=out)
    return out.getvalue()


def _create_orders() -> None:
    """An unindexed tenant table of ROWS orders over TENANTS tenants; statement statistics reset."""
    _sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    _sql("CREATE EXTENSION IF NOT EXISTS hypopg")
    _sql(
        "CREATE TABLE advisor_orders (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, "
        "status text NOT NULL, reference text NOT NULL, created_at timestamptz NOT NULL, "
        "total numeric)"
    )
    _sql(
        "INSERT INTO advisor_orders (tenant_id, status, reference, created_at, total) "
        "SELECT g %% %s, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g %% 4], "
        "'ref-' || g, now() - g * interval '1 minute', g FROM generate_series(1, %s) g",
        [TENANTS, ROWS],
    )
    _sql("ANALYZE advisor_orders")
    _sql("SELECT pg_stat_statements_reset()")


@pytest.fixture
def orders(db):
    """The table inside the test's transaction: rolled back with any extension dropped."""
    _create_orders()


@pytest.fixture
def committed_orders(transactional_db):
    """The table committed, so its write statistics exist (they are counted at commit)."""
    _create_orders()
    _sql("SELECT pg_stat_force_next_flush()")  # flushed before the backend answers
    yield
    _sql("DROP TABLE IF EXISTS advisor_orders")
    _sql("DROP EXTENSION IF EXISTS hypopg")
    _sql("DROP EXTENSION IF EXISTS pg_stat_statements")


def _slow_orders_query(times: int = 5) -> None:
    for tenant in range(1, times + 1):
        _sql(ORDERS_SQL, ["paid", tenant])


def _costs(output: str) -> tuple[float, float]:
    match = COSTS.search(output)
    assert match, output
    before, after = (float(value.replace(",", "")) for value in match.groups())
    return before, after


# --- On PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_proposes_the_tenant_leading_index_verified_by_hypopg(committed_orders):
    _slow_orders_query()

    output = _run()

    assert (
        "[1] public.advisor_orders (tenant_id, status, created_at) - verified by HypoPG" in output
    )
    assert EXPECTED_STATEMENT in output
    before, after = _costs(output)
    assert after < before * 0.7
    assert "5 calls" in output
    assert f"{ROWS:,} writes" in output and f"{ROWS:,} inserts" in output
    assert "estimated size" in output and "MB" in output
    assert "[2]" not in output  # one proposal, not one per alternative


@pytest.mark.postgres
def test_leaves_the_database_as_it_was(orders):
    _slow_orders_query()
    _run()

    assert _sql("SELECT indexname FROM pg_indexes WHERE tablename = 'advisor_orders'") == [
        ("advisor_orders_pkey",)
    ]
    assert _sql("SELECT count(*) FROM hypopg_list_indexes") == [(0,)]
    assert _sql("SELECT name FROM pg_prepared_statements WHERE name LIKE 'ils_advisor%%'") == []
    assert _sql("SHOW transaction_read_only") == [("off",)]
    _sql(
        "INSERT INTO advisor_orders (tenant_id, status, reference, created_at) VALUES (1, 'new', 'x', now())"
    )


@pytest.mark.postgres
def test_json_output_parses(orders):
    _slow_orders_query()

    report = json.loads(_run("--json"))

    assert report["extensions"] == {"pg_stat_statements": True, "hypopg": True}
    (proposal,) = report["proposals"]
    assert proposal["table"] == "public.advisor_orders"
    assert proposal["columns"] == ["tenant_id", "status", "created_at"]
    assert proposal["statement"] == EXPECTED_STATEMENT
    assert proposal["verified"] is True
    assert proposal["after_cost"] <= proposal["before_cost"] * 0.7
    assert proposal["calls"] == 5
    assert proposal["queries"][0]["uses_index"] is True
    assert set(proposal["write_cost"]) >= {"inserts", "updates", "hot_updates", "deletes", "rows"}
    assert proposal["write_cost"]["rows"] == ROWS
    assert proposal["size_bytes"] > 0


@pytest.mark.postgres
def test_without_hypopg_the_proposal_is_unverified_and_it_says_how_to_enable_it(orders):
    _slow_orders_query()
    _sql("DROP EXTENSION hypopg")

    output = _run()

    assert "MISSING: HypoPG is missing" in output
    assert "CREATE EXTENSION hypopg;" in output
    assert EXPECTED_STATEMENT in output
    assert "(tenant_id, status, created_at) - unverified: HypoPG is not installed" in output
    assert "after - (not measured)" in output
    assert "verified by HypoPG" not in output


@pytest.mark.postgres
def test_without_pg_stat_statements_it_says_so_and_still_advises_on_given_queries(orders):
    _sql("DROP EXTENSION pg_stat_statements")

    output = _run("--query", ORDERS_SQL)

    assert "MISSING: pg_stat_statements is missing" in output
    assert "CREATE EXTENSION pg_stat_statements;" in output
    assert EXPECTED_STATEMENT in output
    assert "verified by HypoPG" in output


@pytest.mark.postgres
def test_with_both_extensions_missing_the_given_query_gets_an_unverified_proposal(orders):
    _sql("DROP EXTENSION pg_stat_statements")
    _sql("DROP EXTENSION hypopg")

    report = json.loads(_run("--json", "--query", ORDERS_SQL))

    assert len(report["notices"]) == 2
    (proposal,) = report["proposals"]
    assert proposal["columns"] == ["tenant_id", "status", "created_at"]
    assert proposal["verified"] is False
    assert "HypoPG" in proposal["unverified_reason"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "columns", ["tenant_id, status, created_at", "status, tenant_id, created_at DESC"]
)
def test_a_query_already_served_by_an_index_gets_no_proposal(orders, columns):
    _sql(f"CREATE INDEX advisor_orders_existing ON advisor_orders ({columns})")
    _slow_orders_query()

    report = json.loads(_run("--json"))

    assert report["proposals"] == []
    assert any(
        item["reason"] == "already served by an index"
        and '"advisor_orders"."status"' in item["sql"]
        for item in report["skipped"]
    ), report["skipped"]


@pytest.mark.postgres
def test_an_index_missing_the_order_column_still_gets_the_better_proposal(orders):
    _sql("CREATE INDEX advisor_orders_existing ON advisor_orders (tenant_id, status)")
    _sql("ANALYZE advisor_orders")
    _slow_orders_query()

    output = _run()

    assert EXPECTED_STATEMENT in output
    assert "verified by HypoPG" in output


@pytest.mark.postgres
def test_an_equality_filter_without_tenant_id_does_not_get_one_invented(orders):
    lookup = (
        'SELECT "advisor_orders"."id" FROM "advisor_orders" WHERE "advisor_orders"."reference" = %s'
    )
    for number in range(3):
        _sql(lookup, [f"ref-{number}"])

    report = json.loads(_run("--json"))

    (proposal,) = report["proposals"]
    assert proposal["columns"] == ["reference"]
    assert proposal["verified"] is True
    assert 'ON "public"."advisor_orders" ("reference");' in proposal["statement"]


@pytest.mark.postgres
def test_a_proposal_that_does_not_cut_the_cost_enough_is_dropped(orders, settings):
    _slow_orders_query()
    settings.INDEX_ADVISOR_MIN_GAIN = 0.999  # the index cuts ~98%: not enough

    report = json.loads(_run("--json"))

    assert report["min_gain"] == 0.999
    assert report["proposals"] == []
    assert any("no proposed index cut" in item["reason"] for item in report["skipped"])
    assert json.loads(_run("--json", "--min-gain", "0.5"))["proposals"]  # the flag wins


@pytest.mark.postgres
def test_a_query_monitor_fingerprint_is_advised_on_with_its_figures(orders):
    """The monitor's shape (metrics.queries.fingerprint): literals and placeholders as ``?``."""
    shape = (
        'SELECT "advisor_orders"."id" FROM "advisor_orders" WHERE ("advisor_orders"."tenant_id" = ? '
        'AND "advisor_orders"."status" IN (...)) ORDER BY "advisor_orders"."created_at" DESC LIMIT ?'
    )
    _sql("DROP EXTENSION pg_stat_statements")

    report = advise(extra_sql=[Candidate(shape, calls=40, total_ms=900.0, source="query monitor")])

    (proposal,) = report.proposals
    assert proposal.columns == ("tenant_id", "status", "created_at")
    assert proposal.verified
    assert proposal.as_dict()["calls"] == 40
    assert proposal.as_dict()["queries"][0]["source"] == "query monitor"


@pytest.mark.postgres
def test_the_command_advises_on_the_query_monitors_costliest_fingerprints(orders):
    QueryFingerprint.objects.create(
        fingerprint="f" * 16,
        sql='SELECT "advisor_orders"."id" FROM "advisor_orders" WHERE ("advisor_orders"."tenant_id" '
        '= ? AND "advisor_orders"."status" = ?) ORDER BY "advisor_orders"."created_at" DESC LIMIT ?',
        calls=70,
        total_ms=1234.0,
    )
    _sql("DROP EXTENSION pg_stat_statements")

    report = json.loads(_run("--json"))

    (proposal,) = report["proposals"]
    assert proposal["columns"] == ["tenant_id", "status", "created_at"]
    assert proposal["queries"][0]["source"] == "query monitor"
    assert proposal["calls"] == 70


@pytest.mark.postgres
def test_a_query_that_cannot_be_planned_is_reported_unverified_not_an_error(orders):
    untyped = "SELECT id FROM advisor_orders WHERE tenant_id = $1 AND $2 IS NULL"

    report = json.loads(_run("--json", "--query", untyped))

    (proposal,) = report["proposals"]
    assert proposal["columns"] == ["tenant_id"]
    assert proposal["verified"] is False
    assert "cannot be planned generically" in proposal["unverified_reason"]
    assert "could not determine data type of parameter $2" in proposal["unverified_reason"]


@pytest.mark.postgres
def test_a_fingerprints_admin_page_shows_the_advisors_proposal_for_it(orders, admin_client):
    """The advisor runs inside the admin's own transaction (a savepoint): read-only all the same,
    and the page shows the verified proposal with its costs."""
    row = QueryFingerprint.objects.create(
        fingerprint="e" * 16, sql=ORDERS_SQL, calls=5, total_ms=800.0
    )
    page = admin_client.get(f"/admin/metrics/queryfingerprint/{row.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "advisor_orders_tena_b7476f_adv" in body and "verified by HypoPG" in body
    assert QueryFingerprint.objects.filter(pk=row.pk).exists()  # the page's transaction is intact


FILES_SQL = (
    'SELECT "storage_storedfile"."id", "storage_storedfile"."key" FROM "storage_storedfile" '
    'WHERE ("storage_storedfile"."sha256" = %s AND "storage_storedfile"."tenant_id" = %s)'
)


@pytest.mark.postgres
def test_write_migration_writes_an_add_index_concurrently_that_migrate_applies(
    transactional_db, tmp_path, settings, monkeypatch
):
    """A model's table (StoredFile) without the index its query needs: the migration written is
    numbered after the app's leaf, non-atomic, leads with the tenant, and ``migrate`` builds the
    index. The app's migrations are a copy (MIGRATION_MODULES), so the repository is untouched."""
    import shutil

    from django.db.migrations.recorder import MigrationRecorder

    from tests.factories import TenantFactory

    tenants = [TenantFactory().pk for _ in range(20)]
    _sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    _sql("CREATE EXTENSION IF NOT EXISTS hypopg")
    _sql(
        "INSERT INTO storage_storedfile (tenant_id, key, original_name, size, content_type, "
        "sha256, storage, created_at) SELECT (%s::bigint[])[1 + g %% 20], 'k-' || g, 'f.txt', 1, "
        "'text/plain', md5(g::text) || md5(g::text), 'default', now() "
        "FROM generate_series(1, 100000) g",
        [tenants],
    )
    _sql("ANALYZE storage_storedfile")
    _sql("SELECT pg_stat_statements_reset()")
    for tenant in tenants[:5]:
        _sql(FILES_SQL, ["0" * 64, tenant])

    package = tmp_path / "advised_storage_migrations"
    shutil.copytree(Path(__file__).resolve().parents[2] / "storage" / "migrations", package)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MIGRATION_MODULES = {"storage": "advised_storage_migrations"}
    leaf = sorted(p.stem for p in package.glob("0*.py"))[-1]
    applied_name = None
    try:
        output = _run("--write-migration")

        written = sorted(package.glob("*_advised_indexes.py"))
        assert len(written) == 1, output
        text = written[0].read_text()
        applied_name = written[0].stem
        assert applied_name.startswith(f"{int(leaf[:4]) + 1:04d}_")
        assert f"('storage', '{leaf}')" in text and "atomic = False" in text
        assert "AddIndexConcurrently" in text and "fields=['tenant', 'sha256']" in text
        assert f"Wrote {written[0]}" in output
        assert "storage.StoredFile: models.Index(fields=['tenant', 'sha256']" in output
        assert "advisor_orders" not in text  # not a model's table: no migration of ours

        call_command("migrate", "storage", applied_name, verbosity=0)
        names = [row[0] for row in _sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'storage_storedfile'")]  # fmt: skip
        definition = _sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname LIKE %s", ["storage\\_stor%\\_adv"]
        )
        assert definition and "(tenant_id, sha256)" in definition[0][0], names
    finally:
        for (indexname,) in _sql(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", ["%\\_adv"]
        ):
            _sql(f'DROP INDEX IF EXISTS "{indexname}"')
        if applied_name:
            MigrationRecorder.Migration.objects.filter(app="storage", name=applied_name).delete()
        _sql("DROP EXTENSION IF EXISTS hypopg")
        _sql("DROP EXTENSION IF EXISTS pg_stat_statements")


@pytest.mark.postgres
def test_when_pg_stat_statements_is_not_preloaded_it_gives_the_config_line():
    """A server of its own, started without the library, as a real misconfigured one would be."""
    stack = ExitStack()
    try:
        url = stack.enter_context(postgres_server(extra_conf={"shared_preload_libraries": "''"}))
    except ServiceUnavailable as error:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(str(error))
    with stack:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint, tenant_id bigint, sku text)")
            conn.execute(
                "INSERT INTO items SELECT g, g % 50, 's' || g FROM generate_series(1, 20000) g"
            )
            conn.execute("ANALYZE items")
        report = run_django(
            """
            import json
            from io import StringIO
            from django.core.management import call_command
            out = StringIO()
            call_command("recommend_indexes", "--json", "--query",
                         "SELECT id FROM items WHERE sku = %s AND tenant_id = %s", stdout=out)
            print(json.dumps(json.loads(out.getvalue())))
            """,
            DATABASE_URL=url,
        )
    (pss_notice, hypopg_notice) = report["notices"]
    assert (
        "add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart, "
        "then CREATE EXTENSION pg_stat_statements;" in pss_notice
    )
    assert "CREATE EXTENSION hypopg;" in hypopg_notice
    (proposal,) = report["proposals"]
    assert proposal["columns"] == ["tenant_id", "sku"]
    assert proposal["verified"] is False


def test_on_sqlite_it_says_it_needs_postgresql_and_exits_cleanly():
    output = run_django(
        """
        import json
        from io import StringIO
        from django.core.management import call_command
        out = StringIO()
        call_command("recommend_indexes", stdout=out)
        print(json.dumps(out.getvalue()))
        """,
        drop_prefixes=("DATABASE_URL",),
    )
    assert "needs PostgreSQL" in output
    assert "Nothing to do" in output


# --- The parser (no database) ------------------------------------------------------------------

ORDERS = TableInfo(
    oid=1,
    schema="public",
    name="advisor_orders",
    columns=frozenset({"id", "tenant_id", "status", "reference", "created_at", "total"}),
    indexes=(("id",),),
)


def _choices(sql: str) -> list[tuple[str, ...]]:
    parsed = parse(to_dollar_params(sql))
    found = index_choices(parsed, dict.fromkeys(parsed.tables, ORDERS))
    return [columns for columns, _, _ in found.get(ORDERS.oid, [])]


def test_django_placeholders_become_numbered_parameters():
    assert to_dollar_params("SELECT 1 WHERE a = %s AND b LIKE '%%x' AND c = %s") == (
        "SELECT 1 WHERE a = $1 AND b LIKE '%x' AND c = $2"
    )
    assert to_dollar_params("SELECT %(a)s, %(b)s, %(a)s") == "SELECT $1, $2, $1"
    assert to_dollar_params("SELECT $1 WHERE x % 2 = 0") == "SELECT $1 WHERE x % 2 = 0"


def test_query_monitor_shapes_become_numbered_parameters():
    shape = 'SELECT "a"."x?" FROM a WHERE a.t = ? AND a.s IN (...) AND a.n = \'?\' LIMIT ?'
    assert to_dollar_params(shape) == (
        'SELECT "a"."x?" FROM a WHERE a.t = $1 AND a.s IN ($2) AND a.n = \'?\' LIMIT $3'
    )


def test_tenant_id_leads_then_equality_then_order_by():
    assert _choices(ORDERS_SQL)[0] == ("tenant_id", "status", "created_at")


def test_a_range_without_limit_comes_before_the_order_alternative():
    sql = "SELECT id FROM advisor_orders T1 WHERE T1.created_at >= $1 AND T1.tenant_id = $2 ORDER BY T1.total"
    assert _choices(sql) == [("tenant_id", "created_at"), ("tenant_id", "total")]


def test_or_groups_negations_and_joins_are_not_index_filters():
    sql = (
        'SELECT * FROM "advisor_orders" INNER JOIN "other" U0 ON ("advisor_orders"."id" = U0."order_id") '
        'WHERE ("advisor_orders"."tenant_id" = %s AND NOT ("advisor_orders"."status" = %s) '
        'AND ("advisor_orders"."reference" = %s OR "advisor_orders"."total" > %s))'
    )
    parsed = parse(to_dollar_params(sql))
    assert parsed.filters == [("advisor_orders", "tenant_id", "eq")]
    assert parsed.tables["u0"] == (None, "other")


def test_in_between_and_any_are_recognised():
    parsed = parse(
        "SELECT 1 FROM advisor_orders WHERE status IN ($1, $2) AND created_at BETWEEN $3 AND $4 "
        "AND tenant_id = ANY($5) AND reference NOT IN ($6) FOR UPDATE"
    )
    assert parsed.filters == [
        (None, "status", "eq"),
        (None, "created_at", "range"),
        (None, "tenant_id", "eq"),
    ]
    assert set(parsed.tables) == {"advisor_orders"}
