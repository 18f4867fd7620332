"""The shipped Prometheus alert rules (flows/ops_metrics.rules.yml): valid for promtool, each alert firing on the
series that should fire it and not on those that should not (tests/ops/alerts_test.yml, promtool's own unit
tests), and naming only series the collector exports. promtool is Debian's prometheus package: CI installs it and
sets HEADSTART_REQUIRE_PROMETHEUS, so there the tests fail rather than skip without it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.ops_metrics import exposed_names

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "flows" / "ops_metrics.rules.yml"
UNIT_TESTS = REPO / "tests" / "ops" / "alerts_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("HEADSTART_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool not found (Debian's prometheus package) and HEADSTART_REQUIRE_PROMETHEUS is set")
        pytest.skip("promtool not installed (Debian's prometheus package)")
    return found


def test_promtool_accepts_the_rules_and_each_alerts_unit_tests_pass() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    covered = {test["alertname"] for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
               for test in case["alert_rule_test"]}  # fmt: skip
    assert alerts == covered and len(alerts) == 5  # every alert has its unit test


def test_a_unit_test_that_expects_the_wrong_alert_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the drift alert expected on the steady series is reported by promtool."""
    tool = promtool()
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    [drift] = [case for case in tests["tests"] if "drift" in case["name"]]
    drift["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["model"] = "steady"
    tests["tests"] = [drift]
    tests["rule_files"] = [str(RULES)]
    wrong = tmp_path / "wrong_alerts_test.yml"
    wrong.write_text(yaml.safe_dump(tests))
    result = subprocess.run([tool, "test", "rules", str(wrong)], capture_output=True, text=True)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_the_rules_name_only_series_the_collector_exports() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    named = {name for rule in rules for name in re.findall(r"\bheadstart_[a-z0-9_]+\b", rule["expr"])}
    assert len(named) == 5 and named <= exposed_names(), sorted(named - exposed_names())
