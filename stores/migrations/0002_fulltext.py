"""The full-text index over ``stores_chunk.text``, in each vendor's own SQL.

Neither index can be a model field that migrates on both vendors (SQLite cannot add
a generated ``tsvector``; PostgreSQL has no FTS5), so it is raw SQL chosen by
``schema_editor.connection.vendor``. Both keep the index in step with the chunk rows
inside the writing transaction: triggers on SQLite, a stored generated column on
PostgreSQL. Only ``stores/backends/local.py`` reads it.

Caution for later migrations: on SQLite, Django alters a column by rebuilding the
table, which drops these triggers; a migration that alters ``stores_chunk`` must run
this migration's SQLite SQL again (and ``'rebuild'`` the FTS table). On PostgreSQL,
changing the type of ``text`` needs the generated column dropped first.
"""

from django.db import migrations, router
from django.db.migrations.operations.base import Operation

SQLITE_FORWARD = [
    # External content: the FTS table stores only the index, the text stays in
    # stores_chunk (rowid = chunk id). The store id is indexed too, so a search
    # restricts itself to one store inside FTS5 (`store_id : "7" AND ...`), by
    # merging doclists, instead of building the store's chunk set in SQL (which
    # cost more than the ranking).
    """
    CREATE VIRTUAL TABLE stores_chunk_fts USING fts5(
        text,
        store_id,
        content='stores_chunk',
        content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER stores_chunk_fts_insert AFTER INSERT ON stores_chunk BEGIN
        INSERT INTO stores_chunk_fts (rowid, text, store_id)
        VALUES (new.id, new.text, new.store_id);
    END
    """,
    # An external-content table must be told the old values to remove their terms.
    """
    CREATE TRIGGER stores_chunk_fts_delete AFTER DELETE ON stores_chunk BEGIN
        INSERT INTO stores_chunk_fts (stores_chunk_fts, rowid, text, store_id)
        VALUES ('delete', old.id, old.text, old.store_id);
    END
    """,
    """
    CREATE TRIGGER stores_chunk_fts_update AFTER UPDATE OF text, store_id
    ON stores_chunk BEGIN
        INSERT INTO stores_chunk_fts (stores_chunk_fts, rowid, text, store_id)
        VALUES ('delete', old.id, old.text, old.store_id);
        INSERT INTO stores_chunk_fts (rowid, text, store_id)
        VALUES (new.id, new.text, new.store_id);
    END
    """,
    # Index chunks that existed before this migration.
    "INSERT INTO stores_chunk_fts (stores_chunk_fts) VALUES ('rebuild')",
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS stores_chunk_fts_update",
    "DROP TRIGGER IF EXISTS stores_chunk_fts_delete",
    "DROP TRIGGER IF EXISTS stores_chunk_fts_insert",
    "DROP TABLE IF EXISTS stores_chunk_fts",
]

POSTGRESQL_FORWARD = [
    # The explicit 'english' config makes the expression immutable, which a
    # generated column requires.
    """
    ALTER TABLE stores_chunk
    ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    """,
    # GIN queues new entries in a pending list that every search scans linearly
    # until VACUUM merges it; after a bulk load the default 4 MB list made
    # searches several times slower. A small list is merged often, in the insert.
    """
    CREATE INDEX stores_chunk_search_vector_gin
    ON stores_chunk USING GIN (search_vector)
    WITH (gin_pending_list_limit = 256)
    """,
    # A chunk row (about 1 KB of text and its tsvector) is just over the default
    # 2 KB toast threshold, so the tsvector went out of line and every match paid
    # a TOAST fetch to check or rank it: searches 2-3x slower. Rows now stay
    # inline up to a page.
    "ALTER TABLE stores_chunk SET (toast_tuple_target = 8160)",
]

POSTGRESQL_BACKWARD = [
    "ALTER TABLE stores_chunk RESET (toast_tuple_target)",
    "DROP INDEX IF EXISTS stores_chunk_search_vector_gin",
    "ALTER TABLE stores_chunk DROP COLUMN IF EXISTS search_vector",
]


class VendorSQL(Operation):
    """``RunSQL`` with one script per database vendor.

    Unlike ``RunPython`` it goes through ``schema_editor.execute``, so
    ``sqlmigrate`` shows the SQL. A vendor without a script gets no index (the
    local backend then has nothing to query on it, and says so).
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, forward, backward, hints=None):
        self.forward = forward
        self.backward = backward
        self.hints = hints or {}

    def deconstruct(self):
        return (
            self.__class__.__qualname__,
            [],
            {"forward": self.forward, "backward": self.backward},
        )

    def state_forwards(self, app_label, state):
        pass

    def _run(self, scripts, app_label, schema_editor):
        connection = schema_editor.connection
        if not router.allow_migrate(connection.alias, app_label, **self.hints):
            return
        for statement in scripts.get(connection.vendor, []):
            schema_editor.execute(statement, params=None)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(self.forward, app_label, schema_editor)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._run(self.backward, app_label, schema_editor)

    def describe(self):
        return "Full-text index on stores_chunk.text (vendor SQL)"

    @property
    def migration_name_fragment(self):
        return "fulltext"


class Migration(migrations.Migration):
    dependencies = [
        ("stores", "0001_initial"),
    ]

    operations = [
        VendorSQL(
            forward={
                "sqlite": SQLITE_FORWARD,
                "postgresql": POSTGRESQL_FORWARD,
            },
            backward={
                "sqlite": SQLITE_BACKWARD,
                "postgresql": POSTGRESQL_BACKWARD,
            },
        ),
    ]
