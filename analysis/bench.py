"""mummi-bench analysis: frames/s of the in situ RDF on a campaign-size membrane, next to the sims' rates.

Builds a 3,200-lipid patch (64 lipids per 6 nm cell and leaflet), writes a
trajectory with Martini-like lipids (``--beads-per-lipid`` beads each) and a RAS of
``--ras-beads`` beads through MDAnalysis' XTC writer, and times the whole in situ
path on it in one single-threaded process: reading frames and counting lateral
RAS-lipid distances. Next to it: the frames/s ddcMD produces at the campaign's
rate (about 1 microsecond a day, one frame every ``--output-interval-ps``), and the
frames/s of the mock engine on the same patch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mummi.adapters.md_engine import build_universe, open_universe, write_gro
from mummi.adapters.membrane import build_membrane
from mummi.adapters.mock_md import Dynamics, MockSystem, truth_potentials
from mummi.analysis.insitu import LateralRDF, select_membrane
from mummi.core.lipids import CHANNELS, PROTEIN_NAME
from mummi.core.patch_input import PatchInput
from mummi.core.spec import AnalysisSettings, MockEngineSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lipids-per-cell", type=int, default=64, help="per 6x6 nm cell and leaflet (64: 3,200 lipids)"
    )
    parser.add_argument(
        "--beads-per-lipid", type=int, default=12, help="beads per lipid in the trajectory (Martini: about 12)"
    )
    parser.add_argument("--ras-beads", type=int, default=180, help="beads of the RAS")
    parser.add_argument("--frames", type=int, default=200, help="trajectory frames to analyse")
    parser.add_argument("--output-interval-ps", type=float, default=100.0, help="simulated time between saved frames")
    parser.add_argument(
        "--ddcmd-us-per-day",
        type=float,
        default=1.02,
        help="ddcMD's production rate (seed 000: 1.02 us/day on one GPU)",
    )
    parser.add_argument("--mock-frames", type=int, default=20, help="frames of the mock engine to time")


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(0)
    patch = PatchInput("bench", np.ones((5, 5, 14)), np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    membrane = build_membrane(patch, args.lipids_per_cell, 6.0, 0.2, rng)
    settings = AnalysisSettings()
    with tempfile.TemporaryDirectory() as tmp:
        gro, xtc, n_atoms = _write_trajectory(Path(tmp), membrane, args, rng)
        start = time.perf_counter()
        universe = open_universe(gro, xtc)
        rdf = LateralRDF(
            universe,
            select_membrane(open_universe(gro), settings),
            settings.bin_nm,
            settings.r_max_nm,
            settings.contact_nm,
        )
        rdf.run()
        analysis_fps = args.frames / (time.perf_counter() - start)
    ddcmd_fps = args.ddcmd_us_per_day * 1e6 / args.output_interval_ps / 86400.0
    return {
        "lipids": membrane.n_lipids,
        "atoms": n_atoms,
        "frames": args.frames,
        "analysis_frames_per_s": round(analysis_fps, 1),
        "ddcmd_frames_per_s": round(ddcmd_fps, 4),
        "analysis_margin_over_ddcmd": round(analysis_fps / ddcmd_fps, 1),
        "mock_sim_frames_per_s": round(_mock_rate(membrane, args.mock_frames, rng), 2),
        "counted_pairs": int(rdf.results.counts.sum()),
    }


def _write_trajectory(
    tmp: Path, membrane, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[Path, Path, int]:
    """A GRO and an XTC of the membrane: lipids as vertical bead columns, the RAS a blob on the inner side."""
    from MDAnalysis.coordinates.XTC import XTCWriter

    k, n_lipids = args.beads_per_lipid, membrane.n_lipids
    inner = membrane.channel < 8
    z_mid, box = 5.0, membrane.box_nm
    lipid_xyz = np.repeat(np.column_stack([membrane.xy_nm, np.full(n_lipids, z_mid)]), k, axis=0)
    depth = np.tile(np.linspace(2.0, 0.3, k), n_lipids)
    lipid_xyz[:, 2] += np.where(np.repeat(inner, k), -depth, depth)
    ras_xyz = membrane.ras_xy_nm[0] + rng.normal(0, 1.0, (args.ras_beads, 2))
    ras_xyz = np.column_stack([ras_xyz, z_mid - 3.5 + rng.normal(0, 0.5, args.ras_beads)])
    xyz = np.vstack([ras_xyz, lipid_xyz])
    names = ["BB"] * args.ras_beads + [f"B{i}" for i in range(k)] * n_lipids
    resnames = [PROTEIN_NAME] + [CHANNELS[c][1] for c in membrane.channel]
    u = build_universe(names, resnames, [args.ras_beads] + [k] * n_lipids, (box, box, 10.0))
    u.atoms.positions = 10 * xyz
    gro, xtc = tmp / "eq.gro", tmp / "md.xtc"
    write_gro(gro, u)
    with XTCWriter(str(xtc), n_atoms=len(xyz)) as writer:
        for i in range(args.frames):
            moved = xyz.copy()
            moved[:, :2] = (moved[:, :2] + rng.normal(0, 0.5, (len(xyz), 2))) % box
            u.atoms.positions = 10 * moved
            u.trajectory.ts.time = i * args.output_interval_ps
            writer.write(u)
    return gro, xtc, len(xyz)


def _mock_rate(membrane, frames: int, rng: np.random.Generator) -> float:
    """Frames/s of the mock engine (default settings, 20 steps a frame) on the membrane."""
    settings = MockEngineSettings()
    system = MockSystem(membrane.box_nm, membrane.ras_states, membrane.channel)
    xy = np.vstack([membrane.ras_xy_nm, membrane.xy_nm])
    dynamics = Dynamics(system, settings, truth_potentials(), 310.0, 5.0 / (settings.frames * settings.steps_per_frame))
    start = time.perf_counter()
    for _ in range(frames):
        dynamics.advance(xy, settings.steps_per_frame, rng)
    return frames / (time.perf_counter() - start)
