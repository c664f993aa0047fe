"""Quantitative checks of the DDFT macro model (issue 3, "Validation tests")."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.core.spec import MacroSettings
from mummi.macro.frames import radial_profiles
from mummi.macro.model import MacroModel
from mummi.macro.params import N_CHANNELS, default_parameters, kt_kj_mol

KT = kt_kj_mol(310.0)
SPACING = 1000.0 / 1200.0


def settings(n: int = 48, **kw: object) -> MacroSettings:
    return MacroSettings(box_nm=n * SPACING, grid_points=n, **{"n_ras": 0, "noise": False, **kw})


def ideal(**changes: object):
    """Default parameters without lipid-lipid interactions or RAS potentials."""
    p = default_parameters()
    base = dict(
        local_kernel_kj_mol_nm2=np.zeros((N_CHANNELS, N_CHANNELS)),
        kernel_amplitudes_kj_mol_nm2=np.zeros_like(p.kernel_amplitudes_kj_mol_nm2),
        pmf_kj_mol=np.zeros_like(p.pmf_kj_mol),
    )
    base.update(changes)
    return p.replace(**base)


def gaussian_pmf(depths_kt: dict[int, float], width_nm: float = 2.0):
    p = default_parameters()
    pmf = np.zeros_like(p.pmf_kj_mol)
    for ch, depth in depths_kt.items():
        pmf[:, ch] = depth * KT * np.exp(-0.5 * (p.pmf_r_nm / width_nm) ** 2)
    return pmf


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_fourier_mode_decays_as_exp_minus_d_k2_t(dtype: str) -> None:
    """The 5-point Laplacian's rate is D k² (1 - (kh)²/12 + ...): within 1% for wavelengths ≥ ~20 points."""
    s = settings(64)
    params = ideal()
    model = MacroModel(params, s, seed=0, dtype=dtype)
    box, n = s.box_nm, s.grid_points
    x = np.arange(n) * box / n
    waves = [(1, 0), (0, 2), (2, 1), (1, 1)]  # wavelengths of 29-64 grid points
    fields = np.empty((N_CHANNELS, n, n))
    for ch in range(N_CHANNELS):
        mx, my = waves[ch % len(waves)]
        phase = 2 * np.pi * (mx * x[None, :] + my * x[:, None]) / box
        fields[ch] = params.mean_concentration_per_nm2[ch] * (1 + 0.2 * np.cos(phase))
    model.set_fields(fields)
    model.run_until(1000.0)
    hat = np.fft.rfft2(model.fields.astype(np.float64))
    for ch in range(N_CHANNELS):
        mx, my = waves[ch % len(waves)]
        k2 = (2 * np.pi / box) ** 2 * (mx**2 + my**2)
        amplitude = np.abs(hat[ch, my, mx]) / (0.1 * n * n * params.mean_concentration_per_nm2[ch])
        expected = np.exp(-params.diffusion_nm2_per_ns[ch] * k2 * model.time_ns)
        assert expected < 0.8  # the mode did decay noticeably
        assert amplitude == pytest.approx(expected, rel=0.01), (ch, amplitude, expected)


