"""The promotion decision is a pure function; each rule is explicit and each case tested on its own."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from headstart.ground.markdown_text import plain
from headstart.ground.params import GateParams
from headstart.library.evaluation.confidence import macro_f1_batched, paired_difference
from headstart.library.evaluation.gate import ScoreReport, decide, mcnemar_p

CLASSES = ["bag", "coat", "shirt"]
SPLIT = {"seed": 42, "val_fraction": 0.15, "test_fraction": 0.15, "fixed_test_set": True}


def report(
    accuracy: float,
    recalls=(0.9, 0.9, 0.9),
    support=(50, 50, 50),
    classes=CLASSES,
    split=SPLIT,
    correct=(),
    actual=(),
    predicted=(),
):
    rows = zip(classes, recalls, support, strict=True)
    per_class = {c: {"recall": r, "support": s, "precision": r, "f1": r} for c, r, s in rows}
    metrics = {"accuracy": accuracy, "macro_f1": accuracy, "per_class": per_class}
    return ScoreReport(metrics, list(classes), dict(split), list(correct), list(actual), list(predicted))


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
    cells = [[plain(c) for c in (r.rule, r.value, r.threshold, r.verdict)] for r in decision.rules]  # text, escaped
    assert all(f"| {' | '.join(row)} |" in table for row in cells)
    assert type(decision).from_dict(decision.to_dict()) == decision


def paired_predictions(gained: int, lost: int, n: int = 300, seed: int = 0):
    """Champion right on 80 % of ``n`` images; the challenger fixes ``gained`` of its errors and breaks ``lost``
    of its right answers. Class names, per image."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    old = truth.copy()
    wrong = rng.choice(n, n // 5, replace=False)
    old[wrong] = (truth[wrong] + 1) % 3
    new = old.copy()
    new[wrong[:gained]] = truth[wrong[:gained]]
    right = np.setdiff1d(np.arange(n), wrong)[:lost]
    new[right] = (truth[right] + 2) % 3
    names = np.array(CLASSES)
    return list(names[truth]), list(names[new]), list(names[old])


def judged(gained: int, lost: int, policy: GateParams):
    truth, new, old = paired_predictions(gained, lost)
    accuracy = lambda p: float(np.mean(np.array(p) == np.array(truth)))  # noqa: E731
    challenger = report(accuracy(new), actual=truth, predicted=new)
    champion = report(accuracy(old), actual=truth, predicted=old)
    return decide(challenger, champion, policy, "v1")


def test_the_batched_macro_f1_equals_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    for n_classes, n in ((2, 5), (4, 40), (10, 300)):
        truth = rng.integers(0, n_classes - 1, (6, n))  # the last class never occurs in the truth
        predicted = np.where(rng.random((6, n)) < 0.6, truth, rng.integers(0, n_classes, (6, n)))
        expected = [
            f1_score(t, p, labels=range(n_classes), average="macro", zero_division=0)
            for t, p in zip(truth, predicted, strict=True)
        ]
        assert np.allclose(macro_f1_batched(truth, predicted, n_classes), expected)


def test_a_bootstrap_interval_rule_passes_a_clear_gain_and_fails_a_lucky_one() -> None:
    policy = GateParams(min_ci_lower=0.0, max_class_recall_drop=1.0)
    clear, lucky = judged(gained=30, lost=2, policy=policy), judged(gained=6, lost=3, policy=policy)
    rule = "95% CI of gain accuracy"
    assert verdicts(clear)[rule] == "PASS" and clear.verdict == "PASS"
    assert verdicts(lucky)["gain accuracy"] == "PASS"  # +1 % on the point estimate...
    assert verdicts(lucky)[rule] == "FAIL" and lucky.verdict == "FAIL"  # ...but the interval reaches below 0
    assert verdicts(lucky)["95% CI of gain macro_f1"] == "INFO"
    # reported, never judged, when gate.min_ci_lower is null; and the same interval on every re-judge
    reported = judged(gained=6, lost=3, policy=GateParams(max_class_recall_drop=1.0))
    assert verdicts(reported)[rule] == "INFO" and reported.verdict == "PASS"
    assert [r.value for r in reported.rules] == [r.value for r in judged(6, 3, GateParams()).rules]


def test_the_interval_of_a_known_difference_contains_it() -> None:
    truth, new, old = (np.array(p) for p in paired_predictions(gained=30, lost=6))
    index = {c: i for i, c in enumerate(CLASSES)}
    as_index = lambda names: np.array([index[c] for c in names])  # noqa: E731
    interval = paired_difference("accuracy", as_index(truth), as_index(new), as_index(old), 3)
    assert interval.difference == pytest.approx(24 / 300)
    assert interval.low < 24 / 300 < interval.high and interval.low > 0
    # the McNemar-style spread: b + c = 36 discordant images of 300 give a standard error of ~0.02
    assert 0.05 < interval.high - interval.low < 0.11


def test_the_interval_covers_a_null_difference_at_its_level() -> None:
    """Two equally good models (independent errors): the 95 % interval must contain 0 about 95 % of the time."""
    rng = np.random.default_rng(7)
    covered, trials = 0, 120
    for seed in range(trials):
        truth = rng.integers(0, 3, 200)
        a, b = (np.where(rng.random(200) < 0.8, truth, (truth + 1) % 3) for _ in range(2))
        interval = paired_difference("accuracy", truth, a, b, 3, resamples=400, seed=seed)
        covered += interval.low <= 0 <= interval.high
    assert 0.88 <= covered / trials <= 0.995, covered


def test_no_per_image_predictions_means_no_interval_not_a_guess() -> None:
    reported = decide(report(0.9), report(0.8), GateParams(), "v1")
    assert verdicts(reported)["confidence interval"] == "INFO" and reported.verdict == "PASS"
    # a rule that cannot be evaluated never passes
    judged = decide(report(0.9), report(0.8), GateParams(min_ci_lower=0.0), "v1")
    assert verdicts(judged)["confidence interval"] == "FAIL" and judged.verdict == "FAIL"
