"""What a pipeline step is (one row of the pipeline table) and the context it runs in.

A step's ``run`` takes the context and returns a typed result; the next steps get it from the context. Under
the Prefect flow every result is still in memory; under ``headstart step NAME`` (what ``dvc repro`` calls) or a
resume, an upstream result is read back from the run folder by that step's ``load``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from headstart.ground.errors import DataError
from headstart.ground.params import Params
from headstart.ground.run_folder import RunFolder

PROJECT_PACKAGES = ("headstart", "tasks", "flows")


@dataclass(frozen=True)
class Step:
    """One row of the pipeline table.

    The step's code lives in :attr:`module`, imported only when the step's functions are first asked for, so
    the table itself is read for free (rendering dvc.yaml, listing steps, ``headstart step NAME`` for one step).

    Attributes:
        name: the step's name (Prefect task name, ``headstart step NAME``, DVC stage).
        module: the module defining ``run`` and optionally ``load`` and ``check`` (see the properties).
        reads: run-folder entries it needs (``RunFolder.entry`` names).
        writes: run-folder entries it creates (DVC outs).
        metrics, plots: run-folder entries it creates that DVC shows as metrics and plots.
        params: params keys it reads (sections or dotted keys), for DVC; ``data_params`` name folders it reads.
        retries: Prefect task retries (registry I/O); 0 for compute steps.
        in_dvc: whether ``dvc.yaml`` has a stage for it (publishing to Prefect has none).
        best_effort: runs after the champion moved: a failure is logged, never fails the run.
    """

    name: str
    module: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    data_params: tuple[str, ...] = ()
    retries: int = 0
    in_dvc: bool = True
    best_effort: bool = False

    def _code(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def run(self) -> Callable[[StepContext], Any]:
        """context → result; writes its outputs into the run folder."""
        return self._code().run

    @property
    def load(self) -> Callable[[StepContext], Any] | None:
        """context → the result :attr:`run` returned, read back from the run folder (None: cannot be)."""
        return getattr(self._code(), "load", None)

    @property
    def check(self) -> Callable[[StepContext, Any], None] | None:
        """(context, result) → None, or raises to stop the run (invalid data). Called outside the Prefect task,
        so a stop is one clear message, not a task traceback; also applied to a loaded result."""
        return getattr(self._code(), "check", None)

    def code_files(self) -> list[Path]:
        """Every project source file the step's module imports, transitively (also imports inside functions):
        what its DVC stage depends on, so editing or upgrading any of them re-runs the stage."""
        return sorted(_module_file(m) for m in project_imports(self.module))  # type: ignore[type-var]


def first_few(items: list[str], limit: int = 5) -> str:
    """``a; b; c (and N more)``: what a stop message names, the full list being in the step's report."""
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def code_fingerprint(steps: Iterable[Step]) -> str:
    """sha256 over the source files the steps run (each file's name and bytes, in order): what a resume key needs
    so that results of other code are never reused."""
    digest = hashlib.sha256()
    for step in steps:
        for path in step.code_files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class StepContext:
    """What every step gets: params, the run folder, the pipeline table, and the results so far."""

    params: Params
    run: RunFolder
    steps: Mapping[str, Step]
    workspace: Path = field(default_factory=Path.cwd)
    flow_run_id: str | None = None
    allow_class_change: bool = False
    trigger: dict | None = None  # the data change that started this run, if any
    results: dict[str, Any] = field(default_factory=dict)

    def result(self, name: str) -> Any:
        """Step ``name``'s result: from memory, else read back from the run folder (and checked again)."""
        if name not in self.results:
            step = self.steps[name]
            if step.load is None:
                raise KeyError(f"step {name!r} has not run and its result cannot be read back")
            try:
                loaded = step.load(self)
            except FileNotFoundError as exc:
                hint = f"headstart step {name} --out {self.run.root}"
                raise DataError(f"{exc.filename}: not found; run the {name} step first ({hint})") from None
            if step.check is not None:
                step.check(self, loaded)
            self.results[name] = loaded
        return self.results[name]


@functools.cache
def _package_dir(top: str) -> Path:
    spec = importlib.util.find_spec(top)  # the top-level packages' __init__ files import nothing
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(top)
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _module_file(module: str) -> Path | None:
    """The source file of a project module, found on disk without importing it; None when it is not one (a
    function or class named in ``from x import name``)."""
    top, *rest = module.split(".")
    base = _package_dir(top).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache  # rendering dvc.yaml asks for the same modules' imports once per stage
def _imports_of(module: str) -> frozenset[str]:
    """Project modules named by import statements anywhere in ``module`` (inside functions too)."""
    path = _module_file(module)
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PROJECT_PACKAGES and _module_file(n) is not None}
    return frozenset(found)


def project_imports(root: str) -> set[str]:
    """``root`` and every project module it imports, transitively, with the packages on the way."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += sorted(_imports_of(module) - seen)
    return seen
