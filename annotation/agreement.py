"""Agreement between the physicians' labels, for the admins' agreement page and API.

Computed from active labels with maintained libraries: Cohen's kappa for each pair of
physicians over the frames both labelled (scikit-learn), Fleiss' kappa (statsmodels) and
Krippendorff's alpha, nominal (krippendorff), overall and per exam, for each dimension of the
label: laterality alone, key-frame category alone and the six combined classes. Confusion
matrices between two physicians are drawn with matplotlib's Agg backend into PNG bytes.

A statistic that is undefined for the data (one class only, no frame labelled by two
physicians) is None, never NaN: the results are plain dicts that go straight into JSON.

The numerical libraries are imported inside the functions: web processes load them only when
someone asks for agreement.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from annotation.models import SIX_CLASSES, FrameLabel, KeyFrameCategory, Laterality, class_name

if TYPE_CHECKING:
    from uuid import UUID

    import numpy as np

    from annotation.models import Exam

#: Each dimension of a label, with the values it can take in the order tables show them.
DIMENSIONS: dict[str, list[str]] = {
    "laterality": list(Laterality.values),
    "category": list(KeyFrameCategory.values),
    "class": SIX_CLASSES,
}
DIMENSION_TITLES = {
    "laterality": "Laterality",
    "category": "Key-frame category",
    "class": "Six classes",
}


@dataclass(frozen=True)
class Rating:
    frame_id: int
    exam_uuid: UUID
    physician: str
    laterality: str
    category: str

    def value(self, dimension: str) -> str:
        if dimension == "laterality":
            return self.laterality
        if dimension == "category":
            return self.category
        return class_name(self.laterality, self.category)


def active_ratings(exam: Exam | None = None) -> list[Rating]:
    """Every active label (of one exam, or all), in one query."""
    labels = FrameLabel.objects.filter(withdrawn_at=None)
    if exam is not None:
        labels = labels.filter(frame__loop__exam=exam)
    rows = labels.order_by().values_list(
        "frame_id", "frame__loop__exam__uuid", "physician__username", "laterality", "category"
    )
    return [Rating(*row) for row in rows]


def _number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _table(ratings: list[Rating], dimension: str) -> dict[int, dict[str, str]]:
    """frame -> physician -> value."""
    table: dict[int, dict[str, str]] = defaultdict(dict)
    for rating in ratings:
        table[rating.frame_id][rating.physician] = rating.value(dimension)
    return table


def cohen_kappa_pairs(table: dict[int, dict[str, str]], domain: list[str]) -> list[dict[str, Any]]:
    """Cohen's kappa and the observed agreement of each pair of physicians who labelled at
    least one frame in common."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    physicians = sorted({name for row in table.values() for name in row})
    pairs = []
    for first, second in combinations(physicians, 2):
        shared = [row for row in table.values() if first in row and second in row]
        if not shared:
            continue
        a = [row[first] for row in shared]
        b = [row[second] for row in shared]
        with warnings.catch_warnings():
            # Undefined (one class only): the library warns and returns NaN, reported as None.
            warnings.simplefilter("ignore")
            kappa = cohen_kappa_score(a, b, labels=domain)
        pairs.append(
            {
                "physician_a": first,
                "physician_b": second,
                "frames": len(shared),
                "kappa": _number(kappa),
                "observed_agreement": _number(accuracy_score(a, b)),
            }
        )
    return pairs


