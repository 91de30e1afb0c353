"""The one default annotation project: exams without a project are labelled under it."""

from django.db import migrations

DEFAULT_PROJECT_NAME = "Default"


def create_default_project(apps, schema_editor):
    AnnotationProject = apps.get_model("annotation", "AnnotationProject")
    AnnotationProject.objects.get_or_create(
        is_default=True, defaults={"name": DEFAULT_PROJECT_NAME, "mode": "blinded", "labels_required": 2}
    )


def remove_default_project(apps, schema_editor):
    # Exams point at the default project only through an empty field, so it can go.
    apps.get_model("annotation", "AnnotationProject").objects.filter(is_default=True, exams__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("annotation", "0002_frame_labels_and_projects")]

    operations = [migrations.RunPython(create_default_project, remove_default_project)]
