"""Clinical source documents of an exam: the only way they are created, and their validation.

Documents arrive as free text typed or pasted by people, and such text names the patient
("Mr Yamada, ID 556342B ..."). The product keeps no identifier in clear, only keyed digests
of the ones seen in the patient's DICOM headers (``Patient.identifier_digests``, see
``annotation.deid``). So the scrubber cannot search for the names: it cuts the text into
candidate substrings, hashes each under the same key and redacts those whose digest is known.

How candidates are cut follows how the two languages of the product are written:

- Latin script (and anything else written with spaces): whole words, i.e. maximal runs of
  letters, digits and ``-_.``. A word is redacted only as a whole, so a name part "demo"
  does not eat "demonstrated". A run is also tried without its trailing full stops (the end
  of a sentence), piece by piece where ``-_.`` join several parts ("Demo-san"), and together
  with up to two neighbouring runs (an ID written "AB 1234" or "12/345").
- CJK and kana: Japanese has no spaces between words, so every substring of 1 to 8
  characters of a run is a candidate, longest first at each position, left to right,
  without overlaps. Single characters count because Japanese name parts are often one
  character (``identifier_tokens`` keeps them for the same reason).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.deid import keyed_digest, normalise_identifier
from annotation.models import ClinicalDocument, DocumentKind, DocumentLanguage, Exam

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

REDACTED = "[REDACTED]"
# Longest CJK candidate: Japanese full names rarely exceed six characters; eight leaves room
# for a name written with an honorific-free middle part without making long texts slow.
MAX_CJK_CANDIDATE = 8
# Neighbouring Latin runs tried as one candidate, and the widest gap (spaces, "/", ":")
# allowed between them.
MAX_JOINED_RUNS = 3
MAX_JOIN_GAP = 3
WORD_JOINERS = frozenset("-_.")

_WORD, _CJK, _OTHER = "word", "cjk", "other"

# Scripts written without spaces between words (code point ranges, inclusive).
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇: the iteration mark is part of names such as 佐々木
    (0x3040, 0x30FF),  # Hiragana, Katakana (with ー)
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


def _char_class(char: str) -> str:
    code = ord(char)
    if any(low <= code <= high for low, high in _CJK_RANGES):
        return _CJK
    # Combining marks continue a word written in decomposed form ("e" + U+0301).
    if char.isalnum() or char in WORD_JOINERS or unicodedata.category(char).startswith("M"):
        return _WORD
    return _OTHER


def _runs(text: str) -> list[tuple[str, int, int]]:
    """Maximal runs of one class, as (class, start, end)."""
    runs: list[tuple[str, int, int]] = []
    start = 0
    current = _OTHER
    for position, char in enumerate(text):
        kind = _char_class(char)
        if kind != current:
            if current != _OTHER:
                runs.append((current, start, position))
            current, start = kind, position
    if current != _OTHER:
        runs.append((current, start, len(text)))
    return runs


def scrub_identifiers(text: str, identifier_digests: Iterable[str]) -> tuple[str, int]:
    """Replace each occurrence of the patient's identifiers in ``text`` with ``[REDACTED]``.

    ``identifier_digests`` are ``keyed_digest("identifier", normalise_identifier(token))`` of
    the identifiers; matching is therefore case- and width-insensitive (NFKC + casefold).
    Returns the scrubbed text and the number of replacements.
    """
    known = frozenset(identifier_digests)
    if not known or not text:
        return text, 0

    cache: dict[str, bool] = {}

    def is_identifier(candidate: str) -> bool:
        normalised = normalise_identifier(candidate)
        if not normalised:
            return False
        if normalised not in cache:
            cache[normalised] = keyed_digest("identifier", normalised) in known
        return cache[normalised]

    spans: list[tuple[int, int]] = []
    runs = _runs(text)
    words = [(start, end) for kind, start, end in runs if kind == _WORD]
    spans.extend(_latin_matches(text, words, is_identifier))
    for kind, start, end in runs:
        if kind == _CJK:
            spans.extend(_cjk_matches(text, start, end, is_identifier))

    if not spans:
        return text, 0
    pieces: list[str] = []
    cursor = 0
    for start, end in sorted(spans):
        pieces.append(text[cursor:start])
        pieces.append(REDACTED)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), len(spans)


def _without_trailing_stops(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] == ".":
        end -= 1
    return end


def _latin_matches(
    text: str, words: list[tuple[int, int]], is_identifier: Callable[[str], bool]
) -> list[tuple[int, int]]:
    matches: list[tuple[int, int]] = []
    index = 0
    while index < len(words):
        matched = _match_joined_runs(text, words, index, is_identifier)
        if matched is not None:
            span, consumed = matched
            matches.append(span)
            index += consumed
            continue
        matches.extend(_match_run_pieces(text, *words[index], is_identifier))
        index += 1
    return matches


def _match_joined_runs(
    text: str, words: list[tuple[int, int]], index: int, is_identifier: Callable[[str], bool]
) -> tuple[tuple[int, int], int] | None:
    """The longest candidate made of ``words[index]`` and up to two following runs, each
    whole or without trailing full stops; None when none is an identifier."""
    start = words[index][0]
    last = index
    while last + 1 < len(words) and last + 1 - index < MAX_JOINED_RUNS:
        gap = text[words[last][1] : words[last + 1][0]]
        if len(gap) > MAX_JOIN_GAP or "\n" in gap or "\r" in gap:
            break
        last += 1
    for final in range(last, index - 1, -1):
        end = words[final][1]
        for candidate_end in dict.fromkeys((end, _without_trailing_stops(text, start, end))):
            if candidate_end > start and is_identifier(text[start:candidate_end]):
                return (start, candidate_end), final - index + 1
    return None


def _match_run_pieces(text: str, start: int, end: int, is_identifier: Callable[[str], bool]) -> list[tuple[int, int]]:
    """Parts of one run between ``-_.`` that are identifiers on their own ("Demo-san")."""
    matches: list[tuple[int, int]] = []
    piece_start = start
    for position in range(start, end + 1):
        if position == end or text[position] in WORD_JOINERS:
            whole_run = (piece_start, position) == (start, end)  # already tried as a whole
            if position > piece_start and not whole_run and is_identifier(text[piece_start:position]):
                matches.append((piece_start, position))
            piece_start = position + 1
    return matches


def _cjk_matches(text: str, start: int, end: int, is_identifier: Callable[[str], bool]) -> list[tuple[int, int]]:
    matches: list[tuple[int, int]] = []
    position = start
    while position < end:
        for length in range(min(MAX_CJK_CANDIDATE, end - position), 0, -1):
            if is_identifier(text[position : position + length]):
                matches.append((position, position + length))
                position += length
                break
        else:
            position += 1
    return matches


def create_clinical_document(
    *,
    exam: Exam,
    kind: str,
    language: str,
    text: str,
    author: AbstractBaseUser | None = None,
    source: str = "manual",
) -> ClinicalDocument:
    """Create a clinical document of ``exam``, scrubbed of the patient's identifiers.

    This is the only way documents are created (pages, API, imports, the phantom): the text
    is scrubbed with ``exam.patient.identifier_digests`` before anything is saved, so no
    identifier typed into a report ever reaches the database.

    Raises ``ValidationError`` for an unknown kind or language, an empty text, or when the
    exam already has a document of this kind and language; nothing is stored then.
    """
    if kind not in DocumentKind.values:
        raise ValidationError(
            {"kind": f"Unknown document kind {kind!r}; choose one of {', '.join(DocumentKind.values)}."}
        )
    if language not in DocumentLanguage.values:
        raise ValidationError(
            {"language": f"Unknown language {language!r}; choose one of {', '.join(DocumentLanguage.values)}."}
        )
    scrubbed, _ = scrub_identifiers(text, exam.patient.identifier_digests)
    document = ClinicalDocument(exam=exam, kind=kind, language=language, text=scrubbed, author=author, source=source)
    duplicate = ValidationError(
        f"This exam already has a {DocumentKind(kind).label.lower()} in {DocumentLanguage(language).label}."
    )
    # The duplicate check gets its own message here; the database's unique constraint still
    # settles the case of two people saving the same document at once.
    document.full_clean(validate_constraints=False)
    if ClinicalDocument.objects.filter(exam=exam, kind=kind, language=language).exists():
        raise duplicate
    try:
        with transaction.atomic():
            document.save()
    except IntegrityError:
        raise duplicate from None
    return document


def validate_document(document: ClinicalDocument, user: AbstractBaseUser) -> ClinicalDocument:
    """Record that ``user`` (a cardiologist or admin; the caller checks the role) checked the
    document against the source; a later validation replaces the earlier one."""
    document.validated_by = user
    document.validated_at = timezone.now()
    document.save(update_fields=["validated_by", "validated_at", "updated_at"])
    return document