def fleiss_kappa_of(table: dict[int, dict[str, str]], domain: list[str]) -> dict[str, Any]:
    """Fleiss' kappa needs the same number of raters on every frame: it is computed over the
    frames carrying the most common number of labels (at least two), and says how many."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    counts = Counter(len(row) for row in table.values() if len(row) >= 2)
    if not counts:
        return {"kappa": None, "frames": 0, "raters_per_frame": None}
    raters, _ = max(counts.items(), key=lambda item: (item[1], item[0]))
    codes = {value: code for code, value in enumerate(domain)}
    data = [[codes[value] for value in row.values()] for row in table.values() if len(row) == raters]
    counts_table, _ = aggregate_raters(data, n_cat=len(domain))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = fleiss_kappa(counts_table, method="fleiss")
    return {"kappa": _number(kappa), "frames": len(data), "raters_per_frame": raters}


def krippendorff_alpha_of(table: dict[int, dict[str, str]], domain: list[str]) -> dict[str, Any]:
    """Krippendorff's alpha (nominal) over all frames; it takes missing labels as they are."""
    import krippendorff
    import numpy as np

    pairable = sum(1 for row in table.values() if len(row) >= 2)
    if not pairable:
        return {"alpha": None, "frames": 0}
    physicians = sorted({name for row in table.values() for name in row})
    codes = {value: code for code, value in enumerate(domain)}
    data = np.full((len(physicians), len(table)), np.nan)
    for column, row in enumerate(table.values()):
        for line, name in enumerate(physicians):
            if name in row:
                data[line, column] = codes[row[name]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alpha = krippendorff.alpha(
            reliability_data=data, level_of_measurement="nominal", value_domain=list(range(len(domain)))
        )
    return {"alpha": _number(alpha), "frames": pairable}


def _dimension_statistics(ratings: list[Rating], dimension: str) -> dict[str, Any]:
    domain = DIMENSIONS[dimension]
    table = _table(ratings, dimension)
    return {
        "title": DIMENSION_TITLES[dimension],
        "values": domain,
        "cohen_kappa": cohen_kappa_pairs(table, domain),
        "fleiss_kappa": fleiss_kappa_of(table, domain),
        "krippendorff_alpha": krippendorff_alpha_of(table, domain),
    }


def _statistics(ratings: list[Rating]) -> dict[str, Any]:
    return {
        "physicians": sorted({rating.physician for rating in ratings}),
        "frames": len({rating.frame_id for rating in ratings}),
        "labels": len(ratings),
        "dimensions": {dimension: _dimension_statistics(ratings, dimension) for dimension in DIMENSIONS},
    }


def agreement_report(exam: Exam | None = None) -> dict[str, Any]:
    """The statistics overall and per exam (or for one exam only)."""
    ratings = active_ratings(exam)
    report = _statistics(ratings)
    by_exam: dict[UUID, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_exam[rating.exam_uuid].append(rating)
    report["per_exam"] = [
        {"exam": str(exam_uuid), **_statistics(exam_ratings)}
        for exam_uuid, exam_ratings in sorted(by_exam.items(), key=lambda item: str(item[0]))
    ]
    return report


# --- confusion matrices ----------------------------------------------------------------------


def confusion_matrix_between(
    physician_a: str, physician_b: str, dimension: str, exam: Exam | None = None
) -> tuple[list[str], np.ndarray]:
    """Rows: physician A's value; columns: physician B's, over the frames both labelled."""
    from sklearn.metrics import confusion_matrix

    domain = DIMENSIONS[dimension]
    table = _table(active_ratings(exam), dimension)
    shared = [row for row in table.values() if physician_a in row and physician_b in row]
    a = [row[physician_a] for row in shared]
    b = [row[physician_b] for row in shared]
    if not shared:
        import numpy as np

        return domain, np.zeros((len(domain), len(domain)), dtype=int)
    return domain, confusion_matrix(a, b, labels=domain)


def confusion_matrix_png(physician_a: str, physician_b: str, dimension: str, exam: Exam | None = None) -> bytes:
    """The confusion matrix drawn as a PNG, in the pages' dark greys."""
    # The object-oriented API with an Agg canvas: no pyplot, so no global state shared
    # between the threads of a web server and no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    domain, matrix = confusion_matrix_between(physician_a, physician_b, dimension, exam)
    size = 3.2 + 0.55 * len(domain)
    figure = Figure(figsize=(size, size * 0.9), dpi=100, facecolor="#24272b")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    axes.set_xticks(
        range(len(domain)), domain, rotation=45 if len(domain) > 3 else 0, ha="right" if len(domain) > 3 else "center"
    )
    axes.set_yticks(range(len(domain)), domain)
    axes.set_xlabel(physician_b, color="#e4e6e8")
    axes.set_ylabel(physician_a, color="#e4e6e8")
    axes.set_title(f"{DIMENSION_TITLES[dimension]}: {int(matrix.sum())} frames", color="#e4e6e8", fontsize=10)
    axes.tick_params(colors="#e4e6e8", labelsize=8)
    threshold = matrix.max() / 2 if matrix.max() else 1
    for (row, column), count in _cells(matrix):
        axes.text(column, row, str(count), ha="center", va="center", color="white" if count > threshold else "#1b1d20")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor=figure.get_facecolor())
    return buffer.getvalue()


def _cells(matrix: np.ndarray) -> list[tuple[tuple[int, int], int]]:
    return [
        ((row, column), int(matrix[row, column])) for row in range(matrix.shape[0]) for column in range(matrix.shape[1])
    ]
