"""The run folder: the one place that knows the file names of a run.

Everything a run writes lives under one folder (``runs/<UTC time>-<flow run>/``, or ``runs/dvc/`` for
``dvc repro``). Steps hand their results to the next step in memory; the files are for people, DVC, the
registry and resuming.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Dataset = Literal["data", "test"]

# File names inside a run folder (and, for those a registered version carries, inside the version).
SPLIT = "split.csv"
MODEL = "model"
CHECKPOINTS = "checkpoints"
CURVES = "curves.csv"
METRICS = "metrics.json"
CONFUSION = "confusion.csv"
CHAMPION = "champion"
DECISION = "decision.json"
MODEL_CARD = "model_card.md"
LINEAGE = "lineage.json"
REGISTERED = "registered.json"
REGISTERING = "registering.json"
PROMOTION = "promotion.json"
SUMMARY = "summary.json"
DASHBOARD = "dashboard"
NEAR_DUPLICATES = "near_duplicates.json"
HEALTH = "health.json"
HEALTH_REFERENCE = "health_reference.safetensors"
MANIFEST_CSV = "manifest.csv"
VALIDATION_REPORT = "validation.json"
THUMBNAILS = "thumbnails.npz"
TRAIN_PARAMS = "train_params.yaml"
TRAIN_LINEAGE = "train_lineage.json"
VALIDATE_DATA, VALIDATE_TEST = "validate", "validate-test"  # the validate step's folders
SWEEP_RECORD, TRIAL_RECORD = "sweep.json", "trial.json"  # a sweep's folder, and each trial's
# RunFolder properties the pipeline table may name.
ENTRIES = (
    "split", "near_duplicates", "health", "health_reference", "model", "checkpoints", "curves", "metrics",
    "confusion", "champion", "decision", "model_card",
    "registered", "promotion", "summary", "dashboard",
)  # fmt: skip
# The run's files a registered version carries beside the model folder's own.
VERSION_FILES = (METRICS, DECISION, MODEL_CARD, CONFUSION, NEAR_DUPLICATES, HEALTH, HEALTH_REFERENCE)


@dataclass(frozen=True)
class RunFolder:
    """Typed paths of one run's files; creating the object touches nothing on disk."""

    root: Path

    def validation_dir(self, dataset: Dataset = "data") -> Path:
        """Where the validate step writes the manifest and report of the training data (or the fixed test set)."""
        return self.root / (VALIDATE_DATA if dataset == "data" else VALIDATE_TEST)

    def manifest(self, dataset: Dataset = "data") -> Path:
        """One row per image of that dataset."""
        return self.validation_dir(dataset) / MANIFEST_CSV

    def thumbnails(self, dataset: Dataset = "data") -> Path:
        """The 32 px thumbnails the validator took while decoding (the near-duplicate search reuses them)."""
        return self.validation_dir(dataset) / THUMBNAILS

    def validation_report(self, dataset: Dataset = "data") -> Path:
        """The validation report (JSON) of that dataset."""
        return self.validation_dir(dataset) / VALIDATION_REPORT

    @property
    def split(self) -> Path:
        """The split table: file, label, sha256, split."""
        return self.root / SPLIT

    @property
    def train_params(self) -> Path:
        """The resolved params a train step launched under torchrun hands its ranks."""
        return self.root / TRAIN_PARAMS

    @property
    def train_lineage(self) -> Path:
        """The lineage record a train step launched under torchrun hands its ranks (params as given included)."""
        return self.root / TRAIN_LINEAGE

    @property
    def model(self) -> Path:
        """The trained model folder (weights, config, classifier)."""
        return self.root / MODEL

    @property
    def checkpoints(self) -> Path:
        """Resume state of the epoch loop (not an output)."""
        return self.root / CHECKPOINTS

    @property
    def curves(self) -> Path:
        """Per-epoch training curves (CSV, for ``dvc plots``)."""
        return self.root / CURVES

    @property
    def metrics(self) -> Path:
        """Test metrics (JSON, for ``dvc metrics``)."""
        return self.root / METRICS

    @property
    def confusion(self) -> Path:
        """Actual and predicted class per test image (CSV, for ``dvc plots``)."""
        return self.root / CONFUSION

    @property
    def champion(self) -> Path:
        """The champion as pulled (verified) for the gate."""
        return self.root / CHAMPION

    @property
    def near_duplicates(self) -> Path:
        """The split step's near-duplicate report: leaks into the test split and what was done about them."""
        return self.root / NEAR_DUPLICATES

    @property
    def health(self) -> Path:
        """The health step's report: suspected label errors and drift from the champion's training data."""
        return self.root / HEALTH

    @property
    def health_reference(self) -> Path:
        """A sample of the training data's backbone features: registered with the version, it is what the next
        run's drift is measured against."""
        return self.root / HEALTH_REFERENCE

    @property
    def decision(self) -> Path:
        """The gate's decision with every rule."""
        return self.root / DECISION

    @property
    def model_card(self) -> Path:
        """The model card (Markdown)."""
        return self.root / MODEL_CARD

    @property
    def registering(self) -> Path:
        """Written before the upload starts: the version id chosen and the run's resume key. A retry of the run
        completes that version instead of registering another (resume state, not an output)."""
        return self.root / REGISTERING

    @property
    def registered(self) -> Path:
        """The registry version this run became."""
        return self.root / REGISTERED

    @property
    def promotion(self) -> Path:
        """Whether the champion alias moved to this run's version."""
        return self.root / PROMOTION

    @property
    def summary(self) -> Path:
        """The run summary (what ``headstart run`` prints and the demo reads)."""
        return self.root / SUMMARY

    @property
    def dashboard(self) -> Path:
        """The rendered dashboards, written before promotion and published to Prefect after it."""
        return self.root / DASHBOARD

    def entry(self, name: str) -> Path:
        """A file or folder by the name the pipeline table uses (``validate``, ``validate-test``, ``split``,
        ``model``, ``metrics``, ...)."""
        special = {"validate": self.validation_dir("data"), "validate-test": self.validation_dir("test")}
        if name in special:
            return special[name]
        if name not in ENTRIES:
            raise KeyError(f"{name!r} is not a run-folder entry; known: {sorted([*special, *ENTRIES])}")
        return getattr(self, name)

    def version_files(self) -> dict[str, Path]:
        """The run's own files a registered version carries, by name, where they exist."""
        return {name: self.root / name for name in VERSION_FILES if (self.root / name).is_file()}


def find_run_folder(runs: Path, run_id: str) -> RunFolder | None:
    """The folder a flow run already has under ``runs`` (named ``<UTC time>-<run id prefix>``), if any."""
    existing = sorted(runs.glob(f"*-{str(run_id)[:8]}"))
    return RunFolder(existing[-1]) if existing else None


def run_folder_for(runs: Path, run_id: str) -> RunFolder:
    """``runs/<UTC time>-<run id prefix>``: sortable, unique per flow run; a retried run gets its folder back, so
    training resumes from its last checkpoint."""
    from datetime import UTC, datetime

    return find_run_folder(runs, run_id) or RunFolder(runs / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{run_id[:8]}")
