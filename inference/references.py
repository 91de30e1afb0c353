"""Loop references: each cine loop's minimum-intensity projection, which a key-frame CNN
trained with ``loop_reference`` reads beside every frame of the loop.

A loop's projection is made from all its stored display frames (whatever was labelled or
sampled) the first time a training or pre-labelling job needs it, and kept on the loop,
content-addressed: training and prediction read the same image, and it is made once.
"""

from __future__ import annotations

from collections.abc import Iterable

from annotation.derivatives import all_or_nothing, minimum_projection, read_stored
from annotation.models import CineLoop, Frame


def make_minimum_projection(loop_id: int) -> str:
    """Make, store and record the loop's minimum projection; its storage name."""
    images = Frame.objects.filter(loop_id=loop_id).order_by("index").values_list("image", flat=True)
    data = minimum_projection(read_stored(name) for name in images.iterator())
    with all_or_nothing() as stored:
        name = stored.save_bytes("loops", "png", data)
        # Two jobs making the same projection at once store the same name (content-addressed).
        CineLoop.objects.filter(pk=loop_id).update(minimum_projection=name)
    return name


def loop_reference_names(loop_ids: Iterable[int]) -> dict[int, str]:
    """Storage names of the loops' minimum projections by loop id, made where missing."""
    names = dict(CineLoop.objects.filter(pk__in=set(loop_ids)).values_list("pk", "minimum_projection"))
    return {loop_id: name or make_minimum_projection(loop_id) for loop_id, name in names.items()}


def loop_references_by_uuid(loop_uuids: Iterable[object]) -> dict[str, bytes]:
    """The loops' minimum projections (PNG bytes) by loop UUID as text, made where missing."""
    ids = dict(CineLoop.objects.filter(uuid__in=set(loop_uuids)).values_list("pk", "uuid"))
    return {str(ids[loop_id]): read_stored(name) for loop_id, name in loop_reference_names(ids).items()}
