"""The RDF counts of many sims as one table, so that a feedback round is one weighted sum.

A row holds one sim's counts per analysed frame summed into the comparison shells
(per channel), then its pair density per frame. The weighted g(r) of any set of
sims on those shells is then ``Σ w·counts / (Σ w·density × shell area)``: the
same number as weighting each sim's fine histogram, normalising it and averaging
it over each shell by area (:func:`~mummi.analysis.feedback.weighted_gr` and
:func:`~mummi.analysis.feedback.rebin`), without reading one file per sim.

:class:`RdfTable` keeps the rows of sims whose analysis has finished in
``rows.f64`` (raw float64, one fixed-length row each, appended) and their sim
ids in ``sims.txt`` (one per line, appended after the row). On opening, rows
beyond the ids (a write cut short) are dropped, so the two files always agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mummi.analysis.rdf import RDFCounts
from mummi.core.unreadable import reading


class RdfShells:
    """Comparison shells (``edges_nm``) over the analysis' fine bins (``fine_edges_nm``)."""

    def __init__(self, fine_edges_nm: np.ndarray, edges_nm: np.ndarray) -> None:
        self.fine_edges = np.asarray(fine_edges_nm, dtype=np.float64)
        self.edges = np.asarray(edges_nm, dtype=np.float64)
        centres = 0.5 * (self.fine_edges[1:] + self.fine_edges[:-1])
        self._shell_of = np.searchsorted(self.edges, centres, side="right") - 1
        self._inside = (self._shell_of >= 0) & (self._shell_of < len(self.edges) - 1)
        fine_area = np.pi * np.diff(self.fine_edges**2)
        self.area = np.bincount(self._shell_of[self._inside], fine_area[self._inside], minlength=self.n_shells)

    @property
    def n_shells(self) -> int:
        return len(self.edges) - 1

    def row(self, rdf: RDFCounts) -> np.ndarray | None:
        """One sim's row: counts per frame by (channel, shell), then pair density per frame; None before a frame."""
        if rdf.frames_done == 0:
            return None
        if not np.array_equal(rdf.edges_nm, self.fine_edges):
            raise ValueError("the RDF counts have other bins than the campaign's analysis")
        counts = np.zeros((rdf.counts.shape[0], self.n_shells))
        for shell in range(self.n_shells):
            counts[:, shell] = rdf.counts[:, self._inside & (self._shell_of == shell)].sum(axis=1)
        return np.concatenate([counts.ravel(), np.asarray(rdf.pair_density, dtype=np.float64)]) / rdf.frames_done

    def gr(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """g(r) (channels × shells) of the weighted rows; NaN for a channel with no pairs."""
        total = np.asarray(weights, dtype=np.float64) @ rows
        channels = len(total) // (self.n_shells + 1)
        counts, density = total[: channels * self.n_shells].reshape(channels, self.n_shells), total[-channels:]
        expected = density[:, None] * self.area[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(expected > 0, counts / expected, np.nan)


class RdfTable:
    """The rows of finished sims, appended as their analyses finish; kept in ``directory``."""

    def __init__(self, directory: str | Path, shells: RdfShells, channels: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shells, self.width = shells, channels * (shells.n_shells + 1)
        self._rows_path, self._ids_path = self.directory / "rows.f64", self.directory / "sims.txt"
        with reading(self._ids_path, "list of sim ids (one per line)"):
            ids = self._ids_path.read_text(encoding="utf-8").splitlines() if self._ids_path.exists() else []
        row_bytes = 8 * self.width
        stored = self._rows_path.stat().st_size // row_bytes if self._rows_path.exists() else 0
        ids = ids[: min(len(ids), stored)]
        with open(self._rows_path, "ab") as fh:
            fh.truncate(len(ids) * row_bytes)
        self._ids_path.write_text("".join(f"{i}\n" for i in ids))
        self.sim_ids: list[str] = ids
        self._known = set(ids)
        stored_rows = np.fromfile(self._rows_path, dtype=np.float64).reshape(-1, self.width)
        self._buffer = np.zeros((max(1024, 2 * len(ids)), self.width))
        self._buffer[: len(ids)] = stored_rows

    def __len__(self) -> int:
        return len(self.sim_ids)

    def __contains__(self, sim_id: object) -> bool:
        return sim_id in self._known

    def add(self, sim_id: str, rdf: RDFCounts) -> bool:
        """Append a finished sim's row (once); False when it has no analysed frame."""
        row = self.shells.row(rdf)
        if row is None or sim_id in self._known:
            return False
        with open(self._rows_path, "ab") as fh:
            fh.write(row.tobytes())
        with open(self._ids_path, "a", encoding="utf-8") as fh:
            fh.write(f"{sim_id}\n")
        n = len(self.sim_ids)
        if n == len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.zeros_like(self._buffer)])
        self._buffer[n] = row
        self.sim_ids.append(sim_id)
        self._known.add(sim_id)
        return True

    def rows(self) -> np.ndarray:
        """Every row, in the order the sims were added (a view: valid until the next :meth:`add`)."""
        return self._buffer[: len(self.sim_ids)]
