"""The sampler's append-only event history, for the paper's Fig. 3 view.

One CSV row per event: ``time`` (Unix seconds), ``event`` (``add``, ``discard``,
``select``), ``patch_id`` (selections only), ``score`` (the selected candidate's
score), ``count`` (patches the event covers), ``n_candidates``, ``n_selected`` and
``n_seen`` (|C|, |S| and patches evaluated so far, after the event). Rows are
buffered and appended on :meth:`EventHistory.flush` (called by every checkpoint);
a restored sampler cuts the file back to its length at checkpoint time, so the
history always matches the state.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np

from mummi.core.unreadable import reading

COLUMNS = ("time", "event", "patch_id", "score", "count", "n_candidates", "n_selected", "n_seen")
_FLUSH_ROWS = 10_000


class EventHistory:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rows: list[tuple[object, ...]] = []

    def append(
        self, event: str, patch_id: str, score: float, count: int, n_candidates: int, n_selected: int, n_seen: int
    ) -> None:
        self._rows.append(
            (f"{time.time():.6f}", event, patch_id, repr(float(score)), count, n_candidates, n_selected, n_seen)
        )
        if len(self._rows) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer.writerow(COLUMNS)
        writer.writerows(self._rows)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        self._rows.clear()

    @property
    def size(self) -> int:
        """Bytes on disk (call :meth:`flush` first to include buffered rows)."""
        return self.path.stat().st_size if self.path.exists() else 0

    @staticmethod
    def truncate(path: str | Path, size: int) -> None:
        """Cut ``path`` back to ``size`` bytes (a no-op when it is not longer)."""
        path = Path(path)
        if path.exists() and path.stat().st_size > size:
            with open(path, "r+b") as fh:
                fh.truncate(size)


def read_history(path: str | Path) -> dict[str, np.ndarray]:
    """The history as columns: ``time``/``score`` float, counts int, ``event``/``patch_id`` str."""
    with reading(path, "sampler event history"), open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        cols = dict(zip(header, zip(*body))) if body else {name: () for name in header}
        out: dict[str, np.ndarray] = {}
        for name in COLUMNS:
            values = cols[name]
            if name in ("time", "score"):
                out[name] = np.array(values, dtype=np.float64)
            elif name in ("event", "patch_id"):
                out[name] = np.array(values, dtype=str)
            else:
                out[name] = np.array(values, dtype=np.int64)
        return out


def plot_history(path: str | Path, out: str | Path) -> Path:
    """The paper's Fig. 3 view of a history: each selection's score over time (dots, left
    axis) and the cumulative numbers of patches evaluated and selected (right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = read_history(path)
    hours = (h["time"] - h["time"][0]) / 3600 if len(h["time"]) else h["time"]
    sel = h["event"] == "select"
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.scatter(hours[sel], h["score"][sel], s=2, color="0.5", label="selection score")
    ax.set_xlabel("wall-clock time (h)")
    ax.set_ylabel("DynIm score of the selected patch")
    right = ax.twinx()
    right.plot(hours, h["n_seen"], color="tab:blue", label="evaluated")
    right.plot(hours, h["n_selected"], color="tab:orange", label="selected")
    right.set_ylabel("patches")
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return Path(out)
