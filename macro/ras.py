"""RAS particles: overdamped Langevin dynamics on the membrane (seed 000, "The macro model").

Each RAS is a point X_a with a state s_a. Its energy in the lipid fields is
E_a = Σ_i Σ_g h² c_i(g) U_i^a(g), where U^a is the RAS's potential deposited on the
grid with cloud-in-cell (bilinear) weights w_ag and convolved with the grid-sampled
V_{s,i}. Hence E_a = Σ_g w_ag W_s(g) with W_s = h² Σ_i c_i * V_{s,i}: the energy is
the bilinear interpolant of W at X_a, and the force is minus its gradient, which
is exact, cheap (four grid values per RAS and substep) and the mirror image of
what the lipids feel. RAS-RAS: a soft repulsion ε(1 - r/σ)² for r < σ.

Many substeps (25 ps) run inside one lipid step (20 ns) with the lipid fields
frozen, as in the paper. Positions are in nm; arrays of points are (n, 2) as (x, y).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

log = logging.getLogger(__name__)

#: Extra range of the RAS-RAS pair list; it is rebuilt when a RAS moves half of it.
PAIR_SKIN_NM = 2.0
_CHECK_EVERY = 50


def cell_weights(positions_nm: np.ndarray, spacing_nm: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower-left grid cell (ix, iy) (periodic) and fractional offsets (fx, fy) of each point."""
    g = positions_nm / spacing_nm
    base = np.floor(g)
    return base.astype(np.int64) % n, g - base


