"""Dynamic density functional theory of the 14 lipid fields (seed 000, "The macro model").

Equation (per lipid species i, areal density c_i, kT units)::

    ∂c_i/∂t = ∇·[D_i c_i ∇ δβF/δc_i] + conserved noise,
    δβF/δc_i = ln c_i + φ_i,   φ_i = β Σ_j K_ij * c_j + β U_i,

with K_ij the lipid-lipid direct correlation kernels and U_i = Σ_RAS V_i(|x - X|)
the RAS-lipid potentials (see :mod:`mummi.macro.params`). Since c∇ln c = ∇c, the
ideal part is plain diffusion D_i∇²c_i and everything else is a drift in φ_i.

Numerics (one step of dt, typically 20 ns):

* Space: a periodic N×N grid of spacing h. Drift fluxes are finite-volume fluxes
  on cell faces in the exponentially fitted (Scharfetter-Gummel) form with the
  Bernoulli function replaced by its (2,2) Padé approximant::

      J = (D/h)[(1 + Δ²/12)(c_L - c_R) - (Δ/2)(c_L + c_R)],   Δ = φ_R - φ_L,

  so that a field in equilibrium with any φ, c ∝ exp(-φ), carries no flux to
  O(Δ⁵) per face (the central scheme errs at O(Δ³)), and every species' mass is
  conserved by construction (the k = 0 Fourier mode never changes).
* Time: exponential time differencing (ETD1) in Fourier space. The diffusion part,
  with the 5-point Laplacian symbol Λ(k) matching the face fluxes, is integrated
  exactly (a single Fourier mode decays as exp(-D Λ t), Λ = k²(1 + O(k²h²))); the
  drift is explicit. A linear stabilisation D Λ σ(k) c is added to the implicit
  part and subtracted from the explicit one, with σ(k) an upper bound of the
  linearised interaction strength, so that steps far beyond the explicit limit
  stay stable; it does not change the stationary states.
* Convolutions in Fourier space. Each kernel matrix is applied through its
  eigenvectors (collective fields ψ = u·c), so a default parameter set needs 2
  FFTs for all lipid-lipid interactions instead of 14² products.
* RAS-lipid potentials: each RAS is deposited on the grid with cloud-in-cell
  weights and convolved with the grid-sampled V (a local stencil, added block by
  block); the RAS feel the lipids through W_s = h² Σ_i c_i * V_{s,i}, computed in
  Fourier space (one inverse FFT per RAS state), which is the exact gradient
  partner of that deposition (see :mod:`mummi.macro.ras`).
* Conserved noise, coarse-grained over ``noise_length_nm``, linearised about the
  mean concentrations and added mode by mode as the exact Ornstein-Uhlenbeck
  increment of the ideal-gas dynamics (so an ideal species fluctuates with the
  Poisson variance of that coarse-grained density, times ``noise_scale²``).
* Concentrations stay non-negative. Without noise the scheme keeps them so for
  the default physics; the additive noise can dip a strongly depleted spot (a
  repelled lipid at a RAS centre) a few percent of the mean below zero, and
  strong interactions can undershoot likewise. Such a step is repaired by
  clipping and rescaling that species to its exact mass (the model counts the
  repairs and the largest clipped mass fraction: ~1e-4 for the defaults, < 1e-2
  for interactions 2-3 times stronger).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mummi.macro.backend import Backend
from mummi.macro.params import MacroParameters, kt_kj_mol
from mummi.macro.ras import cic_stencils

log = logging.getLogger(__name__)

#: Interaction eigenvalues below this fraction of the largest are dropped (exact for low-rank matrices).
RANK_TOLERANCE = 1e-9
#: σ(k) assumes local concentrations up to at least this multiple of the mean.
STABILISATION_SAFETY = 2.0
#: Noise modes whose coarse-graining filter is below this are not drawn.
NOISE_CUTOFF = 1e-3


@dataclass(frozen=True)
class Grid:
    """The periodic N×N grid of an L×L membrane; arrays are indexed [..., iy, ix]."""

    n: int
    box_nm: float

    @property
    def spacing_nm(self) -> float:
        return self.box_nm / self.n

    @property
    def half(self) -> int:
        """Length of the last Fourier axis of a real FFT."""
        return self.n // 2 + 1

    def wavenumbers(self) -> tuple[np.ndarray, np.ndarray]:
        """(ky, kx) broadcastable to the (N, N//2+1) real-FFT layout (rad/nm)."""
        h = self.spacing_nm
        ky = 2 * np.pi * np.fft.fftfreq(self.n, h)[:, None]
        kx = 2 * np.pi * np.fft.rfftfreq(self.n, h)[None, :]
        return ky, kx

    def laplacian_symbol(self) -> np.ndarray:
        """Λ(k) of the 5-point Laplacian: -Δ_h e^{ikx} = Λ e^{ikx} (nm⁻²)."""
        ky, kx = self.wavenumbers()
        h = self.spacing_nm
        return (4.0 / h**2) * (np.sin(kx * h / 2) ** 2 + np.sin(ky * h / 2) ** 2)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Minimum-image (dy, dx) of every grid point from the origin (nm), shape (N, N)."""
        i = np.arange(self.n)
        d = (i - self.n * (i > self.n // 2)) * self.spacing_nm
        return d[:, None], d[None, :]

    def radial_transform(self, r_nm: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Real FFT of h²·f(|x|) on the grid for tabulated radial f (0 beyond the table).

        ``table`` has shape (..., len(r_nm)); the result (..., N, N//2+1) is real,
        so that ``irfft2(transform * rfft2(c))`` is the discrete convolution Σ h² f c.
        """
        dy, dx = self.offsets()
        r = np.hypot(dy, dx)
        flat = table.reshape(-1, table.shape[-1])
        sampled = np.stack([np.interp(r, r_nm, row, right=0.0) for row in flat])
        out = np.fft.rfft2(sampled * self.spacing_nm**2).real
        return out.reshape(table.shape[:-1] + out.shape[-2:])


def pmf_stencil(params: MacroParameters, grid: Grid) -> np.ndarray:
    """V_{s,i} at the grid offsets within the table's range: (n_states, 14, 2m+1, 2m+1), kJ/mol."""
    h = grid.spacing_nm
    m = int(math.floor(params.pmf_r_nm[-1] / h))
    if 2 * m + 2 > grid.n:
        raise ValueError(
            f"the RAS-lipid potential table reaches {params.pmf_r_nm[-1]} nm, more than half the box "
            f"({grid.box_nm} nm); use a larger box or a shorter table"
        )
    o = np.arange(-m, m + 1) * h
    r = np.hypot(o[:, None], o[None, :])
    table = params.pmf_kj_mol
    return np.stack([np.stack([np.interp(r, params.pmf_r_nm, row, right=0.0) for row in rows]) for rows in table])


@dataclass
class _Modes:
    """Interaction matrices as collective fields: φ = Σ_m weights[:, m] · (g_m * (vectors[m] · c))."""

    vectors: np.ndarray  # (M, 14) projections u_m
    weights: np.ndarray  # (14, M) λ_m u_m (kT nm²)
    kernel_index: np.ndarray  # (M,) which shape each mode uses; -1: contact (no convolution)


def interaction_modes(params: MacroParameters, beta: float) -> _Modes:
    """Eigen-decomposition of each (symmetric) kernel matrix, zero eigenvalues dropped."""
    vectors, weights, index = [], [], []
    matrices = [(-1, params.local_kernel_kj_mol_nm2)] + list(enumerate(params.kernel_amplitudes_kj_mol_nm2))
    for b, matrix in matrices:
        lam, vec = np.linalg.eigh(beta * matrix)
        keep = np.abs(lam) > RANK_TOLERANCE * max(np.abs(lam).max(), 1e-300)
        for value, u in zip(lam[keep], vec[:, keep].T):
            vectors.append(u)
            weights.append(value * u)
            index.append(b)
    n = params.mean_concentration_per_nm2.size
    return _Modes(np.array(vectors).reshape(-1, n), np.array(weights).reshape(-1, n).T, np.array(index, dtype=int))


class LipidOperators:
    """Everything the step needs that depends only on parameters, grid and dt (built once per parameter version)."""

    def __init__(
        self,
        params: MacroParameters,
        grid: Grid,
        dt_ns: float,
        temperature_K: float,
        backend: Backend,
        noise: bool,
        concentration_scale: np.ndarray | None = None,
    ) -> None:
        self.params, self.grid, self.dt_ns, self.backend = params, grid, dt_ns, backend
        self.beta = beta = 1.0 / kt_kj_mol(temperature_K)
        self.with_noise = noise and params.noise_scale > 0

        # lipid-lipid interactions as collective fields
        modes = interaction_modes(params, beta)
        self.local = np.flatnonzero(modes.kernel_index < 0)
        self.conv = np.flatnonzero(modes.kernel_index >= 0)
        self.shapes_hat = (
            grid.radial_transform(params.kernel_r_nm, params.kernel_shapes) if params.kernel_shapes.size else None
        )
        self.vectors = modes.vectors
        self.weights = np.concatenate([modes.weights[:, self.local], modes.weights[:, self.conv]], axis=1)
        self.conv_hat: Any = None
        if self.conv.size:
            assert self.shapes_hat is not None  # convolved modes come from the kernel shapes
            self.conv_hat = backend.fourier_factor(self.shapes_hat[modes.kernel_index[self.conv]])
        log.info("lipid interactions: %d contact and %d convolved collective fields", self.local.size, self.conv.size)
        self.explicit_limit = float(np.max(params.diffusion_nm2_per_ns) * dt_ns / grid.spacing_nm**2)

        # RAS-lipid potentials: the local stencil (kT) for the lipids, its transform (kJ/mol) for the RAS
        self.stencil_kj = pmf_stencil(params, grid)
        self.corner_stencils = cic_stencils((self.stencil_kj * beta).astype(backend.real))  # kT, for the lipids
        self.pmf_hat = backend.asarray(grid.radial_transform(params.pmf_r_nm, params.pmf_kj_mol))

        self.floor_scale = STABILISATION_SAFETY * params.mean_concentration_per_nm2
        self.set_concentration_scale(self.floor_scale if concentration_scale is None else concentration_scale)

    def set_concentration_scale(self, scale: np.ndarray) -> None:
        """(Re)build the ETD factors and noise amplitudes for local concentrations up to ``scale``.

        The stabilisation σ(k) must bound the linearised interactions at the
        highest local concentrations, so the model raises the scale when a species
        exceeds it and lowers it again when the fields relax (see
        :meth:`needs_rescale`). The fixed points do not depend on it.
        """
        self.concentration_scale = np.maximum(np.asarray(scale, dtype=np.float64), self.floor_scale)
        p, grid, h = self.params, self.grid, self.grid.spacing_nm
        lam = grid.laplacian_symbol()
        sigma = _stabilisation(p, self.beta, self.shapes_hat, lam.shape, self.concentration_scale)
        rate = p.diffusion_nm2_per_ns[:, None, None] * lam[None] * (1.0 + sigma)[None] * self.dt_ns
        e = np.exp(-rate)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = e + (1.0 - e) * (sigma / (1.0 + sigma))[None]
            b = (1.0 - e) / (lam * (1.0 + sigma) * h**2)[None]
        a[:, 0, 0], b[:, 0, 0] = 1.0, 0.0
        self.decay = self.backend.fourier_factor(a)
        self.gain = self.backend.fourier_factor(b)
        self.noise = _noise_modes(p, grid, a) if self.with_noise else None

    def needs_rescale(self, channel_max: np.ndarray) -> np.ndarray | None:
        """A new concentration scale when a species left [scale/8, scale], else None."""
        scale = self.concentration_scale
        grow = channel_max > scale
        shrink = (8 * channel_max < scale) & (scale > self.floor_scale)
        if not (grow.any() or shrink.any()):
            return None
        return np.where(grow | shrink, np.maximum(self.floor_scale, 2 * channel_max), scale)

    # ------------------------------------------------------------------ fields
    def potential(self, c: Any, c_hat: Any) -> Any:
        """φ (kT) from the lipid-lipid interactions; RAS potentials are added by the caller."""
        be = self.backend
        parts = []
        if self.local.size:
            parts.append(be.mix(self.vectors[self.local], c))
        if self.conv.size:
            psi_hat = be.mix_fourier(self.vectors[self.conv], c_hat)
            psi_hat *= self.conv_hat
            parts.append(be.irfft2(psi_hat, self.grid.n, overwrite=True))
        if not parts:
            return c * 0
        return be.mix(self.weights, parts[0] if len(parts) == 1 else be.concat(parts))

    def advance(self, c: Any, c_hat: Any, phi: Any, noise: np.ndarray | None) -> tuple[Any, Any]:
        """One ETD1 step of the lipid fields in the potential φ; returns (c, ĉ) at t + dt (new arrays)."""
        be = self.backend
        flux = be.rfft2(be.drift(c, phi))
        flux[:, 0, 0] = 0
        flux *= self.gain
        c_hat = c_hat * self.decay
        c_hat += flux
        if noise is not None:
            self._add_noise(c_hat, noise)
        return be.irfft2(c_hat, self.grid.n), c_hat

    def draw_noise(self, rng: np.random.Generator) -> np.ndarray | None:
        """Standard normals for one step's noise (drawn on the host so every backend sees the same)."""
        if self.noise is None:
            return None
        return rng.standard_normal((2,) + self.noise.amplitude.shape, dtype=np.float32)

    def _add_noise(self, c_hat: Any, normals: np.ndarray) -> None:
        nz = self.noise
        assert nz is not None  # the normals come from draw_noise, which draws only with noise modes
        xi = nz.amplitude * (normals[0] + 1j * normals[1]) * np.sqrt(0.5)
        be = self.backend
        flat = c_hat.reshape(c_hat.shape[0], -1)
        flat[:, nz.index] += be.asarray(xi)
        flat[:, nz.mirror] += be.asarray(np.conj(xi[:, nz.mirrored]))

    def stationary_noise(self, rng: np.random.Generator) -> np.ndarray | None:
        """A draw of the noise's stationary fluctuations (ideal gas), as real fields; None without noise."""
        if self.noise is None:
            return None
        nz = self.noise
        n = self.grid.n
        xi = (
            nz.stationary
            * (rng.standard_normal(nz.stationary.shape) + 1j * rng.standard_normal(nz.stationary.shape))
            * np.sqrt(0.5)
        )
        hat = np.zeros((xi.shape[0], n * self.grid.half), complex)
        hat[:, nz.index] = xi
        hat[:, nz.mirror] = np.conj(xi[:, nz.mirrored])
        return np.fft.irfft2(hat.reshape(-1, n, self.grid.half), s=(n, n))

    def ras_field(self, c_hat: Any) -> np.ndarray:
        """W_s(x) = h² Σ_i (c_i * V_{s,i})(x) for each RAS state (kJ/mol), on the host."""
        be = self.backend
        return be.to_numpy(be.irfft2(be.weighted_sum(self.pmf_hat, c_hat), self.grid.n, overwrite=True)).astype(
            np.float64
        )


def _stabilisation(
    params: MacroParameters, beta: float, shapes_hat: np.ndarray | None, shape: tuple[int, ...], scale: np.ndarray
) -> np.ndarray:
    """σ(k) = max(0, (μ(k) - 1)/2) with μ(k) ≥ the largest eigenvalue of C½ βK̂(k) C½, C = diag(scale).

    For steps much longer than the relaxation time of a mode, ETD1 with the drift
    explicit multiplies it by -(μ - σ)/(1 + σ), so σ ≥ (μ - 1)/2 keeps every
    thermodynamically stable mode (μ > -1) stable; μ is bounded by Weyl's
    inequality from each matrix's extreme eigenvalues.
    """
    root = np.sqrt(scale)

    def extremes(m: np.ndarray) -> tuple[float, float]:
        ev = np.linalg.eigvalsh(beta * root[:, None] * m * root[None, :])
        return float(ev.min()), float(ev.max())

    mu = np.full(shape, extremes(params.local_kernel_kj_mol_nm2)[1])
    if shapes_hat is not None:
        for b, amp in enumerate(params.kernel_amplitudes_kj_mol_nm2):
            lo, hi = extremes(amp)
            g = shapes_hat[b]
            mu = mu + np.maximum(g * hi, g * lo)
    return np.maximum(0.0, (mu - 1.0) / 2.0)


@dataclass
class _Noise:
    index: np.ndarray  # flat indices into the (N, N//2+1) layout of the drawn modes
    mirror: np.ndarray  # flat indices of the conjugate partners in the kx = 0 column
    mirrored: np.ndarray  # which drawn modes those partners mirror (positions in index)
    amplitude: np.ndarray  # (14, n_modes) per-step standard deviation
    stationary: np.ndarray  # (14, n_modes) stationary standard deviation


def _noise_modes(params: MacroParameters, grid: Grid, decay: np.ndarray) -> _Noise:
    """Modes with a non-negligible coarse-grained amplitude, Hermitian-consistent in the rfft layout.

    Drawn: every mode with kx > 0 (below the Nyquist column) and, in the kx = 0
    column, 0 < ky < N/2; their partners at -ky in that column are set to the
    complex conjugate.
    """
    n, h = grid.n, grid.spacing_nm
    ky, kx = grid.wavenumbers()
    filt = np.exp(-0.5 * (kx**2 + ky**2) * params.noise_length_nm**2)
    iy, ix = np.meshgrid(np.arange(n), np.arange(grid.half), indexing="ij")
    nyquist = (ix == n // 2) & (n % 2 == 0) | (iy == n // 2) & (n % 2 == 0)
    drawn = (filt > NOISE_CUTOFF) & ~nyquist & ((ix > 0) | ((iy > 0) & (iy < (n + 1) // 2)))
    index = np.flatnonzero(drawn)
    in_column = ix.reshape(-1)[index] == 0
    mirrored = np.flatnonzero(in_column)
    mirror = ((n - iy.reshape(-1)[index[mirrored]]) % n) * grid.half
    variance = (
        (params.noise_scale**2)
        * (n**2 / h**2)
        * params.mean_concentration_per_nm2[:, None]
        * (filt.reshape(-1)[index] ** 2)[None]
    )
    a = decay.reshape(decay.shape[0], -1)[:, index]
    return _Noise(index, mirror, mirrored, np.sqrt(variance * (1.0 - a**2)), np.sqrt(variance))
