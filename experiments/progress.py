"""A rich progress bar for runs: steps/s, population, fitness and consensus quality."""

from __future__ import annotations

from typing import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class StepProgress:
    """Context manager; `update(step, metrics)` after each step. Writes to stderr."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]swarm"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} steps/s"),
            TextColumn("pop {task.fields[population]}"), TextColumn("fit {task.fields[fitness]}"),
            TextColumn("quality {task.fields[quality]}"), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("run", total=total, completed=start, rate="-",
                                           population="-", fitness="-", quality="-")

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        speed = self.progress.tasks[0].speed
        self.progress.update(
            self.task, completed=step, rate=f"{speed:.1f}" if speed else "-",
            population=f"{metrics['population']:.0f}", fitness=f"{metrics['fitness_mean']:.3f}",
            quality=f"{metrics['quality']:.3f}",
        )
