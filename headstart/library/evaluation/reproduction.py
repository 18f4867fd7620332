"""Judging a rebuilt model against its registered record (pure: no IO).

Bit for bit where the environment matches the record (device type, precision, thread count, world size, the
lock file and the packages that decide a model; on CUDA only with ``train.deterministic``): the weights' and
classifier's digests, the model config and every test metric must be equal. Elsewhere float sums run in another
order, so each metric is compared within a stated tolerance, with per-class deltas, and never called identical.
"""

from __future__ import annotations

from typing import Any

IDENTICAL, WITHIN_TOLERANCE, NOT_REPRODUCED = "identical", "within tolerance", "not reproduced"
ENVIRONMENT_KEYS = (
    "device", "device_name", "cpu_capability", "feature_engine", "precision", "threads", "world_size", "machine",
    "python",
)  # fmt: skip
JUDGED_METRICS = ("accuracy", "macro_f1")


def environment_differences(recorded: dict, rebuilt: dict) -> dict[str, Any]:
    """What differs between two lineage records' environments (empty: a bit-identical rebuild is expected)."""
    old, new = recorded.get("environment") or {}, rebuilt.get("environment") or {}
    differences: dict[str, Any] = {
        key: {"recorded": old.get(key), "rebuilt": new.get(key)}
        for key in ENVIRONMENT_KEYS
        if old.get(key) != new.get(key)
    }
    if recorded.get("lock_sha256") != rebuilt.get("lock_sha256"):
        differences["lock_sha256"] = {"recorded": recorded.get("lock_sha256"), "rebuilt": rebuilt.get("lock_sha256")}
    old_packages, new_packages = recorded.get("packages") or {}, rebuilt.get("packages") or {}
    packages = {
        name: {"recorded": old_packages.get(name), "rebuilt": new_packages.get(name)}
        for name in sorted(set(old_packages) | set(new_packages))
        if name != "headstart" and old_packages.get(name) != new_packages.get(name)  # headstart: the code check's
    }
    if packages:
        differences["packages"] = packages
    if new.get("device") == "cuda" and not (old.get("deterministic") and new.get("deterministic")):
        why = "CUDA repeats a run bit for bit only with train.deterministic"
        differences["deterministic"] = {"recorded": old.get("deterministic"), "rebuilt": new.get("deterministic"),
                                        "why": why}  # fmt: skip
    return differences


def compare_rebuild(
    recorded_files: dict[str, str],
    rebuilt_files: dict[str, str],
    recorded_metrics: dict,
    rebuilt_metrics: dict,
    differences: dict[str, Any],
    tolerance: float,
) -> dict:
    """The comparison as ``reproduction.json`` records it. ``*_files``: name → sha256 of the model's files
    (weights, classifier, the config without its lineage); ``differences``: :func:`environment_differences`."""
    files = {
        name: {"recorded": recorded_files.get(name), "rebuilt": rebuilt_files.get(name),
               "equal": recorded_files.get(name) == rebuilt_files.get(name)}
        for name in sorted(set(recorded_files) | set(rebuilt_files))
    }  # fmt: skip
    metrics = {
        name: {"recorded": recorded_metrics.get(name), "rebuilt": rebuilt_metrics.get(name),
               "delta": _delta(recorded_metrics.get(name), rebuilt_metrics.get(name))}
        for name in JUDGED_METRICS
    }  # fmt: skip
    old_classes, new_classes = recorded_metrics.get("per_class") or {}, rebuilt_metrics.get("per_class") or {}
    per_class = {
        name: {key: _delta((old_classes.get(name) or {}).get(key), (new_classes.get(name) or {}).get(key))
               for key in ("precision", "recall", "f1")}
        for name in sorted(set(old_classes) | set(new_classes))
    }  # fmt: skip
    bitwise = not differences
    files_equal = all(f["equal"] for f in files.values())
    metrics_equal = recorded_metrics == rebuilt_metrics
    if bitwise:
        verdict = IDENTICAL if files_equal and metrics_equal else NOT_REPRODUCED
    else:
        close = all(m["delta"] is not None and abs(m["delta"]) <= tolerance for m in metrics.values())
        verdict = WITHIN_TOLERANCE if close else NOT_REPRODUCED
    return {
        "verdict": verdict,
        "mode": "bitwise" if bitwise else "tolerance",
        "why_not_bitwise": sorted(differences) or None,
        "tolerance": None if bitwise else tolerance,
        "files": files,
        "files_equal": files_equal,
        "metrics": metrics,
        "metrics_equal": metrics_equal,
        "per_class_deltas": per_class,
        "environment_differences": differences,
    }


def _delta(recorded: object, rebuilt: object) -> float | None:
    """rebuilt − recorded, for two numbers; None when either is missing or not a number."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (recorded, rebuilt))
    return float(rebuilt) - float(recorded) if numbers else None  # type: ignore[arg-type]


def verdict_line(outcome: dict) -> str:
    """One line for the terminal and the logs."""
    metrics = ", ".join(
        f"{name} {m['recorded']:.4f} → {m['rebuilt']:.4f}"
        for name, m in outcome["metrics"].items()
        if m["delta"] is not None
    )
    if outcome["mode"] == "bitwise":
        how = "weights bit-identical" if outcome["files_equal"] else "weights differ"
        return f"{outcome['verdict']}: same environment, {how}; {metrics}"
    return (
        f"{outcome['verdict']}: another environment ({', '.join(outcome['why_not_bitwise'])} differ), compared within "
        f"±{outcome['tolerance']:g}; {metrics}"
    )
