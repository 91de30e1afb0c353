import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0005_clear_prelabels_without_a_model_version"),
        ("inference", "0001_initial"),
    ]

    operations = [
        migrations.RemoveField(model_name="prelabel", name="model_version"),
        migrations.AddField(
            model_name="prelabel",
            name="model_version",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="prelabels", to="inference.modelversion"
            ),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name="prelabel",
            index=models.Index(fields=["model_version", "frame"], name="prelabel_model_frame_idx"),
        ),
        migrations.AddConstraint(
            model_name="prelabel",
            constraint=models.UniqueConstraint(fields=("frame", "model_version"), name="one_prelabel_per_frame_and_model"),
        ),
    ]
