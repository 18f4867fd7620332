"""Both sides of the gate scored on the same, current test split: the challenger as evaluated, the champion
pulled (verified) from the registry and re-scored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from headstart.library.evaluation.gate import ScoreReport
from headstart.library.evaluation.metrics import Evaluation, evaluate
from headstart.library.models.model_config import ModelConfig, read_config
from headstart.library.registry.registry import Registry

if TYPE_CHECKING:
    from headstart.library.training.feature_store import FeatureStore


def challenger_report(config: ModelConfig, evaluation: Evaluation) -> ScoreReport:
    """The challenger as the evaluate step scored it: metrics, classes, split params, per-image correctness."""
    return ScoreReport(
        evaluation.metrics,
        config.classes,
        config.lineage.get("split", {}),
        evaluation.correct,
        evaluation.actual,
        evaluation.predicted,
    )


def score_champion(
    registry: Registry,
    version: str,
    split: pd.DataFrame,
    pull_to: Path,
    batch_size: int,
    store: FeatureStore | None = None,
) -> ScoreReport:
    """Pull the champion ``version`` (verified) into ``pull_to/<version>`` and score it on the challenger's test
    split.

    A champion with another class set cannot be scored on this split: it is reported with its classes only.
    """
    model_dir = registry.pull(version, pull_to / version)
    config = read_config(model_dir)
    champion_split = config.lineage.get("split", {})
    if set(split.loc[split["split"] == "test", "label"]) - set(config.classes):
        return ScoreReport({}, config.classes, champion_split)
    scored = evaluate(model_dir, split, batch_size, store)
    return ScoreReport(scored.metrics, config.classes, champion_split, scored.correct, scored.actual, scored.predicted)
