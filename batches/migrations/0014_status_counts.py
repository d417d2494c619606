"""Per-batch status counters kept by triggers (batches/status_counts.py), and a backfill.

NOTE: on SQLite, a later migration that rebuilds batches_batchresult or batches_batch (AlterField
and friends copy the table to a new one) silently drops these triggers, and one that rebuilds
batches_batchstatuscount drops its unique index. Such a migration must create them again (run
`create_triggers` below after it); tests/test_status_counts.py checks they exist after all
migrations.

The triggers and the backfill run in one transaction; CREATE TRIGGER locks the results table
against writes until it commits, so no row changes between the count and the first trigger."""

from django.db import migrations, models

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")

# Rows deleted after their batch (only where foreign keys are not enforced: a test database's
# flush) are not counted: their batch's counters went with it.

# PostgreSQL: per statement, one delta row per (batch, status) whose count moved. A column list
# (UPDATE OF status) is not allowed with transition tables, so every UPDATE statement runs it,
# lease renewals too: one that moves no status inserts nothing.
POSTGRESQL = """
CREATE FUNCTION batches_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batches_batchstatuscount (batch_id, status, n)
    SELECT batch_id, status, count(*) FROM new_rows GROUP BY batch_id, status;
    RETURN NULL;
END $$;

CREATE FUNCTION batches_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batches_batchstatuscount (batch_id, status, n)
    SELECT batch_id, status, sum(n) FROM (
        SELECT batch_id, status, 1 AS n FROM new_rows
        UNION ALL
        SELECT batch_id, status, -1 FROM old_rows
    ) AS moved GROUP BY batch_id, status HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION batches_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batches_batchstatuscount (batch_id, status, n)
    SELECT batch_id, status, -count(*) FROM old_rows GROUP BY batch_id, status
    HAVING EXISTS (SELECT FROM batches_batch WHERE id = old_rows.batch_id);
    RETURN NULL;
END $$;

CREATE FUNCTION batches_count_batch_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM batches_batchstatuscount WHERE batch_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER batches_count_inserted AFTER INSERT ON batches_batchresult
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batches_count_inserted();
CREATE TRIGGER batches_count_updated AFTER UPDATE ON batches_batchresult
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batches_count_updated();
CREATE TRIGGER batches_count_deleted AFTER DELETE ON batches_batchresult
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batches_count_deleted();
CREATE TRIGGER batches_count_batch_deleted AFTER DELETE ON batches_batch
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batches_count_batch_deleted();
"""

POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS batches_count_inserted ON batches_batchresult;
DROP TRIGGER IF EXISTS batches_count_updated ON batches_batchresult;
DROP TRIGGER IF EXISTS batches_count_deleted ON batches_batchresult;
DROP TRIGGER IF EXISTS batches_count_batch_deleted ON batches_batch;
DROP FUNCTION IF EXISTS batches_count_inserted();
DROP FUNCTION IF EXISTS batches_count_updated();
DROP FUNCTION IF EXISTS batches_count_deleted();
DROP FUNCTION IF EXISTS batches_count_batch_deleted();
"""

# SQLite has row triggers only, and one writer at a time: one row per (batch, status), added to
# in place. An ingest then costs one upsert per row into a five-row table (a delta row per row
# would double its writes).
_ADD = """INSERT INTO batches_batchstatuscount (batch_id, status, n) VALUES ({batch}, {status}, {n})
        ON CONFLICT (batch_id, status) DO UPDATE SET n = n + excluded.n;"""

SQLITE = [
    "CREATE UNIQUE INDEX IF NOT EXISTS status_count_one_row "
    "ON batches_batchstatuscount (batch_id, status)",
    f"""CREATE TRIGGER batches_count_inserted AFTER INSERT ON batches_batchresult BEGIN
        {_ADD.format(batch="NEW.batch_id", status="NEW.status", n="1")}
    END""",
    f"""CREATE TRIGGER batches_count_updated AFTER UPDATE OF status, batch_id ON batches_batchresult
    WHEN OLD.status IS NOT NEW.status OR OLD.batch_id IS NOT NEW.batch_id BEGIN
        {_ADD.format(batch="OLD.batch_id", status="OLD.status", n="-1")}
        {_ADD.format(batch="NEW.batch_id", status="NEW.status", n="1")}
    END""",
    f"""CREATE TRIGGER batches_count_deleted AFTER DELETE ON batches_batchresult
    WHEN EXISTS (SELECT 1 FROM batches_batch WHERE id = OLD.batch_id) BEGIN
        {_ADD.format(batch="OLD.batch_id", status="OLD.status", n="-1")}
    END""",
    """CREATE TRIGGER batches_count_batch_deleted AFTER DELETE ON batches_batch BEGIN
        DELETE FROM batches_batchstatuscount WHERE batch_id = OLD.id;
    END""",
]

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS batches_count_inserted",
    "DROP TRIGGER IF EXISTS batches_count_updated",
    "DROP TRIGGER IF EXISTS batches_count_deleted",
    "DROP TRIGGER IF EXISTS batches_count_batch_deleted",
    "DROP INDEX IF EXISTS status_count_one_row",
]

BACKFILL = """
INSERT INTO batches_batchstatuscount (batch_id, status, n)
SELECT batch_id, status, count(*) FROM batches_batchresult GROUP BY batch_id, status
"""


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL)
    elif vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)
    else:
        raise NotImplementedError(f"No status counter triggers for {vendor}")
    schema_editor.execute(BACKFILL)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_DROP)
    else:
        for statement in SQLITE_DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('batches', '0013_grounding_and_settings'),
    ]

    operations = [
        migrations.CreateModel(
            name='BatchStatusCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(max_length=10)),
                ('n', models.BigIntegerField()),
                ('batch', models.ForeignKey(db_constraint=False, db_index=False, on_delete=models.deletion.DO_NOTHING, related_name='+', to='batches.batch')),
            ],
            options={
                'indexes': [models.Index(fields=['batch', 'status'], name='status_count_batch_status')],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
