"""The promotion gate: a pure function (challenger report, champion report or none, policy) → decision.

No storage is touched here; the registry writes only after the decision is final. Every rule is reported with
its value, threshold and verdict, so a PASS is as explicit as a FAIL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from headstart.ground.markdown_text import plain
from headstart.ground.params import GateParams
from headstart.library.evaluation.confidence import paired_difference

Verdict = Literal["PASS", "FAIL", "INFO"]


@dataclass(frozen=True)
class ScoreReport:
    """One model scored on the current test split."""

    metrics: dict  # accuracy, macro_f1, per_class: {name: {recall, support, ...}}
    classes: list[str]
    split: dict  # the split parameters the model was trained under
    correct: list[bool] = field(default_factory=list)  # per test image, in split order (paired for McNemar)
    actual: list[str] = field(default_factory=list)  # per test image, in split order: the true class
    predicted: list[str] = field(default_factory=list)  # and the model's (paired for the bootstrap intervals)


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome."""

    rule: str
    value: str
    threshold: str
    verdict: Verdict


@dataclass(frozen=True)
class Decision:
    """PASS only when no rule failed."""

    verdict: Literal["PASS", "FAIL"]
    rules: list[RuleResult]
    champion: str | None = None
    champion_seq: int = 0  # the alias entry naming the champion judged against (0: none); promotion comes next
    champion_recall: dict[str, float] | None = None  # the champion's per-class recall on the same test split

    def with_rules(self, rules: list[RuleResult]) -> Decision:
        """This decision with more rules judged (the verdict recomputed)."""
        every = self.rules + rules
        return replace(self, verdict="FAIL" if any(r.verdict == "FAIL" for r in every) else "PASS", rules=every)

    @property
    def passed(self) -> bool:
        """Whether the challenger may be promoted."""
        return self.verdict == "PASS"

    def to_dict(self) -> dict:
        """JSON-friendly form (stored with the version and in the run summary)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Decision:
        """Inverse of :meth:`to_dict`."""
        rules = [RuleResult(**r) for r in data["rules"]]
        return cls(data["verdict"], rules, data.get("champion"), data.get("champion_seq", 0),
                   data.get("champion_recall"))  # fmt: skip

    def to_markdown(self) -> str:
        """The rule table, as printed and stored."""
        against = f"champion {plain(self.champion)}" if self.champion else "no champion"
        lines = [
            f"**Decision: {self.verdict}** (against {against})",
            "",
            "| rule | value | threshold | verdict |",
            "| --- | --- | --- | --- |",
        ]
        lines += ["| " + " | ".join(plain(c) for c in (r.rule, r.value, r.threshold, r.verdict)) + " |"
                  for r in self.rules]  # fmt: skip
        return "\n".join(lines)


def _floors(report: ScoreReport, policy: GateParams) -> list[RuleResult]:
    return [
        RuleResult(
            f"floor {metric}",
            f"{report.metrics[metric]:.4f}",
            f">= {floor}",
            "PASS" if report.metrics[metric] >= floor else "FAIL",
        )
        for metric, floor in policy.floors.items()
    ]


def _gain(challenger: ScoreReport, champion: ScoreReport, policy: GateParams) -> list[RuleResult]:
    metric = policy.primary_metric
    new, old = challenger.metrics[metric], champion.metrics[metric]
    delta = (new - old) if policy.direction == "maximize" else (old - new)
    relative = delta / abs(old) if old else float("inf") if delta > 0 else 0.0
    absolute_ok = delta > 0 and delta >= policy.min_abs_gain
    return [
        RuleResult(
            f"gain {metric}",
            f"{new:.4f} vs {old:.4f} ({delta:+.4f})",
            f"> 0 and >= {policy.min_abs_gain} ({policy.direction})",
            "PASS" if absolute_ok else "FAIL",
        ),
        RuleResult(
            f"relative gain {metric}",
            f"{relative:+.2%}",
            f">= {policy.min_rel_gain:.2%}",
            "PASS" if delta > 0 and relative >= policy.min_rel_gain else "FAIL",
        ),
    ]


def _class_recalls(challenger: ScoreReport, champion: ScoreReport, policy: GateParams) -> list[RuleResult]:
    results = []
    for name in challenger.classes:
        new, old = challenger.metrics["per_class"][name], champion.metrics["per_class"][name]
        drop = old["recall"] - new["recall"]
        value = f"{new['recall']:.3f} vs {old['recall']:.3f} (drop {drop:+.3f})"
        if new["support"] < policy.min_class_support:
            results.append(
                RuleResult(
                    f"recall {name}",
                    value,
                    f"support {new['support']} < {policy.min_class_support}: reported, not judged",
                    "INFO",
                )
            )
        else:
            verdict = "PASS" if drop <= policy.max_class_recall_drop else "FAIL"
            results.append(RuleResult(f"recall {name}", value, f"drop <= {policy.max_class_recall_drop}", verdict))
    return results


def mcnemar_p(challenger_correct: list[bool], champion_correct: list[bool]) -> tuple[int, int, float]:
    """Exact (binomial) McNemar test: (champion-only correct, challenger-only correct, two-sided p)."""
    from scipy.stats import binomtest

    b = sum(old and not new for new, old in zip(challenger_correct, champion_correct, strict=True))
    c = sum(new and not old for new, old in zip(challenger_correct, champion_correct, strict=True))
    return b, c, (binomtest(c, b + c, 0.5).pvalue if b + c else 1.0)


def _intervals(challenger: ScoreReport, champion: ScoreReport, policy: GateParams) -> list[RuleResult]:
    """Paired bootstrap intervals of the gain (primary metric, then macro-F1): a rule on the primary metric's lower
    bound when ``gate.min_ci_lower`` is set, else reported."""
    if not challenger.predicted or challenger.actual != champion.actual:
        judged = policy.min_ci_lower is not None  # a rule that cannot be evaluated never passes
        return [RuleResult("confidence interval", "unavailable", "needs both models' predictions per image",
                           "FAIL" if judged else "INFO")]  # fmt: skip
    index = {name: i for i, name in enumerate(challenger.classes)}
    truth, new, old = (
        np.array([index[c] for c in names]) for names in (challenger.actual, challenger.predicted, champion.predicted)
    )
    if policy.direction == "minimize":  # the gain is then champion - challenger
        new, old = old, new
    results = []
    for metric in dict.fromkeys([policy.primary_metric, "macro_f1"]):
        interval = paired_difference(
            metric,
            truth,
            new,
            old,
            len(index),
            policy.ci_confidence,
            policy.bootstrap_resamples,
            policy.bootstrap_seed,
        )
        name = f"{policy.ci_confidence:.0%} CI of gain {metric}"
        judged = metric == policy.primary_metric and policy.min_ci_lower is not None
        if not judged:
            results.append(
                RuleResult(name, interval.describe(), "reported (gate.min_ci_lower judges the primary)", "INFO")
            )
            continue
        passed = interval.low >= policy.min_ci_lower
        results.append(
            RuleResult(name, interval.describe(), f"lower >= {policy.min_ci_lower}", "PASS" if passed else "FAIL")
        )
    return results


def data_health_rules(health: dict, max_drift: float | None) -> list[RuleResult]:
    """The training data's health in the decision record: leaks and label issues reported; drift from the
    champion's training data reported, or judged when ``health.max_drift`` is set."""
    rules = [
        RuleResult(
            "test leaks",
            f"{health.get('leaks', 0)} near duplicate(s), {health.get('leaks_dropped', 0)} dropped",
            "health.leakage",
            "INFO",
        )
    ]
    if health.get("label_issue_fraction") is not None:
        rules.append(
            RuleResult(
                "label issues", f"{health['label_issue_fraction']:.1%}", "health.max_label_issue_fraction", "INFO"
            )
        )
    mmd2 = health.get("drift_mmd2")
    if mmd2 is None:
        return rules
    value = f"MMD² {mmd2:.4g} (p={health.get('drift_p_value', 1.0):.3g})"
    if max_drift is None:
        rules.append(RuleResult("data drift", value, "reported (health.max_drift: null)", "INFO"))
    else:
        rules.append(RuleResult("data drift", value, f"MMD² <= {max_drift}", "PASS" if mmd2 <= max_drift else "FAIL"))
    return rules


