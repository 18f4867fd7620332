"""Rich progress bars for the CLI's long steps, drawn only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from headstart.ground.progress import set_reporter


class RichReporter:
    """Turns the steps' tracked work into rows of a rich ``Progress``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, description: str, total: int, completed: int) -> Hashable:
        return self.progress.add_task(description, total=total, completed=completed)

    def advance(self, handle: Hashable, steps: int) -> None:
        self.progress.advance(handle, steps)

    def finish(self, handle: Hashable, transient: bool) -> None:
        if transient:
            self.progress.remove_task(handle)


def make_progress(console: Console) -> Progress:
    """Description, bar, n/total, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[None]:
    """Show the steps' progress as bars while the block runs (nothing when not on a terminal: logs and CI
    output stay plain)."""
    console = console or Console(stderr=True, markup=False, emoji=False)  # step names and log lines are text
    if not console.is_terminal:
        yield
        return
    with make_progress(console) as progress:
        previous = set_reporter(RichReporter(progress))
        try:
            yield
        finally:
            set_reporter(previous)
