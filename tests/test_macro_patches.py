"""Patch extraction, storage and the radial profiles of frames."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mummi.core.spec import PatchSettings
from mummi.macro.frames import Frame, radial_profiles, read_frame, write_frame
from mummi.macro.patches import extract_patches, read_patches, write_patches

N, BOX = 60, 50.0  # spacing 0.833 nm, as at full scale
H = BOX / N


def frame(
    positions: np.ndarray, seed: int = 0, fields: np.ndarray | None = None, states: np.ndarray | None = None
) -> Frame:
    rng = np.random.default_rng(seed)
    fields = rng.random((14, N, N)).astype(np.float32) if fields is None else fields
    positions = np.asarray(positions, dtype=float).reshape(-1, 2)
    states = np.arange(len(positions)) % 2 if states is None else states
    return Frame(1400.0, 70, fields, positions, states, np.arange(len(positions)) + 10, BOX, 3)


def test_patch_across_the_periodic_boundary_equals_extraction_from_a_rolled_field() -> None:
    near_corner = np.array([[1.2, 48.9]])  # grid point (1, 59): the patch wraps on both axes
    f = frame(near_corner)
    shift = np.array([25, -20])  # grid points (x, y)
    rolled = Frame(
        f.time_ns,
        f.step,
        np.roll(f.fields, (shift[1], shift[0]), axis=(1, 2)),
        (near_corner + shift * H) % BOX,
        f.ras_states,
        f.ras_ids,
        BOX,
        f.param_version,
    )
    a, b = extract_patches(f), extract_patches(rolled)
    centre = np.round(rolled.ras_positions_nm[0] / H).astype(int)
    assert 18 <= centre[0] < N - 18 and 18 <= centre[1] < N - 18  # the rolled patch needs no wrap
    assert np.array_equal(a.native, b.native)
    direct = np.moveaxis(rolled.fields[:, centre[1] - 18 : centre[1] + 19, centre[0] - 18 : centre[0] + 19], 0, -1)
    assert np.array_equal(b.native[0], direct)


def test_coarse_patches_are_block_means_and_ids_are_stable() -> None:
    f = frame([[25.0, 25.0], [10.0, 40.0]])
    p = extract_patches(f, PatchSettings())
    assert p.native.shape == (2, 37, 37, 14) and p.coarse.shape == (2, 5, 5, 14)
    assert p.native.dtype == np.float32 and p.coarse.dtype == np.float32
    edges = [0, 7, 14, 23, 30, 37]
    for i in range(5):
        for j in range(5):
            block = p.native[:, edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            assert np.allclose(p.coarse[:, i, j], block.mean(axis=(1, 2)), rtol=1e-6)
    assert p.ids == ["f000000001400-r0010", "f000000001400-r0011"]
    assert all(re.fullmatch(r"f\d{12}-r\d{4}", i) for i in p.ids)
    assert p.native[0, 18, 18] == pytest.approx(f.fields[:, 30, 30])  # centred on the RAS grid point


def test_constellation_lists_the_other_ras_inside_the_patch_square() -> None:
    positions = np.array([[2.0, 2.0], [47.0, 3.0], [2.0, 17.5], [2.0, 19.0], [25.0, 25.0]])
    p = extract_patches(frame(positions, states=np.array([0, 1, 1, 0, 1])))
    offsets, states = p.constellation(0)
    # half the patch edge is 37 * 0.833 / 2 = 15.4 nm: RAS 1 (5 nm away through the boundary) and 2 (15.5 nm) ...
    assert offsets.tolist() == [[-5.0, 1.0]] and states.tolist() == [1]
    offsets, _ = p.constellation(2)
    assert offsets.tolist() == [[-5.0, -14.5], [0.0, 1.5]]  # RAS 1 and 3; RAS 0 is 15.5 nm away, outside
    assert p.constellation(4)[0].shape == (0, 2)
    assert p.central_states.tolist() == [0, 1, 1, 0, 1]


def test_patch_and_frame_files_round_trip(tmp_path) -> None:
    f = frame([[5.0, 5.0], [30.0, 12.0]])
    path = write_frame(tmp_path / "frames", f)
    assert path.name == "frame-000000001400.h5"
    g = read_frame(path)
    assert np.array_equal(g.fields, f.fields) and np.array_equal(g.ras_positions_nm, f.ras_positions_nm)
    assert (g.time_ns, g.step, g.param_version, g.box_nm) == (1400.0, 70, 3, BOX)
    p = extract_patches(g)
    ppath = write_patches(tmp_path / "patches", p)
    q = read_patches(ppath)
    assert q.ids == p.ids and q.param_version == 3 and q.time_ns == 1400.0
    for name in (
        "native",
        "coarse",
        "ras_ids",
        "centres_nm",
        "constellation_start",
        "constellation_offsets_nm",
        "constellation_states",
    ):
        assert np.array_equal(getattr(q, name), getattr(p, name)), name
    assert read_patches(ppath, native=False).native.size == 0
    assert sorted(x.name for x in (tmp_path / "patches").iterdir()) == [ppath.name]  # no temporary left behind


def test_radial_profile_recovers_a_known_radial_enrichment() -> None:
    centre = np.array([20.0, 30.0])
    x = np.arange(N) * H
    r = np.hypot(x[None, :] - centre[0], x[:, None] - centre[1])
    base = np.linspace(0.1, 0.4, 14)[:, None, None]
    fields = (base * (1 + 2 * np.exp(-((r / 2.0) ** 2)))[None]).astype(np.float32)
    f = frame([centre], fields=fields, states=np.array([1]))
    edges = np.arange(0.0, 10.1, 0.5)
    prof = radial_profiles(f, edges)
    k = np.digitize(r, edges) - 1
    inside = k < len(edges) - 1
    shape = 1 + 2 * np.exp(-((r / 2.0) ** 2))
    expected = np.bincount(k[inside], shape[inside]) / np.bincount(k[inside]) / shape.mean()
    assert prof.shape == (14, len(edges) - 1)
    assert np.allclose(prof, expected[None], rtol=1e-5)
    assert prof[0, 0] > 2.5 and abs(prof[0, -1] - 1) < 0.02
    assert np.all(np.isnan(radial_profiles(f, edges, state=0)))  # no RAS in state 0
    with pytest.raises(ValueError, match="half the box"):
        radial_profiles(f, np.array([0.0, 30.0]))
