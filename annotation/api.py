"""REST API of the annotation app: exams, cine loops, frames, clinical documents and ingest;
frame labelling (worklist, workspace, labels, undo, adjudication, final labels, import, export,
agreement).

Every endpoint is read by the three clinical roles (the project default,
``cagvlm_site.roles.IsClinicalStaff``) unless it names its own roles. Objects are addressed
by UUID only. Writes go through the same domain functions as the pages:
``annotation.documents.create_clinical_document`` (which scrubs identifiers from the text)
and ``annotation.ingest.ingest_uploads``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from pydicom.uid import UID as DicomUID
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.agreement import agreement_report
from annotation.documents import create_clinical_document, validate_document
from annotation.ingest import IngestReport, Outcome, ingest_uploads
from annotation.label_io import ImportFileError, ImportReport, final_labels_csv, final_labels_json, import_labels
from annotation.labels import (
    MAX_NOTE_CHARS,
    MAX_SECONDS_PER_VISIT,
    FrameView,
    InvalidLabel,
    NoLabel,
    NotDisputed,
    NothingToUndo,
    StaleLabel,
    adjudicate,
    adjudication_queue,
    frame_view,
    load_workspace,
    submit_label,
    undo_last,
    withdraw_label,
    worklist_for,
)
from annotation.models import (
    AnnotationMode,
    CineLoop,
    ClinicalDocument,
    DocumentKind,
    DocumentLanguage,
    Exam,
    FinalLabel,
    FinalLabelMethod,
    Frame,
    FrameLabel,
    KeyFrameCategory,
    Laterality,
)
from cagvlm_site.roles import IsAdjudicator, Role, api_roles, has_role
from inference.prelabel import start_prelabel_after_ingest

if TYPE_CHECKING:
    from rest_framework.request import Request

# Physicians write the source documents and bring in the cines; cardiologists vouch for the
# documents. Reading is for all three roles (the project default).
AdminOrPhysician = api_roles(Role.ADMIN, Role.PHYSICIAN)
AdminOrCardiologist = api_roles(Role.ADMIN, Role.CARDIOLOGIST)

# Long enough for any pre-procedure report; it bounds the work of the identifier scrubber,
# which hashes up to eight candidates per character of Japanese text.
MAX_DOCUMENT_CHARS = 50_000


def _absolute_file_url(request: Request | None, file_url: str) -> str:
    # Storage URLs are relative for the file system and absolute for object storage;
    # build_absolute_uri leaves the latter as they are.
    return request.build_absolute_uri(file_url) if request is not None else file_url


def _viewer_is_admin(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and has_role(request.user, Role.ADMIN)


# --- query parameters ------------------------------------------------------------------------


def _uuid_param(request: Request, name: str) -> UUID | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise serializers.ValidationError({name: f"{raw!r} is not a UUID."}) from None


def _choice_param(request: Request, name: str, choices: list[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise serializers.ValidationError({name: f"{raw!r} is not one of {', '.join(choices)}."})
    return raw


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    value = raw.strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise serializers.ValidationError({name: f"{raw!r} is not true or false."})


EXAM_PARAM = OpenApiParameter("exam", OpenApiTypes.UUID, description="Only those of the exam with this UUID.")


class OptionalFieldsAutoSchema(AutoSchema):
    """drf-spectacular lists every read-only field as required. Fields named in a
    serializer's ``Meta.optional_fields`` are left out of the response for some users, so the
    schema must not promise them."""

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        optional = getattr(getattr(serializer, "Meta", None), "optional_fields", ())
        if optional and "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in optional]
            if not schema["required"]:
                del schema["required"]
        return schema


# --- serializers -----------------------------------------------------------------------------


class ExamByUUIDField(serializers.SlugRelatedField):
    """An exam given by its UUID; a malformed UUID is a 400, not a database error."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "does_not_exist": "No exam with UUID {value}.",
        "invalid": "Give the exam as its UUID.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="uuid", **kwargs)

    def to_internal_value(self, data: Any) -> Exam:
        try:
            value = UUID(str(data))
        except (TypeError, ValueError):
            self.fail("invalid")
        return super().to_internal_value(value)


class FrameSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Frame
        fields = (
            "uuid",
            "index",
            "time_offset_ms",
            "intensity_mean",
            "intensity_variance",
            "is_sampled",
            "image_url",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, frame: Frame) -> str:
        return _absolute_file_url(self.context.get("request"), frame.image.url)


class LoopSummarySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:loop-detail", lookup_field="uuid")
    projection_label = serializers.CharField(read_only=True)
    frame_rate = serializers.FloatField(read_only=True)

    class Meta:
        model = CineLoop
        fields = (
            "uuid",
            "url",
            "series_number",
            "instance_number",
            "frame_count",
            "frame_rate",
            "projection_label",
            "needs_burned_in_review",
        )
        read_only_fields = fields


class CineLoopSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:loop-detail", lookup_field="uuid")
    exam = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    frames_url = serializers.HyperlinkedIdentityField(view_name="api:loop-frames", lookup_field="uuid")
    transfer_syntax_name = serializers.SerializerMethodField()
    frame_rate = serializers.FloatField(read_only=True, help_text="Frames per second.")
    duration_s = serializers.FloatField(read_only=True)
    projection_label = serializers.CharField(read_only=True, help_text="e.g. 'RAO 30 / CRA 20'.")
    dicom_url = serializers.SerializerMethodField(help_text="The de-identified DICOM file; admins only.")

    class Meta:
        model = CineLoop
        fields = (
            "uuid",
            "url",
            "exam",
            "series_number",
            "instance_number",
            "acquisition_datetime",
            "frame_count",
            "duration_s",
            "rows",
            "columns",
            "bits_allocated",
            "bits_stored",
            "photometric_interpretation",
            "transfer_syntax_uid",
            "transfer_syntax_name",
            "frame_time_ms",
            "frame_rate",
            "frame_timing_source",
            "positioner_primary_angle",
            "positioner_secondary_angle",
            "projection_label",
            "pixel_spacing_row_mm",
            "pixel_spacing_col_mm",
            "distance_source_to_detector_mm",
            "distance_source_to_patient_mm",
            "burned_in_annotation",
            "needs_burned_in_review",
            "created_at",
            "frames_url",
            "dicom_url",
        )
        read_only_fields = fields
        # Only admins export whole DICOM files; everyone else works from the derivatives.
        optional_fields = ("dicom_url",)

    def get_transfer_syntax_name(self, loop: CineLoop) -> str:
        return DicomUID(loop.transfer_syntax_uid).name

    @extend_schema_field(OpenApiTypes.URI)
    def get_dicom_url(self, loop: CineLoop) -> str | None:
        if not _viewer_is_admin(self.context):
            return None
        return _absolute_file_url(self.context.get("request"), loop.dicom_file.url)

    def to_representation(self, instance: CineLoop) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not _viewer_is_admin(self.context):
            del data["dicom_url"]
        return data


class ClinicalDocumentSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:document-detail", lookup_field="uuid")
    exam = ExamByUUIDField(queryset=Exam.objects.select_related("patient"))
    kind = serializers.ChoiceField(
        choices=DocumentKind.choices,
        error_messages={
            "invalid_choice": f"{{input}} is not a document kind; use one of {', '.join(DocumentKind.values)}."
        },
    )
    language = serializers.ChoiceField(
        choices=DocumentLanguage.choices,
        error_messages={
            "invalid_choice": f"{{input}} is not a language; use one of {', '.join(DocumentLanguage.values)}."
        },
    )
    text = serializers.CharField(
        max_length=MAX_DOCUMENT_CHARS,
        style={"base_template": "textarea.html"},
        help_text="Identifiers of the patient known from the DICOM headers are replaced by [REDACTED] on saving.",
    )
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    validated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    is_validated = serializers.BooleanField(read_only=True)

    class Meta:
        model = ClinicalDocument
        fields = (
            "uuid",
            "url",
            "exam",
            "kind",
            "language",
            "text",
            "source",
            "author",
            "validated_by",
            "validated_at",
            "is_validated",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("uuid", "source", "validated_at", "created_at", "updated_at")
        # create_clinical_document checks for a duplicate with a message that names it.
        validators = ()


class ExamSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:exam-detail", lookup_field="uuid")
    patient = serializers.CharField(
        source="patient.short_pseudonym", read_only=True, help_text="The patient's pseudonym, first 12 characters."
    )
    loop_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Exam
        fields = (
            "uuid",
            "url",
            "patient",
            "study_date",
            "patient_sex",
            "patient_age_years",
            "loop_count",
            "created_at",
        )
        read_only_fields = fields


class ExamDetailSerializer(ExamSerializer):
    loops = LoopSummarySerializer(many=True, read_only=True)
    documents = ClinicalDocumentSerializer(many=True, read_only=True)

    class Meta(ExamSerializer.Meta):
        fields = (
            *ExamSerializer.Meta.fields,
            "loops",
            "documents",
        )
        read_only_fields = fields


class IngestUploadSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(), help_text="DICOM XA files and/or zip archives of them."
    )


class IngestResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    outcome = serializers.ChoiceField(choices=[Outcome.INGESTED, Outcome.DUPLICATE, Outcome.REJECTED, Outcome.SKIPPED])
    message = serializers.CharField()
    loop = serializers.UUIDField(allow_null=True)
    exam = serializers.UUIDField(allow_null=True)


class IngestReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="False when any file was rejected.")
    summary = serializers.CharField()
    results = IngestResultSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- views -----------------------------------------------------------------------------------


class ExamViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "uuid"
    lookup_value_converter = "uuid"

    def get_queryset(self) -> QuerySet[Exam]:
        # Meta.ordering does not apply to a query with GROUP BY, hence the explicit order.
        exams = (
            Exam.objects.select_related("patient").annotate(loop_count=Count("loops")).order_by(*Exam._meta.ordering)
        )
        if self.action == "retrieve":
            exams = exams.prefetch_related(
                "loops",
                Prefetch("documents", queryset=ClinicalDocument.objects.select_related("author", "validated_by")),
            )
        return exams

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ExamDetailSerializer if self.action == "retrieve" else ExamSerializer


class LoopViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "uuid"
    lookup_value_converter = "uuid"
    serializer_class = CineLoopSerializer
    schema = OptionalFieldsAutoSchema()

    def get_queryset(self) -> QuerySet[CineLoop]:
        loops = CineLoop.objects.select_related("exam")
        if self.action == "list" and (exam := _uuid_param(self.request, "exam")):
            loops = loops.filter(exam__uuid=exam)
        return loops

    @extend_schema(parameters=[EXAM_PARAM])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("sampled", OpenApiTypes.BOOL, description="Only frames sampled for annotation (or not).")
        ],
        responses=FrameSerializer(many=True),
    )
    @action(detail=True, methods=["get"], serializer_class=FrameSerializer, pagination_class=None)
    def frames(self, request: Request, **kwargs: Any) -> Response:
        """The loop's frames in index order, all in one response (a viewer plays them all)."""
        loop = self.get_object()
        frames = loop.frames.order_by("index")
        if (sampled := _bool_param(request, "sampled")) is not None:
            frames = frames.filter(is_sampled=sampled)
        return Response(self.get_serializer(frames, many=True).data)


class ClinicalDocumentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    lookup_field = "uuid"
    lookup_value_converter = "uuid"
    serializer_class = ClinicalDocumentSerializer

    def get_permissions(self) -> list[Any]:
        if self.action == "create":
            return [AdminOrPhysician()]
        if self.action == "validate":
            return [AdminOrCardiologist()]
        return super().get_permissions()

    def get_queryset(self) -> QuerySet[ClinicalDocument]:
        documents = ClinicalDocument.objects.select_related("exam", "author", "validated_by")
        if self.action == "list":
            if exam := _uuid_param(self.request, "exam"):
                documents = documents.filter(exam__uuid=exam)
            if kind := _choice_param(self.request, "kind", DocumentKind.values):
                documents = documents.filter(kind=kind)
            if language := _choice_param(self.request, "language", DocumentLanguage.values):
                documents = documents.filter(language=language)
        return documents

    @extend_schema(
        parameters=[
            EXAM_PARAM,
            OpenApiParameter("kind", OpenApiTypes.STR, enum=DocumentKind.values),
            OpenApiParameter("language", OpenApiTypes.STR, enum=DocumentLanguage.values),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        description="Create a document of an exam (admins and physicians). The patient's identifiers known from "
        "the DICOM headers are scrubbed from the text before it is stored. One document per exam, kind and language."
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = create_clinical_document(
                exam=data["exam"],
                kind=data["kind"],
                language=data["language"],
                text=data["text"],
                author=self.request.user,
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None

    @extend_schema(request=None, responses=ClinicalDocumentSerializer)
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, **kwargs: Any) -> Response:
        """Record that the current cardiologist or admin checked the document."""
        document = validate_document(self.get_object(), request.user)
        return Response(self.get_serializer(document).data)


class IngestView(APIView):
    permission_classes = (AdminOrPhysician,)
    parser_classes = (MultiPartParser,)

    @extend_schema(
        request={"multipart/form-data": IngestUploadSerializer},
        responses={
            200: OpenApiResponse(IngestReportSerializer, description="Every file ingested, duplicate or skipped."),
            422: OpenApiResponse(
                IngestReportSerializer, description="Some file was rejected; the others were ingested as reported."
            ),
            400: OpenApiResponse(ErrorSerializer, description="No files were attached."),
        },
    )
    def post(self, request: Request) -> Response:
        """Ingest DICOM XA files and zip archives: de-identified, decoded and sampled, each file
        all-or-nothing. The per-file report comes back whatever the outcome."""
        files = request.FILES.getlist("files")
        if not files:
            return Response(
                {"detail": "Attach one or more DICOM files or zip archives under the field 'files'."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        report = ingest_uploads(files)
        # New exams go to the active key-frame model, when there is one.
        start_prelabel_after_ingest(report, request.user)
        return Response(
            IngestReportSerializer(_report_body(report)).data,
            status=status.HTTP_200_OK if report.ok else status.HTTP_422_UNPROCESSABLE_ENTITY,
        )


def _report_body(report: IngestReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "summary": report.summary,
        "results": [
            {
                "name": result.name,
                "outcome": result.outcome,
                "message": result.message,
                "loop": result.loop.uuid if result.loop else None,
                "exam": result.loop.exam.uuid if result.loop else None,
            }
            for result in report.results
        ],
    }


# === labelling ===============================================================================
#
# Who may do what:
#   worklist, labels (PUT/DELETE my label, undo)        physicians
#   workspace and frame state (own label only)          physicians, admins
#   label list                                          physicians (their own), admins (all)
#   final labels and their export                       admins, cardiologists (read)
#   label import                                        admins
#   adjudication queue and decisions                    adjudicators (admins, senior physicians)
#   agreement statistics                                admins
# Physicians never read another physician's label, nor whether a frame is disputed: their
# labels must stay independent for the agreement to mean anything.

PhysicianOnly = api_roles(Role.PHYSICIAN)
AdminOnly = api_roles(Role.ADMIN)
AdminOrCardiologistReader = api_roles(Role.ADMIN, Role.CARDIOLOGIST)

LOOP_PARAM = OpenApiParameter("loop", OpenApiTypes.UUID, description="Only those of the loop with this UUID.")


def _frame_for_labelling(frame_uuid: UUID) -> Frame:
    try:
        return Frame.objects.select_related("loop__exam__project").get(uuid=frame_uuid)
    except Frame.DoesNotExist:
        raise NotFound("No such frame.") from None


class MyLabelSerializer(serializers.Serializer):
    laterality = serializers.CharField()
    category = serializers.CharField()
    note = serializers.CharField()
    version = serializers.IntegerField()
    seconds_spent = serializers.FloatField(help_text="Running total over the physician's visits to the frame.")


class PreLabelSerializer(serializers.Serializer):
    model_version = serializers.CharField(source="model_version.label", help_text='The model, e.g. "convnext_atto v3".')
    model_version_uuid = serializers.UUIDField(source="model_version.uuid")
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Each of the six classes.")
    predicted_class = serializers.CharField()
    created_at = serializers.DateTimeField()


class FrameStateSerializer(serializers.Serializer):
    """One frame as the labelling workspace shows it to the current user."""

    uuid = serializers.UUIDField(source="frame.uuid")
    index = serializers.IntegerField(source="frame.index")
    time_offset_ms = serializers.FloatField(source="frame.time_offset_ms")
    is_sampled = serializers.BooleanField(source="frame.is_sampled")
    image_url = serializers.SerializerMethodField()
    my_label = MyLabelSerializer(allow_null=True, help_text="The current user's own active label, if any.")
    disputed = serializers.BooleanField(
        help_text="The frame's labels disagree and await adjudication; always false unless the user adjudicates."
    )
    prelabel = PreLabelSerializer(allow_null=True, help_text="The model's pre-label; in assisted mode only.")

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, view: FrameView) -> str:
        return _absolute_file_url(self.context.get("request"), view.frame.image.url)


class WorkspaceLoopSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    exam = serializers.UUIDField(source="exam.uuid")
    projection_label = serializers.CharField()
    primary_angle = serializers.FloatField(source="positioner_primary_angle", allow_null=True)
    secondary_angle = serializers.FloatField(source="positioner_secondary_angle", allow_null=True)
    frame_count = serializers.IntegerField()
    frame_time_ms = serializers.FloatField()
    frame_timing_source = serializers.CharField()


class NextLoopSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    url = serializers.SerializerMethodField(help_text="The viewer page of the loop.")

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, loop: CineLoop) -> str:
        return _absolute_file_url(
            self.context.get("request"), reverse("annotation:viewer", kwargs={"loop_uuid": loop.uuid})
        )


class WorkspaceSerializer(serializers.Serializer):
    loop = WorkspaceLoopSerializer()
    mode = serializers.ChoiceField(choices=AnnotationMode.choices, source="project.mode")
    frames = FrameStateSerializer(many=True)
    next_loop = NextLoopSerializer(allow_null=True, help_text="The next loop on the physician's worklist.")


class WorklistLoopSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    exam = serializers.UUIDField(source="exam.uuid")
    projection_label = serializers.CharField()
    frame_count = serializers.IntegerField()
    sampled_frames = serializers.IntegerField(source="sampled_count")
    labelled_frames = serializers.IntegerField(source="labelled_count", help_text="Sampled frames you have labelled.")
    exam_sampled_frames = serializers.IntegerField(source="exam_sampled_count")
    exam_labelled_frames = serializers.IntegerField(source="exam_labelled_count")
    viewer_url = serializers.SerializerMethodField()
    workspace_url = serializers.HyperlinkedIdentityField(view_name="api:loop-workspace", lookup_field="uuid")

    @extend_schema_field(OpenApiTypes.URI)
    def get_viewer_url(self, loop: CineLoop) -> str:
        return _absolute_file_url(
            self.context.get("request"), reverse("annotation:viewer", kwargs={"loop_uuid": loop.uuid})
        )


class LabelWriteSerializer(serializers.Serializer):
    laterality = serializers.ChoiceField(choices=Laterality.choices)
    category = serializers.ChoiceField(choices=KeyFrameCategory.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)
    seconds_spent = serializers.FloatField(
        required=False,
        default=0.0,
        min_value=0.0,
        max_value=MAX_SECONDS_PER_VISIT,
        help_text="Seconds spent on the frame in this visit; the label keeps the running total.",
    )
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="The version the change is based on; null for a new label.",
    )


class StaleStateSerializer(serializers.Serializer):
    detail = serializers.CharField()
    state = FrameStateSerializer()


class LabelSerializer(serializers.ModelSerializer):
    frame = serializers.UUIDField(source="frame.uuid")
    frame_index = serializers.IntegerField(source="frame.index")
    loop = serializers.UUIDField(source="frame.loop.uuid")
    exam = serializers.UUIDField(source="frame.loop.exam.uuid")
    physician = serializers.CharField(source="physician.get_username")
    label_class = serializers.CharField(source="class_name")

    class Meta:
        model = FrameLabel
        fields = (
            "uuid",
            "frame",
            "frame_index",
            "loop",
            "exam",
            "physician",
            "laterality",
            "category",
            "label_class",
            "note",
            "seconds_spent",
            "version",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class FinalLabelSerializer(serializers.ModelSerializer):
    frame = serializers.UUIDField(source="frame.uuid")
    frame_index = serializers.IntegerField(source="frame.index")
    loop = serializers.UUIDField(source="frame.loop.uuid")
    exam = serializers.UUIDField(source="frame.loop.exam.uuid")
    label_class = serializers.CharField(source="class_name")
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = FinalLabel
        fields = (
            "frame",
            "frame_index",
            "loop",
            "exam",
            "laterality",
            "category",
            "label_class",
            "method",
            "decided_by",
            "decided_at",
            "note",
        )
        read_only_fields = fields


class AdjudicationLabelSerializer(serializers.ModelSerializer):
    physician = serializers.CharField(source="physician.get_username")

    class Meta:
        model = FrameLabel
        fields = ("physician", "laterality", "category", "note", "seconds_spent", "version", "updated_at")
        read_only_fields = fields


class AdjudicationFrameSerializer(serializers.ModelSerializer):
    loop = serializers.UUIDField(source="loop.uuid")
    exam = serializers.UUIDField(source="loop.exam.uuid")
    projection_label = serializers.CharField(source="loop.projection_label")
    image_url = serializers.SerializerMethodField()
    labels = AdjudicationLabelSerializer(source="active_labels", many=True)
    decide_url = serializers.SerializerMethodField(help_text="The decision page.")

    class Meta:
        model = Frame
        fields = ("uuid", "index", "loop", "exam", "projection_label", "image_url", "labels", "decide_url")
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, frame: Frame) -> str:
        return _absolute_file_url(self.context.get("request"), frame.image.url)

    @extend_schema_field(OpenApiTypes.URI)
    def get_decide_url(self, frame: Frame) -> str:
        return _absolute_file_url(
            self.context.get("request"), reverse("annotation:adjudication-decide", kwargs={"frame_uuid": frame.uuid})
        )


class AdjudicationSerializer(serializers.Serializer):
    laterality = serializers.ChoiceField(choices=Laterality.choices)
    category = serializers.ChoiceField(choices=KeyFrameCategory.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)


class LabelImportSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="CSV with a header row, or JSON (a list of objects): frame_uuid, or loop_uuid and frame_index; "
        "physician (username; not for final labels); laterality; category; note."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Report what the import would do; save nothing.")
    final = serializers.BooleanField(default=False, help_text="Import final labels (method 'import').")


class ImportRowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="CSV: the line as a spreadsheet numbers it (header = 1). JSON: from 1.")
    error = serializers.CharField()


class LabelImportReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="False when any row was rejected.")
    dry_run = serializers.BooleanField()
    final = serializers.BooleanField()
    summary = serializers.CharField()
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    restored = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    errors = ImportRowErrorSerializer(many=True)


def _state_response(request: Request, frame: Frame, status_code: int = status.HTTP_200_OK) -> Response:
    view = frame_view(frame, request.user)
    return Response(FrameStateSerializer(view, context={"request": request}).data, status=status_code)


def _stale_response(request: Request, frame: Frame, exc: StaleLabel) -> Response:
    state = FrameStateSerializer(frame_view(frame, request.user), context={"request": request}).data
    return Response({"detail": str(exc), "state": state}, status=status.HTTP_409_CONFLICT)


class WorklistView(ListAPIView):
    """Loops with sampled frames you have not labelled yet, with your progress per loop and
    per exam, in the order to label them."""

    permission_classes = (PhysicianOnly,)
    serializer_class = WorklistLoopSerializer

    def get_queryset(self) -> QuerySet[CineLoop]:
        return worklist_for(self.request.user)


class WorkspaceView(APIView):
    permission_classes = (AdminOrPhysician,)

    @extend_schema(responses={200: WorkspaceSerializer})
    def get(self, request: Request, uuid: UUID) -> Response:
        """Everything the cine viewer needs for one loop: every frame in order, with your own
        label, and (assisted mode) the model's pre-label."""
        loop = get_object_or_404(CineLoop.objects.select_related("exam__project"), uuid=uuid)
        workspace = load_workspace(loop, request.user)
        return Response(WorkspaceSerializer(workspace, context={"request": request}).data)