def decide(
    challenger: ScoreReport,
    champion: ScoreReport | None,
    policy: GateParams,
    champion_version: str | None = None,
    allow_class_change: bool = False,
) -> Decision:
    """Judge a challenger against the champion (or, on the first run, against the floors alone)."""
    rules = _floors(challenger, policy)
    if champion is None:
        rules.append(RuleResult("champion", "none", "first model: floors only", "INFO"))
        return _verdict(rules, None)
    added, removed = (
        sorted(set(challenger.classes) - set(champion.classes)),
        sorted(set(champion.classes) - set(challenger.classes)),
    )
    if added or removed:
        allowed = allow_class_change or policy.allow_class_change
        value = f"added {added}, removed {removed}"
        if not allowed:
            rules.append(RuleResult("class set", value, "unchanged (or --allow-class-change)", "FAIL"))
            return _verdict(rules, champion_version)
        rules.append(RuleResult("class set", value, "change allowed (--allow-class-change): champion reset", "PASS"))
        rules.append(RuleResult("comparison", "skipped", "the champion predicts other classes", "INFO"))
        return _verdict(rules, champion_version)
    same_split = challenger.split == champion.split
    rules.append(
        RuleResult(
            "split params",
            "equal" if same_split else f"{challenger.split} vs {champion.split}",
            "equal to the champion's (else its training images may be in the test split)",
            "PASS" if same_split else "FAIL",
        )
    )
    rules += _gain(challenger, champion, policy)
    rules += _class_recalls(challenger, champion, policy)
    rules += _intervals(challenger, champion, policy)
    if policy.mcnemar_alpha is not None:
        b, c, p = mcnemar_p(challenger.correct, champion.correct)
        passed = c > b and p < policy.mcnemar_alpha
        rules.append(
            RuleResult(
                "McNemar exact",
                f"p={p:.4g} (champion-only {b}, challenger-only {c})",
                f"p < {policy.mcnemar_alpha} and challenger ahead",
                "PASS" if passed else "FAIL",
            )
        )
    return _verdict(rules, champion_version)


def _verdict(rules: list[RuleResult], champion: str | None) -> Decision:
    return Decision("FAIL" if any(r.verdict == "FAIL" for r in rules) else "PASS", rules, champion)
