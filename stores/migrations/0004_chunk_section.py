# The heading a chunk sits under. On SQLite, Django adds a column by rebuilding
# the table, which drops the full-text triggers of 0002: there it is a plain
# ALTER TABLE ... ADD COLUMN instead, which keeps them.

from django.db import migrations, models


def _section_field():
    field = models.CharField(blank=True, default="", max_length=200)
    field.set_attributes_from_name("section")
    return field


def add_section(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "ALTER TABLE stores_chunk "
            "ADD COLUMN section varchar(200) NOT NULL DEFAULT ''"
        )
        return
    schema_editor.add_field(apps.get_model("stores", "Chunk"), _section_field())


def remove_section(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("ALTER TABLE stores_chunk DROP COLUMN section")
        return
    schema_editor.remove_field(apps.get_model("stores", "Chunk"), _section_field())


class Migration(migrations.Migration):

    dependencies = [
        ('stores', '0003_ownership'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name='chunk',
                    name='section',
                    field=models.CharField(blank=True, default='', max_length=200),
                ),
            ],
            database_operations=[migrations.RunPython(add_section, remove_section)],
        ),
    ]
