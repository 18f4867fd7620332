"""The promotion decision is a pure function; each rule is explicit and each case tested on its own."""

from __future__ import annotations

import pytest

from headstart.ground.params import GateParams
from headstart.library.evaluation.gate import ScoreReport, decide, mcnemar_p

CLASSES = ["bag", "coat", "shirt"]
SPLIT = {"seed": 42, "val_fraction": 0.15, "test_fraction": 0.15, "fixed_test_set": True}


def report(accuracy: float, recalls=(0.9, 0.9, 0.9), support=(50, 50, 50), classes=CLASSES, split=SPLIT, correct=()):
    rows = zip(classes, recalls, support, strict=True)
    per_class = {c: {"recall": r, "support": s, "precision": r, "f1": r} for c, r, s in rows}
    metrics = {"accuracy": accuracy, "macro_f1": accuracy, "per_class": per_class}
    return ScoreReport(metrics, list(classes), dict(split), list(correct))


def verdicts(decision) -> dict[str, str]:
    return {r.rule: r.verdict for r in decision.rules}


def test_first_run_is_judged_on_floors_only() -> None:
    passed = decide(report(0.8), None, GateParams(floors={"accuracy": 0.5, "macro_f1": 0.5}))
    assert passed.verdict == "PASS" and verdicts(passed) == {
        "floor accuracy": "PASS",
        "floor macro_f1": "PASS",
        "champion": "INFO",
    }
    below = decide(report(0.4), None, GateParams(floors={"accuracy": 0.5}))
    assert below.verdict == "FAIL" and verdicts(below)["floor accuracy"] == "FAIL"


def test_below_a_floor_fails_even_when_better_than_the_champion() -> None:
    decision = decide(report(0.45), report(0.30), GateParams(floors={"accuracy": 0.5}), "v1")
    assert decision.verdict == "FAIL"
    assert verdicts(decision)["floor accuracy"] == "FAIL" and verdicts(decision)["gain accuracy"] == "PASS"


def test_a_tie_never_passes() -> None:
    decision = decide(report(0.8), report(0.8), GateParams(), "v1")
    assert decision.verdict == "FAIL" and verdicts(decision)["gain accuracy"] == "FAIL"
    assert "+0.0000" in next(r.value for r in decision.rules if r.rule == "gain accuracy")


def test_better_overall_but_worse_on_a_class_fails_naming_it() -> None:
    challenger = report(0.85, recalls=(0.99, 0.99, 0.60))
    decision = decide(challenger, report(0.80, recalls=(0.8, 0.8, 0.8)), GateParams(max_class_recall_drop=0.05), "v1")
    assert decision.verdict == "FAIL"
    assert verdicts(decision)["recall shirt"] == "FAIL" and verdicts(decision)["recall bag"] == "PASS"
    assert verdicts(decision)["gain accuracy"] == "PASS"


def test_small_classes_are_reported_not_judged() -> None:
    challenger = report(0.85, recalls=(0.9, 0.9, 0.2), support=(50, 50, 4))
    decision = decide(challenger, report(0.80, recalls=(0.8, 0.8, 0.9), support=(50, 50, 4)), GateParams(), "v1")
    assert decision.verdict == "PASS" and verdicts(decision)["recall shirt"] == "INFO"


def test_minimum_absolute_and_relative_gain_and_direction() -> None:
    small = decide(report(0.81), report(0.80), GateParams(min_abs_gain=0.02), "v1")
    assert verdicts(small)["gain accuracy"] == "FAIL"
    relative = decide(report(0.84), report(0.80), GateParams(min_rel_gain=0.10), "v1")
    assert verdicts(relative)["gain accuracy"] == "PASS" and verdicts(relative)["relative gain accuracy"] == "FAIL"
    lower_is_better = decide(report(0.70), report(0.80), GateParams(direction="minimize", floors={}), "v1")
    assert verdicts(lower_is_better)["gain accuracy"] == "PASS"


def test_different_split_parameters_fail() -> None:
    decision = decide(report(0.9), report(0.8, split={**SPLIT, "seed": 7}), GateParams(), "v1")
    assert decision.verdict == "FAIL" and verdicts(decision)["split params"] == "FAIL"
    assert "seed" in next(r.value for r in decision.rules if r.rule == "split params")


def test_a_class_change_is_never_promoted_silently() -> None:
    champion = report(0.9, classes=["bag", "coat", "dress"])
    refused = decide(report(0.95), champion, GateParams(), "v1")
    assert refused.verdict == "FAIL" and verdicts(refused)["class set"] == "FAIL"
    assert "added ['shirt'], removed ['dress']" in refused.rules[-1].value
    allowed = decide(report(0.95), champion, GateParams(), "v1", allow_class_change=True)
    assert allowed.verdict == "PASS" and "--allow-class-change" in allowed.rules[-2].threshold


def test_mcnemar_exact_test() -> None:
    old = [True] * 80 + [False] * 20
    much_better = [True] * 80 + [True] * 18 + [False] * 2  # 18 flips to correct, none to wrong
    barely = [True] * 79 + [False] + [True] * 2 + [False] * 18  # 2 gained, 1 lost
    assert mcnemar_p(much_better, old)[:2] == (0, 18) and mcnemar_p(much_better, old)[2] < 1e-4
    policy = GateParams(mcnemar_alpha=0.05, max_class_recall_drop=1.0)
    strong = decide(report(0.98, correct=much_better), report(0.80, correct=old), policy, "v1")
    weak = decide(report(0.81, correct=barely), report(0.80, correct=old), policy, "v1")
    assert verdicts(strong)["McNemar exact"] == "PASS" and strong.verdict == "PASS"
    assert verdicts(weak)["McNemar exact"] == "FAIL" and weak.verdict == "FAIL"


@pytest.mark.parametrize("champion", [None, "v1"])
def test_decision_is_always_explicit(champion) -> None:
    decision = decide(report(0.9), report(0.8) if champion else None, GateParams(), champion)
    table = decision.to_markdown()
    assert table.startswith(f"**Decision: {decision.verdict}**")
    assert all(f"| {r.rule} | {r.value} | {r.threshold} | {r.verdict} |" in table for r in decision.rules)
    assert type(decision).from_dict(decision.to_dict()) == decision
