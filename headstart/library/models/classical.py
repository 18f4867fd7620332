"""scikit-learn classifiers on frozen features, saved with skops and loaded only with trusted types."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.ground.errors import WeightsError

if TYPE_CHECKING:  # scikit-learn loads where a classifier is fitted or read (skops.io imports all of it)
    from sklearn.base import ClassifierMixin
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

CLASSIFIER_FILE = "classifier.skops"
# Beyond skops' default trust (sklearn's public estimators): the internals of the classifiers offered here.
TRUSTED_TYPES = frozenset(
    {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.tree._tree.Tree",
    }
)


def make_classifier(name: str, c: float, seed: int, scale_in_place: bool = False) -> Pipeline:
    """Standardised features into the named classifier; every one gives probabilities. ``scale_in_place``: its
    fit standardises the caller's matrix itself (StandardScaler(copy=False)); see :func:`fit_classifier`."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    estimators: dict[str, ClassifierMixin] = {
        "logreg": LogisticRegression(C=c, max_iter=2000),
        # LinearSVC has no predict_proba: calibrate its decision function.
        "linear_svm": CalibratedClassifierCV(LinearSVC(C=c, random_state=seed), cv=3),
        "rbf_svm": SVC(C=c, kernel="rbf", probability=True, random_state=seed),
        "random_forest": RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1),
    }
    return make_pipeline(StandardScaler(copy=not scale_in_place), estimators[name])


# classifier_c auto: the C values searched by cross-validation (an RBF SVM needs larger ones than linear models)
C_GRIDS = {"logreg": (0.001, 0.01, 0.1, 1.0), "linear_svm": (0.001, 0.01, 0.1, 1.0), "rbf_svm": (0.1, 1.0, 10.0, 100.0)}
FALLBACK_C = 0.1  # classifier_c auto when a class has a single image (no fold split possible)


def fit_classifier(
    name: str,
    c: float | str,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    search_images: int | None = None,
    overwrite_x: bool = False,
) -> tuple[Pipeline, dict]:
    """Fit the named classifier; with ``c == "auto"`` choose C on its ``C_GRIDS`` row by stratified k-fold
    cross-validation (scikit-learn's GridSearchCV, k = min(5, smallest class)) and refit on every row. Returns the
    classifier and what the search found (``classifier_c``, ``cv_accuracy``, and ``search_images`` when the
    search ran on a sample), empty when there was no search.

    ``search_images``: C is chosen on a seeded stratified sample of at most this many rows (every class at least
    k times), then the classifier is fitted once on every row. Each fit's cost grows faster than its rows (lbfgs
    needs more iterations as they grow: 20 fits took 58 s at 8,500 images and 623 s at 51,000), so the search is
    capped and only the final fit grows with the data (docs/training.md).

    ``overwrite_x``: the final fit standardises ``x`` in place instead of into a copy (at 60,000 images that copy
    was 300 MB at the peak); ``x`` then holds the standardised features, which ``classifier[-1]`` scores. The
    returned classifier copies what it is given, as usual.

    BLAS runs on one thread meanwhile: these products are small (a thousand images x 1,280 features), and two
    OpenBLAS pools (NumPy's and SciPy's) beside torch's OpenMP spin against each other on a few cores — the
    C search at 1,000 images took 15-19 s with them, 2.2 s on one thread (docs/training.md)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        chosen_c, found = _chosen_c(name, c, seed, x, y, search_images)
        classifier = make_classifier(name, chosen_c, seed, scale_in_place=overwrite_x).fit(x, y)
    classifier.set_params(standardscaler__copy=True)  # what it predicts on later is the caller's, untouched
    return classifier, found


def _chosen_c(
    name: str, c: float | str, seed: int, x: np.ndarray, y: np.ndarray, search_images: int | None
) -> tuple[float, dict]:
    """C for the final fit and what the search found (nothing when no search ran)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from headstart.library.data.sampling import stratified_rows

    if c != "auto" or name == "random_forest":  # a random forest has no C
        return (FALLBACK_C if c == "auto" else float(c)), {}
    folds = min(5, int(np.unique(y, return_counts=True)[1].min()))
    if folds < 2:
        return FALLBACK_C, {"classifier_c": FALLBACK_C}
    pipeline = make_classifier(name, FALLBACK_C, seed)
    [c_param] = [k for k in pipeline.get_params() if k.endswith("__C")]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    sample = stratified_rows(y, search_images, seed, at_least=folds)
    whole = len(sample) == len(y)
    # no refit: the final fit is the caller's (the same as GridSearchCV's refit: a fresh pipeline on every row)
    grid = GridSearchCV(pipeline, {c_param: list(C_GRIDS[name])}, cv=cv, refit=False)
    try:
        search = grid.fit(x, y) if whole else grid.fit(x[sample], y[sample])
    except ValueError as exc:  # every fold failed: linear_svm's own 3-fold calibration inside a fold of 2 images
        log.warning("classifier_c auto: the cross-validation failed (%s); C = %s", str(exc).splitlines()[0], FALLBACK_C)
        return FALLBACK_C, {"classifier_c": FALLBACK_C}
    found = {"classifier_c": search.best_params_[c_param], "cv_accuracy": float(search.best_score_)}
    if not whole:
        found["search_images"] = len(sample)
    return found["classifier_c"], found