class FrameStateView(APIView):
    permission_classes = (AdminOrPhysician,)

    @extend_schema(responses={200: FrameStateSerializer})
    def get(self, request: Request, uuid: UUID) -> Response:
        """One frame as the workspace shows it (after a label, or after a 409)."""
        return _state_response(request, _frame_for_labelling(uuid))


class MyLabelView(APIView):
    permission_classes = (PhysicianOnly,)

    @extend_schema(
        request=LabelWriteSerializer,
        responses={
            200: OpenApiResponse(FrameStateSerializer, description="Saved (or already so); the frame's state."),
            400: OpenApiResponse(ErrorSerializer, description="A value is invalid."),
            409: OpenApiResponse(StaleStateSerializer, description="Based on a stale version; the current state."),
        },
    )
    def put(self, request: Request, uuid: UUID) -> Response:
        """Label the frame, or change your label. Name the version your change is based on
        (null for a new label); a double submission changes nothing."""
        frame = _frame_for_labelling(uuid)
        body = LabelWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            submit_label(
                frame,
                request.user,
                data["laterality"],
                data["category"],
                note=data["note"],
                seconds_spent=data["seconds_spent"],
                expected_version=data["version"],
            )
        except StaleLabel as exc:
            return _stale_response(request, frame, exc)
        except InvalidLabel as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return _state_response(request, frame)

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, required=True, description="Your label's version.")],
        responses={
            200: OpenApiResponse(FrameStateSerializer, description="Withdrawn; the frame's state."),
            400: OpenApiResponse(ErrorSerializer, description="No version given."),
            404: OpenApiResponse(ErrorSerializer, description="You have not labelled the frame."),
            409: OpenApiResponse(StaleStateSerializer, description="Based on a stale version; the current state."),
        },
    )
    def delete(self, request: Request, uuid: UUID) -> Response:
        """Withdraw your label (it stays in the audit trail; labelling again restores it)."""
        frame = _frame_for_labelling(uuid)
        raw = request.query_params.get("version", "")
        if not raw.isdigit():
            return Response(
                {"detail": "Give the version of your label as ?version=N."}, status=status.HTTP_400_BAD_REQUEST
            )
        try:
            withdraw_label(frame, request.user, int(raw))
        except StaleLabel as exc:
            return _stale_response(request, frame, exc)
        except NoLabel as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return _state_response(request, frame)


