"""Patch -> membrane: lipid counts, lattice placement, RAS, the patch input file."""

from __future__ import annotations

import numpy as np
import pytest

from mummi.adapters.membrane import build_membrane, compositions, lipid_counts, randomised_round
from mummi.core.lipids import CHANNEL_NAMES, N_CHANNELS, N_INNER
from mummi.core.patch_input import PatchInput, read_patch_input, write_patch_input


def test_channels_are_the_patch_channels() -> None:
    assert CHANNEL_NAMES[:N_INNER] == tuple(
        f"inner:{n}" for n in ("POPC", "PAPC", "POPE", "DIPE", "DPSM", "PAPS", "PAP6", "CHOL")
    )
    assert CHANNEL_NAMES[N_INNER:] == tuple(f"outer:{n}" for n in ("POPC", "PAPC", "POPE", "DIPE", "DPSM", "CHOL"))


def test_randomised_round_is_floor_or_ceil_sums_exactly_and_is_unbiased() -> None:
    rng = np.random.default_rng(0)
    expected = 7 * np.array([0.05, 0.3, 0.123, 0.2, 0.327])
    draws = np.array([randomised_round(expected, rng) for _ in range(20000)])
    assert np.all(draws.sum(axis=1) == 7)
    assert np.all((draws == np.floor(expected)) | (draws == np.ceil(expected)))
    # the mean of 20000 draws: standard error below 0.0036 per entry
    np.testing.assert_allclose(draws.mean(axis=0), expected, atol=0.015)


def test_counts_follow_each_cells_composition_on_average() -> None:
    rng = np.random.default_rng(1)
    coarse = rng.uniform(0.0, 2.0, (5, 5, N_CHANNELS))
    coarse[0, 0, 3] = 0.0  # an absent lipid type stays absent
    expected = 16 * compositions(coarse)
    counts = np.array([lipid_counts(coarse, 16, rng) for _ in range(3000)])
    assert np.all(counts[..., :N_INNER].sum(axis=-1) == 16) and np.all(counts[..., N_INNER:].sum(axis=-1) == 16)
    assert np.all(counts[:, 0, 0, 3] == 0)
    np.testing.assert_allclose(counts.mean(axis=0), expected, atol=0.06)


def test_membrane_places_lipids_in_their_cells_and_ras_at_centre_and_offsets() -> None:
    coarse = np.ones((5, 5, N_CHANNELS))
    patch = PatchInput("p", coarse, np.array([[6.0, -4.0], [40.0, 0.0]]), np.array([2, 1]), central_state=0)
    m = build_membrane(patch, lipids_per_cell=64, cell_nm=6.0, jitter=0.2, rng=np.random.default_rng(2))
    assert m.box_nm == 30.0 and m.n_lipids == 2 * 25 * 64
    assert np.all((m.xy_nm >= 0) & (m.xy_nm < 30.0))
    cells = np.floor(m.xy_nm / 6.0).astype(int)
    per_cell = np.zeros((5, 5), dtype=int)
    np.add.at(per_cell, (cells[:, 0], cells[:, 1]), 1)
    assert np.all(per_cell == 128)  # jitter keeps lipids inside their cell
    assert np.all(np.diff(m.channel) >= 0)  # grouped by channel for the engines
    # the offset outside the 30 nm membrane is left out
    np.testing.assert_allclose(m.ras_xy_nm, [[15.0, 15.0], [21.0, 11.0]])
    np.testing.assert_array_equal(m.ras_states, [0, 2])


def test_patch_input_round_trip_and_validation(tmp_path) -> None:
    coarse = np.random.default_rng(3).random((5, 5, 14)).astype(np.float32)
    path = write_patch_input(
        tmp_path / "patch_input.npz", PatchInput("patch-9", coarse, [[1.0, 2.0]], [3], central_state=1)
    )
    patch = read_patch_input(path)
    assert patch.patch_id == "patch-9" and patch.central_state == 1
    np.testing.assert_allclose(patch.coarse, coarse)
    np.testing.assert_allclose(patch.offsets_nm, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="shape"):
        write_patch_input(tmp_path / "bad.npz", PatchInput("x", np.ones((5, 5, 13)), np.zeros((0, 2)), []))
    with pytest.raises(ValueError, match="states"):
        write_patch_input(tmp_path / "bad.npz", PatchInput("x", coarse, [[0.0, 0.0]], []))
    with pytest.raises(ValueError, match="non-negative"):
        write_patch_input(tmp_path / "bad.npz", PatchInput("x", -coarse, np.zeros((0, 2)), []))
    assert not (tmp_path / "bad.npz").exists()