def test_stationary_profile_around_a_fixed_ras_is_boltzmann() -> None:
    s = settings(48, n_ras=1)
    pmf = gaussian_pmf({0: -2.0, 4: 2.0, 6: -3.0}, width_nm=2.0)
    params = ideal(pmf_kj_mol=pmf, ras_diffusion_nm2_per_ns=0.0, diffusion_nm2_per_ns=np.full(N_CHANNELS, 0.1))
    model = MacroModel(params, s, seed=0, dtype="float64")
    centre = np.array([20, 17]) * model.grid.spacing_nm
    model.set_ras(centre, [0])
    model.run_until(8000.0)
    assert np.allclose(model.ras_positions, centre)
    dy, dx = model.grid.offsets()
    r = np.hypot(np.roll(dy, 17, axis=0), np.roll(dx, 20, axis=1))
    for ch in (0, 4, 6):
        boltzmann = np.exp(-np.interp(r, params.pmf_r_nm, pmf[0, ch], right=0.0) / KT)
        expected = boltzmann / boltzmann.mean() * params.mean_concentration_per_nm2[ch]
        got = model.fields[ch]
        assert boltzmann.max() / boltzmann.min() > 7  # a strong, non-trivial profile
        assert np.max(np.abs(got / expected - 1)) < 0.02, ch
    # the same through the radial profile the feedback uses
    edges = np.arange(0.0, 8.1, 1.0)
    profile = radial_profiles(model.frame(), edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    assert profile[6, 0] > 5
    assert np.allclose(profile[1], 1.0, atol=1e-6)  # no potential: uniform
    assert np.all(np.diff(profile[6][centres < 6]) < 0) and np.all(np.diff(profile[4][centres < 6]) > 0)


def test_attractive_potentials_enrich_and_repulsive_deplete_with_default_physics() -> None:
    model = MacroModel(default_parameters(), settings(60, n_ras=3, noise=True, ras_dt_ps=200.0), seed=4)
    model.run_until(1000.0)
    profile = radial_profiles(model.frame(), np.array([0.0, 2.0, 4.0, 10.0]))
    names = model.params.channels
    for attracted in ("inner:PAP6", "inner:PAPS", "inner:DIPE"):
        assert profile[names.index(attracted), 0] > 1.5, attracted
    for repelled in ("inner:DPSM", "inner:CHOL"):
        assert profile[names.index(repelled), 0] < 0.6, repelled
    # enrichment is local: far from the RAS the membrane is close to its mean
    assert np.all(np.abs(profile[:, 2] - 1) < 0.3)


def strong_parameters():
    p = default_parameters()
    return p.replace(
        local_kernel_kj_mol_nm2=3 * p.local_kernel_kj_mol_nm2,
        kernel_amplitudes_kj_mol_nm2=2.5 * p.kernel_amplitudes_kj_mol_nm2,  # beyond the demixing spinodal
        pmf_kj_mol=2 * p.pmf_kj_mol,  # up to 6 kT deep
        noise_scale=1.0,
    )


def test_mass_conserved_and_fields_non_negative_over_long_strongly_interacting_runs() -> None:
    s = settings(40, n_ras=3, noise=True, ras_dt_ps=1000.0)
    model = MacroModel(strong_parameters(), s, seed=7)
    start = model.masses()
    fields0 = model.fields
    for _ in range(4):
        model.run_until(model.time_ns + 250 * s.dt_ns)
        fields = model.fields
        assert np.all(np.isfinite(fields)) and fields.min() >= 0
        assert np.max(np.abs(model.masses() / start - 1)) < 1e-6
    assert model.step_count == 1000
    # the interactions did something (the leaflets demixed far beyond the initial noise) without blowing up
    spread = fields.std(axis=(1, 2)) / fields.mean(axis=(1, 2))
    assert spread.max() > 3 * (fields0.std(axis=(1, 2)) / fields0.mean(axis=(1, 2))).max()
    assert (fields.max(axis=(1, 2)) / fields.mean(axis=(1, 2))).max() < 100
    # the positivity repair is a safety net: each use clips well under 1% of a species' mass
    assert model.largest_repair < 0.01


def test_default_physics_needs_at_most_tiny_positivity_repairs() -> None:
    """Without noise the scheme stays positive by itself; the additive noise may dip a depleted RAS centre below 0."""
    quiet = MacroModel(default_parameters(), settings(60, n_ras=4, noise=False, ras_dt_ps=1000.0), seed=2)
    quiet.run_until(4000.0)
    assert quiet.positivity_fixes == 0 and quiet.fields.min() > 0
    noisy = MacroModel(default_parameters(), settings(60, n_ras=4, noise=True, ras_dt_ps=1000.0), seed=3)
    noisy.run_until(4000.0)
    assert noisy.largest_repair < 1e-3


def test_noise_has_the_coarse_grained_ideal_gas_variance() -> None:
    params = ideal(
        noise_scale=0.5, noise_length_nm=3.0, diffusion_nm2_per_ns=np.full(N_CHANNELS, 0.5)
    )  # modes decorrelate in a few steps
    model = MacroModel(params, settings(40, noise=True), seed=11, dtype="float64")
    nz = model.ops.noise
    samples = []
    for _ in range(600):
        model.step()
        samples.append(np.abs(np.fft.rfft2(model.fields).reshape(N_CHANNELS, -1)[:, nz.index]) ** 2)
    measured = np.mean(samples, axis=0)
    ratio = measured.sum(axis=1) / (nz.stationary**2).sum(axis=1)
    assert np.allclose(ratio, 1.0, atol=0.05), ratio
    assert abs(ratio.mean() - 1) < 0.02
    assert model.positivity_fixes == 0


def test_torch_backend_matches_numpy_to_float32_tolerance() -> None:
    pytest.importorskip("torch")
    s = settings(48, n_ras=3, noise=True, ras_dt_ps=400.0, ras_state_changes=True)
    a = MacroModel(default_parameters(), s, seed=5, compute="numpy")
    b = MacroModel(default_parameters(), s, seed=5, compute="torch")
    assert b.backend.name == "torch"
    for _ in range(10):
        a.step()
        b.step()
    scale = default_parameters().mean_concentration_per_nm2[:, None, None]
    assert np.max(np.abs(a.fields - b.fields) / scale) < 1e-4
    assert np.allclose(a.ras_positions, b.ras_positions, atol=1e-4)
    assert np.array_equal(a.ras_states, b.ras_states)
