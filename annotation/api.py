"""REST API of the annotation app: exams, cine loops, frames, clinical documents and ingest.

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
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from pydicom.uid import UID as DicomUID
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.documents import create_clinical_document, validate_document
from annotation.ingest import IngestReport, Outcome, ingest_uploads
from annotation.models import (
    CineLoop,
    ClinicalDocument,
    DocumentKind,
    DocumentLanguage,
    Exam,
    Frame,
)
from cagvlm_site.roles import Role, api_roles, has_role

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
