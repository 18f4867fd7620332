"""The process environment every Headstart entry point sets first: no phoning home, project logs at INFO.

Phoning home costs seconds offline (albumentations blocks 2 s at import) or fails outright, so these are set
before those libraries are imported: by the CLI, the test session and the Prefect job environment
(prefect.yaml's ``job_env`` repeats them; a test keeps the two equal).
"""

from __future__ import annotations

import os

QUIET_ENV: dict[str, str] = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # the watcher measures drift outside any flow run: its log lines stay local, without a warning about it
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
# Prefect forwards these loggers' records to the run's logs in the UI.
PROJECT_LOGGERS = ("headstart", "tasks", "flows")
LOGGING_ENV: dict[str, str] = {"PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(PROJECT_LOGGERS)}


def apply_quiet_environment() -> None:
    """Set :data:`QUIET_ENV` and :data:`LOGGING_ENV` where the user has not set them already."""
    for key, value in {**QUIET_ENV, **LOGGING_ENV}.items():
        os.environ.setdefault(key, value)


def log_project_at_info() -> None:
    """Step progress (epochs, freezing, gate) is logged at INFO by the project's loggers; Prefect attaches its
    handlers to them but leaves their level at the root's WARNING."""
    import logging

    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