def probabilities(classifier: Pipeline, features: np.ndarray, num_classes: int) -> np.ndarray:
    """``predict_proba`` spread over all classes (a class absent from training gets probability 0)."""
    proba = classifier.predict_proba(features)
    full = np.zeros((len(features), num_classes), dtype=np.float64)
    full[:, classifier.classes_.astype(int)] = proba
    return full


def save_classifier(classifier: Pipeline, model_dir: Path) -> Path:
    """Write ``classifier.skops`` (skops' format: no pickle), the same classifier always as the same bytes."""
    import skops.io as sio

    path = model_dir / CLASSIFIER_FILE
    path.write_bytes(canonical_skops(sio.dumps(classifier)))
    return path


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def canonical_skops(archive: bytes) -> bytes:
    """A skops archive made reproducible: skops names each object by ``id()`` (a memory address: different in every
    process) and dates each entry now. Here the ids are numbered in order of first appearance in its schema (an
    ``__id__`` and the ``file`` of an array node both carry one) and every entry is dated 1980-01-01; skops reads
    ids only to match an object's references and its array file, so the archive loads as before (a test checks
    that it predicts the same)."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    numbering: dict[str, int] = {}

    def number(old: str) -> int:
        return numbering.setdefault(old, len(numbering) + 1)

    def renumber(node: Any) -> Any:
        if isinstance(node, list):
            return [renumber(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: renumber(value) for key, value in node.items()}
        if isinstance(node.get("__id__"), int):
            out["__id__"] = number(str(node["__id__"]))
        if isinstance(node.get("file"), str) and node["file"].endswith(".npy"):
            out["file"] = f"{number(node['file'].removesuffix('.npy'))}.npy"
        return out

    schema = json.dumps(renumber(json.loads(source.read("schema.json"))), indent=2)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for entry in source.infolist():
            if entry.filename == "schema.json":
                data, name = schema.encode(), entry.filename
            else:  # an array file: named by its node's id
                data, name = source.read(entry), f"{number(entry.filename.removesuffix('.npy'))}.npy"
            target.writestr(zipfile.ZipInfo(name, date_time=_ZIP_EPOCH), data)
    return out.getvalue()


def load_classifier(model_dir: Path) -> Pipeline:
    """Load ``classifier.skops``, refusing any type outside skops' defaults and :data:`TRUSTED_TYPES`."""
    path = model_dir / CLASSIFIER_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: not found; a features-scenario model needs its classifier file")
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise WeightsError(f"{path}: refuses to load untrusted types {refused}")
    return sio.load(path, trusted=untrusted)
