"""RAS particles: forces consistent with the lipid coupling, Langevin statistics, repulsion, states."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.macro.backend import NumpyBackend
from mummi.macro.ddft import Grid, LipidOperators
from mummi.macro.params import default_parameters, kt_kj_mol
from mummi.macro.ras import (
    RasDynamics,
    cic_stencils,
    field_force,
    pair_force,
    pairs_within,
    potential_blocks,
    stationary_states,
    switch_states,
)

KT = kt_kj_mol(310.0)


def dynamics(**kw: object) -> RasDynamics:
    base = dict(
        diffusion_nm2_per_ns=0.002,
        kt_kj_mol=KT,
        repulsion_kj_mol=0.0,
        size_nm=4.0,
        box_nm=40.0,
        spacing_nm=40.0 / 48,
        substeps=800,
        substep_ns=0.025,
    )
    base.update(kw)
    return RasDynamics(**base)  # type: ignore[arg-type]


def test_ras_force_is_minus_the_gradient_of_the_lipid_coupling_energy() -> None:
    """E(X) = Σ h² c·U_X (U deposited by cloud-in-cell) and F = -∇W interpolated must agree."""
    params = default_parameters()
    grid = Grid(48, 40.0)
    ops = LipidOperators(params, grid, 20.0, 310.0, NumpyBackend("float64"), noise=False)
    rng = np.random.default_rng(0)
    c = params.mean_concentration_per_nm2[:, None, None] * (1 + 0.5 * rng.random((14, 48, 48)))
    w = ops.ras_field(np.fft.rfft2(c))
    h = grid.spacing_nm

    def energy(x: np.ndarray, state: int) -> float:
        u = np.zeros_like(c)
        rows, cols, blocks = potential_blocks(x[None], np.array([state]), cic_stencils(ops.stencil_kj), h, 48)
        NumpyBackend("float64").add_blocks(u, rows, cols, blocks)
        return float(np.sum(c * u) * h**2)

    for state in (0, 1):
        x = np.array([13.37, 21.05])  # inside one cell, away from its edges
        eps = 1e-4
        numeric = -np.array([(energy(x + e, state) - energy(x - e, state)) / (2 * eps) for e in np.eye(2) * eps])
        analytic = field_force(x[None], np.array([state]), w, h)[0]
        assert np.linalg.norm(numeric) > 0.1  # a real force
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)
        # and W itself is that energy at grid points
        g = np.array([16, 25]) * h
        assert w[state, 25, 16] == pytest.approx(energy(g, state), rel=1e-9)


def test_free_ras_diffuse_with_their_diffusion_constant() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x0 = rng.random((n, 2)) * 40.0
    d = dynamics(box_nm=40.0)
    x = d.run(x0, np.zeros(n, int), np.zeros((1, 48, 48)), rng.standard_normal((800, n, 2)))
    disp = x - x0
    disp -= 40.0 * np.round(disp / 40.0)
    msd = np.mean(np.sum(disp**2, axis=1))
    assert msd == pytest.approx(4 * 0.002 * 20.0, rel=0.05)


def test_ras_drift_in_a_uniform_field_gradient() -> None:
    """W = g·x (per state) gives the velocity -D g / kT exactly, across cell boundaries."""
    h = 40.0 / 48
    xs = np.arange(48) * h
    slope = np.array([5.0, -3.0])  # kJ/mol/nm along x for states 0 and 1
    w = np.stack([s * xs[None, :] * np.ones((48, 1)) for s in slope])
    w[:, :, -1] = w[:, :, -2] + slope[:, None] * h  # no wrap-around jump near the starting points
    x0 = np.array([[10.1, 5.0], [20.3, 30.0]])
    d = dynamics()
    x = d.run(x0, np.array([0, 1]), w, np.zeros((800, 2, 2)))
    v = (x - x0) / 20.0
    assert v[:, 0] == pytest.approx(-0.002 * slope / KT, rel=1e-9)
    assert v[:, 1] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_pairs_and_repulsion_across_the_periodic_boundary() -> None:
    x = np.array([[0.5, 10.0], [39.0, 10.0], [20.0, 20.0]])
    i, j = pairs_within(x, 4.0, 40.0)
    assert list(zip(i, j)) == [(0, 1)]
    f = pair_force(x, (i, j), 10.0, 4.0, 40.0)
    expected = 2 * 10.0 / 4.0 * (1 - 1.5 / 4.0)
    assert f[0] == pytest.approx([expected, 0.0]) and f[1] == pytest.approx([-expected, 0.0])
    assert np.all(f[2] == 0)
    # dynamics: an overlapping pair separates
    d = dynamics(repulsion_kj_mol=100 * KT, diffusion_nm2_per_ns=0.05, substeps=400)
    y = d.run(x[:2], np.zeros(2, int), np.zeros((1, 48, 48)), np.zeros((400, 2, 2)))
    gap = (y[0, 0] - y[1, 0]) % 40.0
    assert gap > 1.5 + 1.0


def test_state_switching_reaches_the_stationary_distribution() -> None:
    rates = np.array([[0.0, 0.02], [0.01, 0.0]])
    p = stationary_states(rates)
    assert p == pytest.approx([1 / 3, 2 / 3])
    rng = np.random.default_rng(3)
    states = np.zeros(20000, int)
    for _ in range(30):
        states = switch_states(states, rates, 20.0, rng)
    assert np.mean(states == 1) == pytest.approx(2 / 3, abs=0.02)