class UndoView(APIView):
    permission_classes = (PhysicianOnly,)

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(FrameStateSerializer, description="The state of the frame whose label changed back."),
            404: OpenApiResponse(ErrorSerializer, description="Nothing to undo."),
            409: OpenApiResponse(StaleStateSerializer, description="The label was changed since by someone else."),
        },
    )
    def post(self, request: Request) -> Response:
        """Undo your most recent label change; again to go one further back."""
        try:
            label = undo_last(request.user)
        except NothingToUndo as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except StaleLabel as exc:
            if exc.current is None:  # undo always names an existing label
                raise
            return _stale_response(request, _frame_for_labelling(exc.current.frame.uuid), exc)
        return _state_response(request, _frame_for_labelling(label.frame.uuid))


class LabelListView(ListAPIView):
    """Active labels. Physicians read only their own; admins read everyone's."""

    permission_classes = (AdminOrPhysician,)
    serializer_class = LabelSerializer

    def get_queryset(self) -> QuerySet[FrameLabel]:
        labels = FrameLabel.objects.filter(withdrawn_at=None).select_related("frame__loop__exam", "physician")
        user = self.request.user
        physician = self.request.query_params.get("physician") or None
        if not has_role(user, Role.ADMIN):
            if physician not in (None, user.get_username()):
                raise PermissionDenied("Physicians read only their own labels: labelling is blinded.")
            labels = labels.filter(physician=user)
        elif physician:
            labels = labels.filter(physician__username=physician)
        if exam := _uuid_param(self.request, "exam"):
            labels = labels.filter(frame__loop__exam__uuid=exam)
        if loop := _uuid_param(self.request, "loop"):
            labels = labels.filter(frame__loop__uuid=loop)
        return labels.order_by("frame__loop_id", "frame__index", "physician__username")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "physician", OpenApiTypes.STR, description="Username (admins; physicians: only their own)."
            ),
            EXAM_PARAM,
            LOOP_PARAM,
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class FinalLabelListView(ListAPIView):
    """Final labels, how each was reached and by whom. Admins and cardiologists (who check
    the data the models learn from) read them; physicians do not, since that would show them
    what their colleagues agreed on."""

    permission_classes = (AdminOrCardiologistReader,)
    serializer_class = FinalLabelSerializer

    def get_queryset(self) -> QuerySet[FinalLabel]:
        finals = FinalLabel.objects.select_related("frame__loop__exam", "decided_by")
        if exam := _uuid_param(self.request, "exam"):
            finals = finals.filter(frame__loop__exam__uuid=exam)
        if loop := _uuid_param(self.request, "loop"):
            finals = finals.filter(frame__loop__uuid=loop)
        if method := _choice_param(self.request, "method", FinalLabelMethod.values):
            finals = finals.filter(method=method)
        return finals.order_by("frame__loop_id", "frame__index")

    @extend_schema(
        parameters=[EXAM_PARAM, LOOP_PARAM, OpenApiParameter("method", OpenApiTypes.STR, enum=FinalLabelMethod.values)]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class _FinalLabelExportView(APIView):
    permission_classes = (AdminOrCardiologistReader,)
    extension = ""
    content_type = ""

    def render_export(self) -> str:
        raise NotImplementedError

    def get(self, request: Request) -> HttpResponse:
        """Every final label as a file: frame UUID, exam, loop, frame index, laterality,
        category, class, how it was reached, by whom and when."""
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(self.render_export(), content_type=f"{self.content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="final-labels-{stamp}.{self.extension}"'
        return response


@extend_schema_view(get=extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}))
class FinalLabelCsvExportView(_FinalLabelExportView):
    extension, content_type = "csv", "text/csv"

    def render_export(self) -> str:
        return final_labels_csv()


