"""The results search's GIN index (PostgreSQL only): the expression BatchResultQuerySet.search
filters by, so a search in a million-row batch reads its matches instead of every row. Built
CONCURRENTLY: a large table keeps taking writes while it builds. SQLite has no such index and
searches by substring within the batch."""

from django.db import migrations

INDEX = "result_search_document"
# A frozen copy of batches.models.SEARCH_DOCUMENT_SQL (tests/api/test_listing.py compares them).
SEARCH_DOCUMENT_SQL = ("(jsonb_to_tsvector('simple'::regconfig, {input}, "
                       "'[\"string\", \"numeric\"]'::jsonb) "
                       "|| to_tsvector('simple'::regconfig, {output}))")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    document = SEARCH_DOCUMENT_SQL.format(input="input", output="output")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON batches_batchresult "
        f"USING gin ({document})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("batches", "0008_model_prices"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
