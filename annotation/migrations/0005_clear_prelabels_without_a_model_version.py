"""Pre-labels named their model by a free-text string until the model registry existed.

Nothing in the product wrote them (the column was the hook for the key-frame CNN), so any row
here came from a hand-made test; it cannot be tied to a ModelVersion and is dropped before the
column becomes a foreign key (0006).
"""

from django.db import migrations


def clear_prelabels(apps, schema_editor):
    apps.get_model("annotation", "PreLabel").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0004_worklist_order_and_prelabel_uncertainty"),
    ]

    operations = [
        migrations.RunPython(clear_prelabels, migrations.RunPython.noop),
    ]
