"""A small Martini stand-in for RAS, for tests and dry runs (real campaigns give KRAS via ``createsim.protein``).

The proxy has the parts of membrane-bound KRAS4b that the campaign's analysis and
setup care about, at the least cost in beads:

* a G-domain: 13 beads, a centre bead (apolar core, C3) and an icosahedron of 12
  surface beads 0.5 nm from it (polar P5/P4/N0 and two of each charge, Qd/Qa, net
  0), held in shape by an elastic network (harmonic bonds between all pairs closer
  than 0.9 nm, 500 kJ/mol/nm^2, as Martini's elastic networks for proteins);
* a hypervariable-region linker: P5 then two Qd (KRAS4b's polybasic lysines, +2);
* a farnesyl anchor of three C1 beads that inserts into the inner leaflet.

Coordinates are in the membrane frame: the bilayer midplane at z = 0, the inner
(cytoplasmic) leaflet below it; the anchor reaches z = -0.5 nm and the G-domain's
centre sits at z = -4.0 nm, below the inner head groups, from where the restrained
equilibration pulls it onto the surface. All beads form one residue named ``RAS``,
the name the in situ analysis selects proteins by.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_write_text
from mummi.core.lipids import PROTEIN_NAME

GDOMAIN_RADIUS_NM = 0.5
GDOMAIN_CENTRE_Z_NM = -4.0
ELASTIC_CUTOFF_NM = 0.9
ELASTIC_K = 500.0
CHAIN_K, CHAIN_ANGLE_K = 1250.0, 25.0
SURFACE_TYPES = ("P5", "P4", "N0", "Qd", "P5", "Qa", "P4", "N0", "Qd", "P5", "Qa", "P4")
TAIL = (("HV1", "P5", 0.0, -3.0), ("HV2", "Qd", 1.0, -2.5), ("HV3", "Qd", 1.0, -2.0),
        ("FA1", "C1", 0.0, -1.5), ("FA2", "C1", 0.0, -1.0), ("FA3", "C1", 0.0, -0.5))  # fmt: skip
"""Linker and anchor beads from the G-domain up: name, type, charge, height (nm)."""
#: Restraint force on the G-domain beads in x and y during the pulled equilibration (kJ/mol/nm^2).
POSRES_XY = 1000.0


def icosahedron(radius: float) -> np.ndarray:
    """The 12 vertices, one of them straight up."""
    golden = (1 + 5**0.5) / 2
    v = np.array([p for a, b in ((1, golden), (-1, golden), (1, -golden), (-1, -golden))
                  for p in ((0, a, b), (a, b, 0), (b, 0, a))], dtype=np.float64)  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    top = v[np.argmax(v[:, 2])]
    axis = np.cross(top, [0.0, 0.0, 1.0])
    angle = np.arccos(np.clip(top[2], -1, 1))
    if np.linalg.norm(axis) > 0:  # Rodrigues' rotation of the top vertex onto +z
        k = axis / np.linalg.norm(axis)
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        v = v @ (np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx).T
    return radius * v[np.argsort(-v[:, 2], kind="stable")]


def proxy_beads() -> tuple[list[str], list[str], list[float], np.ndarray]:
    """Names, types, charges and positions (nm, membrane frame) of the proxy's beads, G-domain first."""
    centre = np.array([0.0, 0.0, GDOMAIN_CENTRE_Z_NM])
    xyz = [centre, *(centre + icosahedron(GDOMAIN_RADIUS_NM))]
    names = ["GC"] + [f"G{i:02d}" for i in range(1, 13)]
    types = ["C3", *SURFACE_TYPES]
    charges = [0.0] + [{"Qd": 1.0, "Qa": -1.0}.get(t, 0.0) for t in SURFACE_TYPES]
    for name, kind, charge, z in TAIL:
        names.append(name)
        types.append(kind)
        charges.append(charge)
        xyz.append(np.array([0.0, 0.0, z]))
    return names, types, charges, np.array(xyz)


def itp_text() -> str:
    names, types, charges, xyz = proxy_beads()
    n_domain = 13
    lines = ["; RAS proxy for mummi tests and dry runs, written by mummi.adapters.ras_proxy (see its docstring).",
             "; Martini 2.2 bead types; elastic network as for Martini proteins (Periole et al. 2009).", "",
             "[ moleculetype ]", "; name  nrexcl", f"  {PROTEIN_NAME}  1", "", "[ atoms ]",
             "; nr  type  resnr  residue  atom  cgnr  charge  mass"]  # fmt: skip
    lines += [f"  {i + 1:3d}  {t:4s}  1  {PROTEIN_NAME}  {n:4s}  {i + 1:3d}  {q:5.1f}  72.0"
              for i, (n, t, q) in enumerate(zip(names, types, charges))]  # fmt: skip
    lines += ["", "[ bonds ]", "; i  j  func  b0 (nm)  kb  (elastic network of the G-domain, then the chain)"]
    for i, j in itertools.combinations(range(n_domain), 2):
        d = float(np.linalg.norm(xyz[i] - xyz[j]))
        if d < ELASTIC_CUTOFF_NM:
            lines.append(f"  {i + 1:3d} {j + 1:3d}  1  {d:.4f}  {ELASTIC_K:.1f}")
    chain = [1, *range(n_domain, len(names))]  # the top surface bead, then linker and anchor
    for i, j in itertools.pairwise(chain):
        lines.append(f"  {i + 1:3d} {j + 1:3d}  1  {float(np.linalg.norm(xyz[i] - xyz[j])):.4f}  {CHAIN_K:.1f}")
    lines += ["", "[ angles ]", "; i  j  k  func  theta0  k"]
    lines += [f"  {i + 1:3d} {j + 1:3d} {k + 1:3d}  2  180.0  {CHAIN_ANGLE_K:.1f}"
              for i, j, k in zip(chain, chain[1:], chain[2:])]  # fmt: skip
    lines += ["", "#ifdef POSRES_XY", "[ position_restraints ]", "; i  func  fcx  fcy  fcz"]
    lines += [f"  {i + 1:3d}  1  {POSRES_XY:.1f}  {POSRES_XY:.1f}  0.0" for i in range(n_domain)]
    lines += ["#endif", ""]
    return "\n".join(lines)


def gro_text() -> str:
    names, _, _, xyz = proxy_beads()
    lines = ["RAS proxy (membrane frame: midplane at z = 0 nm), mummi.adapters.ras_proxy", f"{len(names)}"]
    lines += [f"{1:5d}{PROTEIN_NAME:<5s}{n:>5s}{i + 1:5d}{x:8.3f}{y:8.3f}{z:8.3f}"
              for i, (n, (x, y, z)) in enumerate(zip(names, xyz))]  # fmt: skip
    lines.append(f"{10.0:10.5f}{10.0:10.5f}{10.0:10.5f}")
    return "\n".join(lines) + "\n"


def write_proxy(directory: Path) -> tuple[Path, Path]:
    """``ras_proxy.gro`` and ``ras_proxy.itp`` in ``directory``."""
    gro, itp = Path(directory) / "ras_proxy.gro", Path(directory) / "ras_proxy.itp"
    atomic_write_text(gro, gro_text())
    atomic_write_text(itp, itp_text())
    return gro, itp
