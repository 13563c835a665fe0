"""A rich progress bar for ``fit``, with one summary line per epoch."""

from __future__ import annotations

import rich.progress
from rich.console import Console


class Progress:
    """Batch progress within an epoch and a printed line of metrics after it; silent when disabled."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled, self.total_epochs = enabled, total_epochs
        self.console = Console(stderr=True)
        self._bar: rich.progress.Progress | None = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("[bold]{task.description}"), rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(), rich.progress.TimeElapsedColumn(),
                rich.progress.TextColumn("loss {task.fields[loss]:.4f}"),
                console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(f"epoch {epoch + 1}/{self.total_epochs}", total=steps, loss=0.0)

    def advance(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=loss)

    def end_epoch(self, record: dict) -> None:
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
        self.log(shown)

    def log(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)
