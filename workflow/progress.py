"""Progress of a running campaign: a live table on a terminal, else a log line now and then; a summary at the end."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from mummi.workflow.status import collect

log = logging.getLogger("mummi.progress")


class Progress:
    def __init__(self, workdir, gpu_slots: int, every_s: float = 15.0) -> None:
        self.workdir, self.gpu_slots, self.every_s = workdir, gpu_slots, every_s
        self._last = 0.0
        self._live = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=2, transient=False)
            self._live.start()

    def update(self, sampler: Any | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (1.0 if self._live else self.every_s):
            return
        self._last = now
        figures = self.figures(sampler)
        if self._live is not None:
            self._live.update(_table(figures))
        else:
            log.info("%s", "; ".join(f"{k} {v}" for k, v in figures.items()))

    def figures(self, sampler: Any | None) -> dict[str, Any]:
        status = collect(self.workdir)
        sims = status["sims"]
        macro_ns = status["macro_time_ns"]
        rounds = [r for r in status["feedback_rounds"] if r["finished"]]
        return {
            "macro time": "—" if macro_ns is None else f"{macro_ns / 1000:.2f} µs",
            "patches seen": status["patches"]["total"],
            "candidates": "—" if sampler is None else sampler.n_candidates,
            "selections": sims["total"],
            "sims queued": sims["selected"] + sims["setting_up"] + sims["ready"],
            "sims running": sims["running"],
            "sims done": sims["done"],
            "sims failed": sims["failed"],
            "GPU occupancy": f"{sims['running']}/{self.gpu_slots}",
            "feedback round": len(rounds),
            "g(r) distance": "—" if not rounds or rounds[-1]["distance"] is None else f"{rounds[-1]['distance']:.4f}",
        }

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def _table(figures: dict[str, Any]):
    from rich.table import Table

    table = Table("campaign", "now", title="mummi-run")
    for key, value in figures.items():
        table.add_row(key, str(value))
    return table


def summary(workdir) -> str:
    """A few lines for the end of a run."""
    status = collect(workdir)
    sims, patches = status["sims"], status["patches"]
    distances = [r["distance"] for r in status["feedback_rounds"] if r["finished"] and r["distance"] is not None]
    lines = [
        f"Summary of campaign {status['campaign']!r} (run {status['runs']}) in {status['workdir']}:",
        f"  macro time {(status['macro_time_ns'] or 0) / 1000:.2f} µs; {patches['total']} patches evaluated",
        f"  {sims['total']} selected; sims done {sims['done']}, failed {sims['failed']}, unfinished "
        f"{sims['total'] - sims['done'] - sims['failed']}",
        f"  feedback rounds {len(distances)}; g(r) distance macro vs MD: "
        + (
            "; ".join(
                f"{'initial' if k == 0 else f'after {k} round' + 's' * (k > 1)} {d:.4f}"
                for k, d in enumerate(distances)
            )
            or "—"
        ),
    ]
    return "\n".join(lines)