def cic_stencils(stencil: np.ndarray) -> np.ndarray:
    """The stencil shifted to each corner of a cell: (n_states, 4, channels, 2m+2, 2m+2).

    Corners (dy, dx) = 00, 01, 10, 11.
    """
    n_states, channels, side, _ = stencil.shape
    shifted = np.zeros((n_states, 4, channels, side + 1, side + 1), stencil.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        shifted[:, k, :, dy : dy + side, dx : dx + side] = stencil
    return shifted


def potential_blocks(
    positions_nm: np.ndarray, states: np.ndarray, corner_stencils: np.ndarray, spacing_nm: float, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each RAS's potential on the grid points around it, by cloud-in-cell deposition.

    ``corner_stencils`` comes from :func:`cic_stencils` of V on grid offsets.
    Returns (rows, cols, blocks): periodic row and column indices (n, 2m+2) and the
    values (n, channels, 2m+2, 2m+2) to add at ``field[:, rows[a], cols[a]]``.
    """
    n_states, _, channels, side, _ = corner_stencils.shape
    cell, frac = cell_weights(positions_nm, spacing_nm, n)
    fx, fy = frac[:, 0], frac[:, 1]
    weights = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=1).astype(
        corner_stencils.dtype
    )
    blocks = np.empty((len(positions_nm), channels, side, side), corner_stencils.dtype)
    for s in range(n_states):
        mine = np.flatnonzero(states == s)
        if mine.size:
            # einsum, not a BLAS product: with 4 corners BLAS threading costs more than the arithmetic
            blocks[mine] = np.einsum("nk,kj->nj", weights[mine], corner_stencils[s].reshape(4, -1)).reshape(
                mine.size, channels, side, side
            )
    span = np.arange(-(side // 2) + 1, side // 2 + 1)
    rows = (cell[:, 1:2] + span[None]) % n
    cols = (cell[:, 0:1] + span[None]) % n
    return rows, cols, blocks


def field_force(positions_nm: np.ndarray, states: np.ndarray, w: np.ndarray, spacing_nm: float) -> np.ndarray:
    """-∇ of the bilinear interpolant of W_{state} at each position (kJ/mol/nm)."""
    n = w.shape[-1]
    cell, frac = cell_weights(positions_nm, spacing_nm, n)
    a, b = _affine_force(w.reshape(-1), states * (n * n), cell, n, spacing_nm)
    return a + b * frac[:, ::-1]


def _affine_force(
    w_flat: np.ndarray, base: np.ndarray, cell: np.ndarray, n: int, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the force of the bilinear W as a + b·(fy, fx) (a: (n, 2), b: (n, 1)).

    With corner values w00, w01 (x+1), w10 (y+1), w11:
    Fx = [(1-fy)(w00-w01) + fy(w10-w11)]/h, Fy = [(1-fx)(w00-w10) + fx(w01-w11)]/h.
    """
    ix, iy = cell[:, 0], cell[:, 1]
    ix1 = (ix + 1) % n
    r0 = base + iy * n
    r1 = base + ((iy + 1) % n) * n
    index = np.empty((len(cell), 4), np.int64)
    np.add(r0, ix, out=index[:, 0])
    np.add(r0, ix1, out=index[:, 1])
    np.add(r1, ix, out=index[:, 2])
    np.add(r1, ix1, out=index[:, 3])
    w = w_flat[index]  # w00, w01, w10, w11
    a = (w[:, :1] - w[:, 1:3]) / h
    b = (w[:, 1:2] + w[:, 2:3] - w[:, 0:1] - w[:, 3:4]) / h  # (n, 1): the same for both components
    return a, b


def _min_image(d: np.ndarray, box_nm: float) -> np.ndarray:
    return d - box_nm * np.round(d / box_nm)


def pairs_within(positions_nm: np.ndarray, cutoff_nm: float, box_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) closer than ``cutoff_nm`` (minimum image)."""
    if len(positions_nm) < 2:
        empty = np.empty(0, np.int64)
        return empty, empty
    i, j = np.triu_indices(len(positions_nm), k=1)
    d = _min_image(positions_nm[i] - positions_nm[j], box_nm)
    close = np.einsum("ij,ij->i", d, d) < cutoff_nm**2
    return i[close], j[close]


def pair_force(
    positions_nm: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], eps_kj_mol: float, size_nm: float, box_nm: float
) -> np.ndarray:
    """Forces of the soft repulsion ε(1 - r/σ)² between the listed pairs (kJ/mol/nm)."""
    i, j = pairs
    return _repulsion(
        _min_image(positions_nm[i] - positions_nm[j], box_nm), pairs, len(positions_nm), eps_kj_mol, size_nm
    )


def _pair_force_cells(
    cell: np.ndarray,
    frac: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    eps_kj_mol: float,
    size_nm: float,
    h: float,
    box_nm: float,
) -> np.ndarray:
    """:func:`pair_force` for positions given as grid cell + fraction (the substep loop's form)."""
    i, j = pairs
    d = _min_image(((cell[i] - cell[j]) + (frac[i] - frac[j])) * h, box_nm)
    return _repulsion(d, pairs, len(cell), eps_kj_mol, size_nm)


def _repulsion(
    d: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], n: int, eps_kj_mol: float, size_nm: float
) -> np.ndarray:
    """Forces from the pair separations d = x_i - x_j (minimum image)."""
    r = np.sqrt(np.einsum("ij,ij->i", d, d))
    f = (2.0 * eps_kj_mol / size_nm) * np.clip(1.0 - r / size_nm, 0.0, None) / np.maximum(r, 1e-12)
    fv = d * f[:, None]
    force = np.zeros((n, 2))
    np.add.at(force, pairs[0], fv)
    np.subtract.at(force, pairs[1], fv)
    return force


@dataclass(frozen=True)
class RasDynamics:
    """Langevin parameters of one lipid step: D (nm²/ns), kT (kJ/mol), RAS-RAS ε, σ, box."""

    diffusion_nm2_per_ns: float
    kt_kj_mol: float
    repulsion_kj_mol: float
    size_nm: float
    box_nm: float
    spacing_nm: float
    substeps: int
    substep_ns: float

    def run(self, positions_nm: np.ndarray, states: np.ndarray, w: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """``substeps`` Euler-Maruyama steps in the frozen field W; returns new (wrapped) positions.

        ``normals`` holds the (substeps, n, 2) standard normals of the thermal noise.
        Positions are tracked as grid cell + fraction: within a cell the force of
        the bilinear W is affine in the fraction (F = a + b·(fy, fx)), so a substep
        costs a few vector operations and a cell's four W values are looked up only
        when a RAS enters it.
        """
        x = np.array(positions_nm, dtype=np.float64)
        if len(x) == 0 or self.diffusion_nm2_per_ns == 0:
            return x % self.box_nm
        n = w.shape[-1]
        h = self.spacing_nm
        w_flat = np.ascontiguousarray(w, dtype=np.float64).reshape(-1)
        base = np.asarray(states, dtype=np.int64) * (n * n)
        step = self.diffusion_nm2_per_ns * self.substep_ns / self.kt_kj_mol / h  # grid units per kJ/mol/nm
        kicks = normals * (math.sqrt(2.0 * self.diffusion_nm2_per_ns * self.substep_ns) / h)
        g = x / h
        cell = np.floor(g)
        frac = g - cell
        cell = cell.astype(np.int64) % n
        a, b = _affine_force(w_flat, base, cell, n, h)
        a *= step
        b *= step
        pairs_on = self.repulsion_kj_mol > 0 and len(x) > 1
        reference, pairs = x.copy(), self._pairs(x) if pairs_on else None
        move = np.empty_like(frac)
        for k in range(self.substeps):
            np.multiply(b, frac[:, ::-1], out=move)
            move += a
            move += kicks[k]
            if pairs is not None:
                if k % _CHECK_EVERY == 0 and k:
                    x = (cell + frac) * h
                    if np.max(np.abs(_min_image(x - reference, self.box_nm))) > PAIR_SKIN_NM / 2:
                        reference, pairs = x.copy(), self._pairs(x)
                if pairs[0].size:
                    move += step * _pair_force_cells(
                        cell, frac, pairs, self.repulsion_kj_mol, self.size_nm, h, self.box_nm
                    )
            frac += move
            shift = np.floor(frac)
            if shift.any():
                moved = np.flatnonzero(shift.any(axis=1))
                shift = shift[moved]
                frac[moved] -= shift
                cell_moved = (cell[moved] + shift.astype(np.int64)) % n
                cell[moved] = cell_moved
                a_moved, b_moved = _affine_force(w_flat, base[moved], cell_moved, n, h)
                a_moved *= step
                b_moved *= step
                a[moved] = a_moved
                b[moved] = b_moved
        return ((cell + frac) * h) % self.box_nm

    def _pairs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pairs_within(x, self.size_nm + PAIR_SKIN_NM, self.box_nm)


def switch_states(states: np.ndarray, rates_per_ns: np.ndarray, dt_ns: float, rng: np.random.Generator) -> np.ndarray:
    """The states after dt of the continuous-time Markov chain with these rates (exact: P = exp(Q dt))."""
    rates = np.array(rates_per_ns, dtype=np.float64)
    np.fill_diagonal(rates, 0.0)
    transition = scipy.linalg.expm((rates - np.diag(rates.sum(axis=1))) * dt_ns)
    cumulative = np.cumsum(transition, axis=1)
    u = rng.random(len(states)) * cumulative[:, -1][states]
    return (u[:, None] >= cumulative[states]).sum(axis=1).astype(states.dtype)


def stationary_states(rates_per_ns: np.ndarray) -> np.ndarray:
    """Stationary distribution of the state Markov chain (uniform when there are no rates)."""
    rates = np.array(rates_per_ns, dtype=np.float64)
    np.fill_diagonal(rates, 0.0)
    k = len(rates)
    if not rates.any():
        return np.full(k, 1.0 / k)
    gen = rates - np.diag(rates.sum(axis=1))
    a = np.vstack([gen.T, np.ones(k)])
    p, *_ = np.linalg.lstsq(a, np.r_[np.zeros(k), 1.0], rcond=None)
    p = np.clip(p, 0, None)
    return p / p.sum()


def place_ras(n_ras: int, box_nm: float, min_distance_nm: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform random positions at least ``min_distance_nm`` apart (relaxed if the box is too crowded)."""
    out = np.empty((0, 2))
    d = min_distance_nm
    tries = 0
    while len(out) < n_ras:
        p = rng.random(2) * box_nm
        delta = out - p
        delta -= box_nm * np.round(delta / box_nm)
        if len(out) == 0 or np.min(np.einsum("ij,ij->i", delta, delta)) >= d * d:
            out = np.vstack([out, p])
            tries = 0
        else:
            tries += 1
            if tries > 1000:
                d *= 0.8
                log.warning("crowded box: RAS minimum distance relaxed to %.2f nm", d)
                tries = 0
    return out
