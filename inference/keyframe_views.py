"""The physicians' corrections of an exam's key frames: add a frame, remove one.

The key-frame section itself is part of the exam page (``annotation.views.exam_detail``
renders ``inference/exam_key_frames.html``); these two POST endpoints change it and send the
browser back there. Physicians and admins correct; cardiologists read the section only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from annotation.models import Exam, Frame, Laterality
from cagvlm_site.roles import Role, role_required
from inference.keyframes import MAX_NOTE_CHARS, KeyFrameError, add_key_frame, remove_key_frame

if TYPE_CHECKING:
    from uuid import UUID

    from django.http import HttpRequest, HttpResponse

# Kept beside the two views they serve: they have no other user.


class AddKeyFrameForm(forms.Form):
    loop = forms.UUIDField(widget=forms.HiddenInput)
    index = forms.IntegerField(min_value=0, label="Frame #")
    laterality = forms.ChoiceField(
        choices=[("", "Side as read"), *Laterality.choices],
        required=False,
        help_text="Empty: the frame's final label, else the side the model reads the loop as.",
    )
    note = forms.CharField(max_length=MAX_NOTE_CHARS, required=False, strip=True)


class RemoveKeyFrameForm(forms.Form):
    frame = forms.UUIDField(widget=forms.HiddenInput)
    note = forms.CharField(max_length=MAX_NOTE_CHARS, required=False, strip=True)


def _back_to_exam(exam: Exam) -> HttpResponse:
    return redirect(exam.get_absolute_url() + "#key-frames")


def _form_errors(form: forms.Form) -> str:
    return " ".join(f"{form.fields[name].label or name}: {' '.join(errors)}" for name, errors in form.errors.items())


@require_POST
@role_required(Role.PHYSICIAN, Role.ADMIN)
def key_frame_add(request: HttpRequest, exam_uuid: UUID) -> HttpResponse:
    exam = get_object_or_404(Exam, uuid=exam_uuid)
    form = AddKeyFrameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The frame was not added. " + _form_errors(form))
        return _back_to_exam(exam)
    data = form.cleaned_data
    frame = Frame.objects.filter(loop__exam=exam, loop__uuid=data["loop"], index=data["index"]).first()
    if frame is None:
        messages.error(request, f"This loop of the exam has no frame {data['index']}.")
        return _back_to_exam(exam)
    try:
        row = add_key_frame(exam, frame, request.user, data["note"], laterality=data["laterality"] or None)
    except KeyFrameError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Frame {frame.index} is now a key frame ({row.laterality}).")
    return _back_to_exam(exam)


@require_POST
@role_required(Role.PHYSICIAN, Role.ADMIN)
def key_frame_remove(request: HttpRequest, exam_uuid: UUID) -> HttpResponse:
    exam = get_object_or_404(Exam, uuid=exam_uuid)
    form = RemoveKeyFrameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The key frame was not removed. " + _form_errors(form))
        return _back_to_exam(exam)
    frame = Frame.objects.filter(loop__exam=exam, uuid=form.cleaned_data["frame"]).first()
    if frame is None:
        messages.error(request, "That frame is not one of this exam's frames.")
        return _back_to_exam(exam)
    try:
        remove_key_frame(exam, frame, request.user, form.cleaned_data["note"])
    except KeyFrameError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Frame {frame.index} is no longer a key frame.")
    return _back_to_exam(exam)
