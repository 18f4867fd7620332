"""The small error hierarchy: every message says what is wrong and what to change."""


class HeadstartError(Exception):
    """Base class; the CLI prints these as one clear line instead of a traceback."""


class ConfigError(HeadstartError):
    """params.yaml or a --set override is invalid."""


class DataError(HeadstartError):
    """A dataset is missing, unreadable or not laid out as class-per-folder."""


class ValidationFailed(HeadstartError):
    """The dataset failed its validation suite; the report names each failure."""


class WeightsError(HeadstartError):
    """Pretrained weights could not be found or do not fit the backbone."""


class ToolError(HeadstartError):
    """An external tool (apt, dpkg, git, dvc) is unavailable or failed."""


class RunFailed(HeadstartError):
    """A pipeline run ended Failed; the message is the run's own."""


class ExportMismatch(HeadstartError):
    """An exported model does not reproduce the original's outputs; nothing was written."""


class RunTimedOut(HeadstartError):
    """A step (or the whole run) went past its time limit in ``run``; the run stops and releases its slot."""