@extend_schema_view(get=extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT}))
class FinalLabelJsonExportView(_FinalLabelExportView):
    extension, content_type = "json", "application/json"

    def render_export(self) -> str:
        return final_labels_json()


class LabelImportView(APIView):
    permission_classes = (AdminOnly,)
    parser_classes = (MultiPartParser,)

    @extend_schema(
        request={"multipart/form-data": LabelImportSerializer},
        responses={
            200: OpenApiResponse(LabelImportReportSerializer, description="Every row imported (or already there)."),
            422: OpenApiResponse(
                LabelImportReportSerializer, description="Some rows were rejected; the valid ones were imported."
            ),
            400: OpenApiResponse(ErrorSerializer, description="No file, or a file that cannot be read."),
        },
    )
    def post(self, request: Request) -> Response:
        """Import existing labels from CSV or JSON. Valid rows are imported and the others
        reported by row number; with dry_run nothing is saved."""
        body = LabelImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        try:
            report = import_labels(
                upload.read(),
                upload.name or "",
                request.user,
                dry_run=body.validated_data["dry_run"],
                final=body.validated_data["final"],
            )
        except ImportFileError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            import_report_body(report), status=status.HTTP_200_OK if report.ok else status.HTTP_422_UNPROCESSABLE_ENTITY
        )


def import_report_body(report: ImportReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "dry_run": report.dry_run,
        "final": report.final,
        "summary": report.summary,
        "rows": report.rows,
        "created": report.created,
        "restored": report.restored,
        "unchanged": report.unchanged,
        "errors": [{"row": error.row, "error": error.error} for error in report.errors],
    }


class AdjudicationQueueView(ListAPIView):
    """Frames whose labels disagree, with every physician's label side by side."""

    permission_classes = (IsAdjudicator,)
    serializer_class = AdjudicationFrameSerializer

    def get_queryset(self) -> QuerySet[Frame]:
        return (
            adjudication_queue()
            .select_related("loop__exam")
            .prefetch_related(
                Prefetch(
                    "labels",
                    queryset=FrameLabel.objects.filter(withdrawn_at=None)
                    .select_related("physician")
                    .order_by("physician__username"),
                    to_attr="active_labels",
                )
            )
        )


class AdjudicateView(APIView):
    permission_classes = (IsAdjudicator,)

    @extend_schema(
        request=AdjudicationSerializer,
        responses={
            200: OpenApiResponse(FinalLabelSerializer, description="The final label as decided."),
            409: OpenApiResponse(ErrorSerializer, description="The frame's labels do not disagree."),
        },
    )
    def post(self, request: Request, uuid: UUID) -> Response:
        """Decide the final label of a disputed frame."""
        frame = _frame_for_labelling(uuid)
        body = AdjudicationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            final = adjudicate(frame, request.user, **body.validated_data)
        except NotDisputed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        final = FinalLabel.objects.select_related("frame__loop__exam", "decided_by").get(pk=final.pk)
        return Response(FinalLabelSerializer(final).data)


class AgreementView(APIView):
    permission_classes = (AdminOnly,)

    @extend_schema(parameters=[EXAM_PARAM], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Cohen's kappa per pair of physicians, Fleiss' kappa and Krippendorff's alpha
        (nominal), for laterality, category and the six classes, overall and per exam."""
        exam = None
        if exam_uuid := _uuid_param(request, "exam"):
            exam = get_object_or_404(Exam, uuid=exam_uuid)
        return Response(agreement_report(exam))
