"""The params.yaml the suite's workspaces start from: the repository's, with frozen features at 64 px.

The shipped default extracts frozen features at the backbone's pretrained size (224 px: the better probe, see
docs/training.md, "The default, chosen by measurement"), ~12x the work of 64 px, and the health step's at 96 px;
every flow test would pay both on 2 cores. Here health shares the features scenario's 64 px entries. What the
tests check does not depend on those sizes; the tests of the shipped defaults are the benchmarks'."""

from __future__ import annotations

from pathlib import Path

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
FEATURES_AT_DEFAULT = "  features_input_size: null"
HEALTH_AT_DEFAULT = "  input_size: 96 "  # health.input_size (model.input_size is 64)


def suite_params_template(folder: Path) -> Path:
    """Write the suite's params template into ``folder`` and return its path."""
    text = REPO_PARAMS.read_text()
    for line in (FEATURES_AT_DEFAULT, HEALTH_AT_DEFAULT):
        if text.count(line) != 1:
            raise AssertionError(f"{REPO_PARAMS}: no single `{line.strip()}` line to lower for the suite")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    # the health step reads the features scenario's 64 px entries: one extraction, as a features run had before
    text = text.replace(FEATURES_AT_DEFAULT, "  features_input_size: 64", 1)
    path.write_text(text.replace(HEALTH_AT_DEFAULT, "  input_size: null ", 1))
    return path
