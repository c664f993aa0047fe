"""Martini 2.2 force-field files for MuMMI's lipids, water and ions, written from the published rules and tables.

MuMMI's membranes hold eight lipid types (POPC, PAPC, POPE, DIPE, DPSM, PAPS, PAP6 = PIP2 and
CHOL) in Martini water with 10 % antifreeze and NA+/CL- ions. This module writes the GROMACS
include files for them from data tables and building-block rules, so the files carry no code or
text of another project:

* particle types and the interaction-level matrix of Marrink et al. 2007 (Table 3), ring (S)
  types at 75 % well depth and sigma 0.43 nm among themselves, the antifreeze particle BP4
  (Marrink et al. 2007) and the AC1/AC2 amino-acid types (Monticelli et al. 2008), as kept in
  the distributed ``martini_v2.2.itp`` (de Jong et al. 2013);
* glycerophospholipids and sphingomyelin from the Martini 2.0 lipid building blocks (head,
  linker and tail letters as insane and the 2015 lipidome write them: Marrink et al. 2004, 2007;
  Wassenaar et al. 2015);
* cholesterol with three virtual sites (Marrink et al. 2008; Ingolfsson et al. 2014);
* PIP2 with the PI(4,5)P2 head of Lopez et al. 2013 as MuMMI used it (PAP6, charge -4).

The generated files live in ``adapters/forcefield/martini22/``; the tests regenerate them byte for
byte, so this module stays their source. :func:`insane_lipid_definitions` gives insane the lipids
its own table lacks, in the bead order of the topologies.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mummi.core.lipids import INNER_LIPIDS

GENERATOR = "mummi.adapters.martini22 (adapters/martini22.py)"
FORCEFIELD_DIR = Path(__file__).parent / "forcefield" / "martini22"

#: Sources: short citation, full reference.
REFERENCES = {
    "marrink2004": ("Marrink et al. 2004", "S.J. Marrink, A.H. de Vries, A.E. Mark. Coarse grained model for "
                    "semi-quantitative lipid simulations. J. Phys. Chem. B 108:750-760, 2004. doi:10.1021/jp036508g"),
    "marrink2007": ("Marrink et al. 2007", "S.J. Marrink, H.J. Risselada, S. Yefimov, D.P. Tieleman, A.H. de Vries. "
                    "The MARTINI force field: coarse grained model for biomolecular simulations. J. Phys. Chem. B "
                    "111:7812-7824, 2007. doi:10.1021/jp071097f"),
    "monticelli2008": ("Monticelli et al. 2008", "L. Monticelli, S.K. Kandasamy, X. Periole, R.G. Larson, D.P. "
                       "Tieleman, S.J. Marrink. The MARTINI coarse-grained force field: extension to proteins. J. "
                       "Chem. Theory Comput. 4:819-834, 2008. doi:10.1021/ct700324x"),
    "marrink2008": ("Marrink et al. 2008", "S.J. Marrink, A.H. de Vries, T.A. Harroun, J. Katsaras, S.R. Wassall. "
                    "Cholesterol shows preference for the interior of polyunsaturated lipid membranes. J. Am. Chem. "
                    "Soc. 130:10-11, 2008. doi:10.1021/ja076641c"),
    "baoukina2008": ("Baoukina et al. 2008", "S. Baoukina, L. Monticelli, H.J. Risselada, S.J. Marrink, D.P. "
                     "Tieleman. The molecular mechanism of lipid monolayer collapse. Proc. Natl. Acad. Sci. USA "
                     "105:10803-10808, 2008. doi:10.1073/pnas.0711563105"),
    "dejong2013": ("de Jong et al. 2013", "D.H. de Jong, G. Singh, W.F.D. Bennett, C. Arnarez, T.A. Wassenaar, L.V. "
                   "Schafer, X. Periole, D.P. Tieleman, S.J. Marrink. Improved parameters for the Martini "
                   "coarse-grained protein force field. J. Chem. Theory Comput. 9:687-697, 2013. "
                   "doi:10.1021/ct300646g"),
    "lopez2013": ("Lopez et al. 2013", "C.A. Lopez, Z. Sovova, F.J. van Eerden, A.H. de Vries, S.J. Marrink. Martini "
                  "force field parameters for glycolipids. J. Chem. Theory Comput. 9:1694-1708, 2013. "
                  "doi:10.1021/ct3009655"),
    "ingolfsson2014": ("Ingolfsson et al. 2014", "H.I. Ingolfsson, M.N. Melo, F.J. van Eerden, C. Arnarez, C.A. Lopez, "
                       "T.A. Wassenaar, X. Periole, A.H. de Vries, D.P. Tieleman, S.J. Marrink. Lipid organization of "
                       "the plasma membrane. J. Am. Chem. Soc. 136:14554-14559, 2014. doi:10.1021/ja507832e"),
    "wassenaar2015": ("Wassenaar et al. 2015", "T.A. Wassenaar, H.I. Ingolfsson, R.A. Bockmann, D.P. Tieleman, S.J. "
                      "Marrink. Computational lipidomics with insane: a versatile tool for generating custom membranes "
                      "for molecular simulations. J. Chem. Theory Comput. 11:2144-2155, 2015. "
                      "doi:10.1021/acs.jctc.5b00209"),
    "ingolfsson2022": ("Ingolfsson et al. 2022", "H.I. Ingolfsson et al. Machine learning-driven multiscale modeling "
                       "reveals lipid-dependent dynamics of RAS signaling proteins. Proc. Natl. Acad. Sci. USA "
                       "119:e2113297119, 2022. doi:10.1073/pnas.2113297119"),
}  # fmt: skip

# --- Nonbonded: particle types and interaction levels --------------------------------------------

#: Interaction levels of Marrink et al. 2007: (epsilon kJ/mol, sigma nm, name).
LEVELS = {
    "O": (5.6, 0.47, "supra attractive"),
    "I": (5.0, 0.47, "attractive"),
    "II": (4.5, 0.47, "almost attractive"),
    "III": (4.0, 0.47, "semi attractive"),
    "IV": (3.5, 0.47, "intermediate"),
    "V": (3.1, 0.47, "almost intermediate"),
    "VI": (2.7, 0.47, "semi repulsive"),
    "VII": (2.3, 0.47, "almost repulsive"),
    "VIII": (2.0, 0.47, "repulsive"),
    "IX": (2.0, 0.62, "super repulsive"),
}

#: Marrink et al. 2007, Table 3: the level of every pair of the 18 standard particle types.
INTERACTION_MATRIX = """
      Qda  Qd   Qa   Q0   P5   P4   P3   P2   P1   Nda  Nd   Na   N0   C5   C4   C3   C2   C1
Qda   O    O    O    II   O    O    O    I    I    I    I    I    IV   V    VI   VII  IX   IX
Qd    O    I    O    II   O    O    O    I    I    I    III  I    IV   V    VI   VII  IX   IX
Qa    O    O    I    II   O    O    O    I    I    I    I    III  IV   V    VI   VII  IX   IX
Q0    II   II   II   IV   I    O    I    II   III  III  III  III  IV   V    VI   VII  IX   IX
P5    O    O    O    I    O    O    O    O    O    I    I    I    IV   V    VI   VI   VII  VIII
P4    O    O    O    O    O    I    I    II   II   III  III  III  IV   V    VI   VI   VII  VIII
P3    O    O    O    I    O    I    I    II   II   II   II   II   IV   IV   V    V    VI   VII
P2    I    I    I    II   O    II   II   II   II   II   II   II   III  IV   IV   V    VI   VII
P1    I    I    I    III  O    II   II   II   II   II   II   II   III  IV   IV   IV   V    VI
Nda   I    I    I    III  I    III  II   II   II   II   II   II   IV   IV   V    VI   VI   VI
Nd    I    III  I    III  I    III  II   II   II   II   III  II   IV   IV   V    VI   VI   VI
Na    I    I    III  III  I    III  II   II   II   II   II   III  IV   IV   V    VI   VI   VI
N0    IV   IV   IV   IV   IV   IV   IV   III  III  IV   IV   IV   IV   IV   IV   IV   V    VI
C5    V    V    V    V    V    V    IV   IV   IV   IV   IV   IV   IV   IV   IV   IV   V    V
C4    VI   VI   VI   VI   VI   VI   V    IV   IV   V    V    V    IV   IV   IV   IV   V    V
C3    VII  VII  VII  VII  VI   VI   V    V    IV   VI   VI   VI   IV   IV   IV   IV   IV   IV
C2    IX   IX   IX   IX   VII  VII  VI   VI   V    VI   VI   VI   V    V    V    IV   IV   IV
C1    IX   IX   IX   IX   VIII VIII VII  VII  VI   VI   VI   VI   VI   V    V    IV   IV   IV
"""

#: Standard types in the order the distributed martini_v2.2.itp lists them: polar, intermediate, apolar, charged.
STANDARD_TYPES = ("P5", "P4", "P3", "P2", "P1", "Nda", "Nd", "Na", "N0", "C5", "C4", "C3", "C2", "C1",
                  "Qda", "Qd", "Qa", "Q0")  # fmt: skip
STANDARD_MASS = 72.0
RING_MASS = 45.0
RING_EPSILON_SCALE = 0.75  # ring-ring pairs, except at level IX
RING_SIGMA = 0.43
ANTIFREEZE_WITH_WATER = (5.6, 0.57)  # P4-BP4 (Marrink et al. 2007): the larger WF disturbs freezing W
AMINO_LEVEL_WITH_CHARGES = "VIII"  # AC1/AC2 with Q types, in place of IX (Monticelli et al. 2008)


@dataclass(frozen=True)
class ParticleType:
    """A Martini particle type; ``base`` is the standard type of Table 3 whose levels it takes."""

    name: str
    base: str
    mass: float
    ring: bool = False
    amino: bool = False


def particle_types() -> list[ParticleType]:
    """All Martini 2.2 particle types: standard, ring (S), amino-acid (AC) and antifreeze (BP4)."""
    standard = [ParticleType(t, t, STANDARD_MASS) for t in STANDARD_TYPES]
    ring = [ParticleType("S" + t, t, RING_MASS, ring=True) for t in STANDARD_TYPES]
    amino = [ParticleType("AC2", "C2", STANDARD_MASS, amino=True), ParticleType("AC1", "C1", STANDARD_MASS, amino=True)]
    return standard + ring + amino + [ParticleType("BP4", "P4", STANDARD_MASS)]


def interaction_levels() -> dict[tuple[str, str], str]:
    """Table 3 as a mapping (type, type) -> level."""
    header, *rows = INTERACTION_MATRIX.split("\n")[1:-1]
    columns = header.split()
    levels = {}
    for row in rows:
        name, *row_levels = row.split()
        levels.update({(name, column): level for column, level in zip(columns, row_levels, strict=True)})
    return levels


def pair_parameters(a: ParticleType, b: ParticleType, levels: dict[tuple[str, str], str]) -> tuple[float, float, str]:
    """(epsilon, sigma, description) of the Lennard-Jones interaction between two particle types."""
    if {a.name, b.name} == {"P4", "BP4"}:
        epsilon, sigma = ANTIFREEZE_WITH_WATER
        return epsilon, sigma, f"{LEVELS['O'][2]}, sigma {sigma} (antifreeze)"
    level = levels[a.base, b.base]
    if level == "IX" and (a.amino or b.amino):
        level = AMINO_LEVEL_WITH_CHARGES
    epsilon, sigma, name = LEVELS[level]
    if a.ring and b.ring and level != "IX":
        return RING_EPSILON_SCALE * epsilon, RING_SIGMA, f"{level} {name}, 75 %, sigma {RING_SIGMA} (rings)"
    return epsilon, sigma, f"{level} {name}"


def c6_c12(epsilon: float, sigma: float) -> tuple[float, float]:
    """GROMACS combination-rule-1 coefficients of a Lennard-Jones pair."""
    return 4 * epsilon * sigma**6, 4 * epsilon * sigma**12


# --- Molecules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    name: str
    type: str
    charge: float = 0.0
    mass: float | None = None  # None: the particle type's mass


@dataclass(frozen=True)
class Bond:
    """Harmonic bond (function 1): length nm, force kJ/mol/nm^2."""

    i: str
    j: str
    length: float
    force: float


@dataclass(frozen=True)
class Constraint:
    """A constraint, written as a stiff harmonic bond when FLEXIBLE is defined (for energy minimisation)."""

    i: str
    j: str
    length: float
    flexible_force: float


@dataclass(frozen=True)
class Angle:
    """Cosine-harmonic angle (function 2): theta degrees, force kJ/mol."""

    i: str
    j: str
    k: str
    theta: float
    force: float


@dataclass(frozen=True)
class Dihedral:
    """Proper (function 1, with multiplicity) or improper (function 2) dihedral."""

    atoms: tuple[str, str, str, str]
    function: int
    phi: float
    force: float
    multiplicity: int | None = None


@dataclass(frozen=True)
class VirtualSite3:
    """A virtual site built from three frame atoms (function 1: a, b; function 4: a, b, c)."""

    site: str
    frame: tuple[str, str, str]
    function: int
    parameters: tuple[float, ...]


@dataclass
class Molecule:
    name: str
    atoms: list[Atom]
    notes: list[str] = field(default_factory=list)
    references: tuple[str, ...] = ()
    bonds: list[Bond] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    angles: list[Angle] = field(default_factory=list)
    dihedrals: list[Dihedral] = field(default_factory=list)
    virtual_sites: list[VirtualSite3] = field(default_factory=list)
    exclusions: list[tuple[str, ...]] = field(default_factory=list)
    residue: str = ""

    @property
    def charge(self) -> float:
        return sum(atom.charge for atom in self.atoms)


# --- Lipid building blocks (Martini 2.0 lipids; the 2015 lipidome) -------------------------------

#: insane's head letters: bead, particle type, charge.
HEAD_BEADS = {
    "C": ("NC3", "Q0", 1.0),  # choline
    "E": ("NH3", "Qd", 1.0),  # ethanolamine
    "S": ("CNO", "P5", 0.0),  # serine
    "P": ("PO4", "Qa", -1.0),  # phosphate
}
#: insane's linker letters: bead-name stem and the particle type of the first and second linker bead.
LINKER_BEADS = {"G": ("GL", ("Na", "Na")), "A": ("AM", ("P1", "P5"))}  # glycerol; sphingosine backbone
#: Tail letters: C saturated, D cis double bond, T trans double bond (sphingosine).
TAIL_TYPES = {"C": "C1", "D": "C3", "T": "C3"}
POLYUNSATURATED_TYPE = "C4"  # a D bead next to another D
TAIL_ANGLES = {"C": (180.0, 25.0), "D": (120.0, 45.0), "T": (180.0, 45.0)}  # angle centred on the bead
POLYUNSATURATED_ANGLE = (100.0, 10.0)  # centred on a D bead followed by another D
BOND_LENGTH, LINKER_BOND_LENGTH, BOND_FORCE = 0.47, 0.37, 1250.0
HEAD_LINKER_LINKER_ANGLE = (120.0, 25.0)
HEAD_LINKER_TAIL_ANGLE = (180.0, 25.0)


@dataclass(frozen=True)
class LipidSpec:
    """A lipid in insane's letters (head, linkers, tails: first tail on the first linker)."""

    name: str
    head: str
    linkers: str
    tails: str
    description: str
    references: tuple[str, ...] = ("marrink2004", "marrink2007", "wassenaar2015")


PHOSPHOLIPIDS = (
    LipidSpec("POPC", "C P", "G G", "CDCC CCCC", "C16:0/18:1 phosphatidylcholine (palmitoyl-oleoyl)"),
    LipidSpec("PAPC", "C P", "G G", "DDDDC CCCC", "C16:0/20:4 phosphatidylcholine (palmitoyl-arachidonoyl)"),
    LipidSpec("POPE", "E P", "G G", "CDCC CCCC", "C16:0/18:1 phosphatidylethanolamine (palmitoyl-oleoyl)"),
    LipidSpec("DIPE", "E P", "G G", "CDDC CDDC", "di-C18:2 phosphatidylethanolamine (dilinoleoyl)"),
    LipidSpec("DPSM", "C P", "A A", "TCC CCCC", "C(d18:1/18:0) sphingomyelin"),
    LipidSpec("PAPS", "S P", "G G", "DDDDC CCCC", "C16:0/20:4 phosphatidylserine (palmitoyl-arachidonoyl)",
              ("marrink2004", "marrink2007", "baoukina2008", "wassenaar2015")),
)  # fmt: skip


def tail_bead_type(tail: str, k: int) -> str:
    neighbours = tail[max(k - 1, 0) : k] + tail[k + 1 : k + 2]
    if tail[k] == "D" and "D" in neighbours:
        return POLYUNSATURATED_TYPE
    return TAIL_TYPES[tail[k]]


def tail_angle(tail: str, k: int) -> tuple[float, float]:
    if tail[k] == "D" and tail[k + 1 : k + 2] == "D":
        return POLYUNSATURATED_ANGLE
    return TAIL_ANGLES[tail[k]]


def tail_bead_name(tail: str, k: int, chain: int) -> str:
    """Tail bead names as in the lipidome and insane's lipid table: letter, position, chain letter (D1A, C1B)."""
    return f"{tail[k]}{k + 1}{chr(ord('A') + chain)}"


def add_linkers_and_tails(molecule: Molecule, anchor: str, linkers: str, tails: str) -> None:
    """The linker beads bonded to head bead ``anchor`` and one tail per linker, with their bonds and angles."""
    letters = linkers.split()
    linker_names = []
    for position, letter in enumerate(letters):
        stem, types = LINKER_BEADS[letter]
        linker_names.append(f"{stem}{position + 1}")
        molecule.atoms.append(Atom(linker_names[-1], types[position]))
    first_linker = linker_names[0]
    molecule.bonds.append(Bond(anchor, first_linker, BOND_LENGTH, BOND_FORCE))
    molecule.bonds += [Bond(a, b, LINKER_BOND_LENGTH, BOND_FORCE) for a, b in zip(linker_names, linker_names[1:])]
    if len(linker_names) > 1:
        molecule.angles.append(Angle(anchor, first_linker, linker_names[1], *HEAD_LINKER_LINKER_ANGLE))
    for chain, (linker, tail) in enumerate(zip(linker_names, tails.split(), strict=True)):
        names = [tail_bead_name(tail, k, chain) for k in range(len(tail))]
        molecule.atoms += [Atom(name, tail_bead_type(tail, k)) for k, name in enumerate(names)]
        chained = [linker, *names]
        molecule.bonds += [Bond(a, b, BOND_LENGTH, BOND_FORCE) for a, b in zip(chained, chained[1:])]
        if chain == 0:
            molecule.angles.append(Angle(anchor, first_linker, names[0], *HEAD_LINKER_TAIL_ANGLE))
        molecule.angles += [Angle(chained[k], chained[k + 1], chained[k + 2], *tail_angle(tail, k))
                            for k in range(len(tail) - 1)]  # fmt: skip


def phospholipid(spec: LipidSpec) -> Molecule:
    """A lipid from the building-block rules: head beads in a bonded chain, then linkers and tails."""
    head = [Atom(*HEAD_BEADS[letter]) for letter in spec.head.split()]
    blocks = f"Building blocks (insane letters): head {spec.head}, linkers {spec.linkers}, tails {spec.tails}."
    molecule = Molecule(spec.name, list(head), notes=[spec.description + ".", blocks], references=spec.references)
    molecule.bonds += [Bond(a.name, b.name, BOND_LENGTH, BOND_FORCE) for a, b in zip(head, head[1:])]
    add_linkers_and_tails(molecule, head[-1].name, spec.linkers, spec.tails)
    return molecule


# --- PIP2 (PAP6): the PI(4,5)P2 head of Lopez et al. 2013 as MuMMI used it -----------------------

PIP2_LINKERS, PIP2_TAILS = "G G", "DDDDC CCCC"
#: Head beads top-down, the order insane lays them out and the topology lists them (see insane_lipid_definitions).
PIP2_HEAD = (
    Atom("P4", "Qa", -2.0),  # 4-phosphate
    Atom("P5", "Qa", -1.0),  # 5-phosphate, singly protonated in MuMMI's model
    Atom("C3", "P4"),  # inositol ring
    Atom("C2", "Na"),
    Atom("C1", "P1"),
    Atom("PO4", "Qa", -1.0),  # phosphodiester to glycerol
)
PIP2_RING_CONSTRAINTS = (
    Constraint("C1", "C2", 0.40, 30000.0),
    Constraint("C1", "C3", 0.40, 30000.0),
    Constraint("C2", "C3", 0.40, 30000.0),
    Constraint("C3", "P4", 0.40, 25000.0),
    Constraint("C3", "P5", 0.30, 30000.0),
    Constraint("C2", "P5", 0.40, 25000.0),
    Constraint("C2", "P4", 0.30, 30000.0),
)
PIP2_HEAD_BONDS = (Bond("C1", "PO4", 0.35, BOND_FORCE),)
PIP2_HEAD_ANGLES = (
    Angle("C1", "PO4", "GL1", 140.0, 25.0),  # orients the head on the glycerol
    Angle("C2", "C1", "PO4", 140.0, 400.0),  # head-tail angle
)
PIP2_HEAD_DIHEDRALS = (
    Dihedral(("P4", "C1", "C2", "C3"), 1, 50.0, 12.0, 1),  # P4 in front of the ring
    Dihedral(("P5", "C2", "C1", "C3"), 1, 180.0, 100.0, 1),  # P5 in the ring plane
)


def pip2() -> Molecule:
    molecule = Molecule(
        "PAP6",
        list(PIP2_HEAD),
        notes=[
            "C16:0/20:4 phosphatidylinositol 4,5-bisphosphate (PIP2), MuMMI's PAP6: the PI(4,5)P2 head of",
            "Lopez et al. 2013 with the later orientation dihedrals, the 4-phosphate charge -2 and the",
            "5-phosphate charge -1 (net -4), as in MuMMI's martini_v2.0_PAP6_02.itp; tails by the lipid rules.",
            "Ring constraints become stiff bonds when FLEXIBLE is defined (energy minimisation).",
        ],
        references=("lopez2013", "ingolfsson2014", "marrink2004", "marrink2007", "ingolfsson2022"),
        constraints=list(PIP2_RING_CONSTRAINTS),
        bonds=list(PIP2_HEAD_BONDS),
        angles=list(PIP2_HEAD_ANGLES),
        dihedrals=list(PIP2_HEAD_DIHEDRALS),
    )
    add_linkers_and_tails(molecule, "PO4", PIP2_LINKERS, PIP2_TAILS)
    return molecule


# --- Cholesterol: the virtual-site model of Ingolfsson et al. 2014 (2015 lipidome) ----------------

CHOLESTEROL_ATOMS = (
    Atom("ROH", "SP1", mass=77.22),
    Atom("R1", "SC1", mass=0.0),
    Atom("R2", "SC3", mass=38.69),
    Atom("R3", "SC1", mass=159.65),
    Atom("R4", "SC1", mass=0.0),
    Atom("R5", "SC1", mass=0.0),
    Atom("C1", "SC1", mass=39.44),
    Atom("C2", "C1", mass=72.0),
)
CHOLESTEROL_FRAME_FORCE = 1000000.0
CHOLESTEROL_CONSTRAINTS = tuple(
    Constraint(i, j, length, CHOLESTEROL_FRAME_FORCE)
    for i, j, length in (("ROH", "R2", 0.4904), ("ROH", "R3", 0.6019), ("R2", "R3", 0.2719), ("C1", "R2", 0.7237),
                         ("C1", "R3", 0.5376))
)  # fmt: skip
CHOLESTEROL_BONDS = (Bond("C1", "C2", 0.425, 1250.0),)
CHOLESTEROL_ANGLES = (Angle("R3", "C1", "C2", 180.0, 25.0),)
CHOLESTEROL_DIHEDRALS = (Dihedral(("ROH", "R2", "R3", "C1"), 2, -179.7, 50.0),)
CHOLESTEROL_VIRTUAL_SITES = (
    VirtualSite3("R4", ("R3", "R2", "C1"), 1, (0.9613, 0.6320)),  # in the frame plane
    VirtualSite3("R1", ("R2", "ROH", "R3"), 4, (0.5207, 0.2882, -0.83824)),  # out of plane
    VirtualSite3("R5", ("R3", "R2", "C1"), 4, (0.2287, 0.4111, 1.1531)),  # out of plane
)
CHOLESTEROL_RIGID_BODY = ("ROH", "R1", "R2", "R3", "R4", "R5", "C1")  # no nonbonded pairs within


def cholesterol() -> Molecule:
    ring = CHOLESTEROL_RIGID_BODY
    return Molecule(
        "CHOL",
        list(CHOLESTEROL_ATOMS),
        notes=[
            "Cholesterol with three virtual sites: the Martini 2.0 cholesterol (Marrink et al. 2008) rebuilt on",
            "a four-bead constrained frame, frame masses matching the original moment of inertia (Ingolfsson et",
            "al. 2014; the 2015 lipidome). Frame constraints become stiff bonds when FLEXIBLE is defined.",
        ],
        references=("marrink2004", "marrink2007", "marrink2008", "ingolfsson2014"),
        bonds=list(CHOLESTEROL_BONDS),
        constraints=list(CHOLESTEROL_CONSTRAINTS),
        angles=list(CHOLESTEROL_ANGLES),
        dihedrals=list(CHOLESTEROL_DIHEDRALS),
        virtual_sites=list(CHOLESTEROL_VIRTUAL_SITES),
        exclusions=[ring[k:] for k in range(len(ring) - 1)],
    )


MUMMI_LIPIDS = INNER_LIPIDS  # the inner leaflet has all eight


def lipids() -> list[Molecule]:
    """MuMMI's eight lipid types, in MuMMI's order."""
    by_name = {m.name: m for m in [*map(phospholipid, PHOSPHOLIPIDS), pip2(), cholesterol()]}
    return [by_name[name] for name in MUMMI_LIPIDS]


# --- Solvent and ions -----------------------------------------------------------------------------

ANTIFREEZE_FRACTION = 0.1  # WF among W + WF, as usual for Martini water


def solvents() -> list[Molecule]:
    water = ["Martini water: one P4 bead for four water molecules (Marrink et al. 2007)."]
    antifreeze = [f"Antifreeze water, BP4 (Marrink et al. 2007); replace {ANTIFREEZE_FRACTION:.0%} of W by WF."]
    return [
        Molecule("W", [Atom("W", "P4")], notes=water, references=("marrink2007",)),
        Molecule("WF", [Atom("WF", "BP4")], notes=antifreeze, references=("marrink2007",)),
    ]


def ions() -> list[Molecule]:
    """Martini 2 ions (hydrated): residue and atom names as insane writes them."""
    return [
        Molecule("NA+", [Atom("NA+", "Qd", 1.0)], notes=["Hydrated sodium (or potassium) ion."],
                 references=("marrink2007",)),
        Molecule("CL-", [Atom("CL-", "Qa", -1.0)], notes=["Hydrated chloride ion."], references=("marrink2007",)),
    ]  # fmt: skip


# --- insane ---------------------------------------------------------------------------------------

#: MuMMI lipids that insane's own table lacks; insane builds them from insane_lipid_definitions().
INSANE_USER_LIPIDS = ("PAPC", "DIPE", "PAPS", "PAP6")
PIP2_HEAD_PLACEHOLDER = "X"  # insane knows no PIP2 head letters; the @BEADS line names the beads


def insane_definition(molecule: Molecule, head: str, linkers: str, tails: str) -> str:
    """An insane molfile entry: the building-block letters and, by @BEADS, the topology's bead names."""
    letters = f"alhead={head}, allink={linkers}, altail={tails}, alname={molecule.name}, charge={molecule.charge:.1f}"
    return f";@INSANE {letters}\n;@BEADS " + " ".join(atom.name for atom in molecule.atoms) + "\n"


def insane_lipid_definitions() -> str:
    """insane molfile text (``-m``; ``Lipid_List.add_from_stream``) defining the lipids insane's table lacks.

    The @BEADS lines give insane the lipidome's bead names (insane would name user tails DA1, CB1).
    insane lays a lipid out along the membrane normal, head beads on top in the order given. The
    PIP2 head is listed phosphates first and PO4 last, so PO4 sits next to the glycerol it is bonded
    to and the inositol phosphates stay out of the glycerol region; the topology uses the same order.
    """
    specs = {spec.name: spec for spec in PHOSPHOLIPIDS}
    definitions = []
    for name in INSANE_USER_LIPIDS:
        if name == "PAP6":
            head = " ".join(PIP2_HEAD_PLACEHOLDER for _ in PIP2_HEAD)
            definitions.append(insane_definition(pip2(), head, PIP2_LINKERS, PIP2_TAILS))
        else:
            spec = specs[name]
            definitions.append(insane_definition(phospholipid(spec), spec.head, spec.linkers, spec.tails))
    return "".join(definitions)


def insane_lipid_table() -> Any:
    """insane's lipid table with :func:`insane_lipid_definitions` added."""
    with warnings.catch_warnings():  # insane imports pkg_resources, which warns that it is deprecated
        warnings.simplefilter("ignore")
        from insane.lipids import get_lipids
    table = get_lipids()
    table.add_from_stream(io.StringIO(insane_lipid_definitions()))
    return table


def insane_bead_order(lipid: str) -> list[str]:
    """The bead names of ``lipid`` in the order insane writes them."""
    return [bead for bead, *_ in insane_lipid_table()[lipid].build(diam=0.8)]


# --- Writing --------------------------------------------------------------------------------------


def number(value: float) -> str:
    return f"{value:.10g}"


def header(title: str, keys: Iterable[str]) -> list[str]:
    lines = [
        f"; {title}",
        f"; Generated by {GENERATOR}; regenerate rather than edit.",
        "; Written from the published Martini 2 parameter tables and building-block rules; please cite:",
    ]
    return lines + [f";   {REFERENCES[key][1]}" for key in keys] + [""]


def atomtypes_section(types: Sequence[ParticleType]) -> list[str]:
    lines = ["[ defaults ]", "; nbfunc  comb-rule", "  1       1", "", "[ atomtypes ]",
             "; name  mass   charge  ptype  c6   c12"]  # fmt: skip
    lines += [f"  {t.name:<5} {t.mass:5.1f}  0.000   A      0.0  0.0" for t in types]
    return lines + [""]


def nonbond_params_section(types: Sequence[ParticleType]) -> list[str]:
    levels = interaction_levels()
    lines = ["[ nonbond_params ]", "; i     j      func  c6 (kJ/mol nm^6)  c12 (kJ/mol nm^12)  ; level"]
    for n, a in enumerate(types):
        for b in types[n:]:
            epsilon, sigma, description = pair_parameters(a, b, levels)
            c6, c12 = c6_c12(epsilon, sigma)
            lines.append(f"  {a.name:<5} {b.name:<5}  1     {c6:.4E}        {c12:.4E}          ; {description}")
    return lines + [""]


def forcefield_text() -> str:
    types = particle_types()
    lines = header(
        "Martini 2.2 particle types and nonbonded interactions (C6/C12, combination rule 1)",
        ("marrink2007", "monticelli2008", "dejong2013", "marrink2004"),
    )
    lines += [
        "; Levels (Marrink et al. 2007, Table 3): epsilon (kJ/mol), sigma (nm)",
        *(f";   {level:<5} {eps:.1f}  {sigma:.2f}  {name}" for level, (eps, sigma, name) in LEVELS.items()),
        f"; Ring (S) types: {RING_EPSILON_SCALE:.0%} of epsilon and sigma {RING_SIGMA} among themselves (not at IX);",
        "; masses 72 (45 for ring types). AC1/AC2: C1/C2 for amino acids, level VIII with charged types.",
        f"; BP4: antifreeze water; P4-BP4 epsilon {ANTIFREEZE_WITH_WATER[0]}, sigma {ANTIFREEZE_WITH_WATER[1]}.",
        "",
    ]
    return "\n".join(lines + atomtypes_section(types) + nonbond_params_section(types))


def index_of(molecule: Molecule) -> dict[str, int]:
    names = [atom.name for atom in molecule.atoms]
    if len(set(names)) != len(names):
        raise ValueError(f"{molecule.name}: atom names repeat")
    return {name: n + 1 for n, name in enumerate(names)}


def atoms_section(molecule: Molecule) -> list[str]:
    residue = molecule.residue or molecule.name
    with_mass = any(atom.mass is not None for atom in molecule.atoms)
    lines = ["[ atoms ]", "; nr  type  resnr  residue  atom  cgnr  charge" + ("  mass" if with_mass else "")]
    for n, atom in enumerate(molecule.atoms, start=1):
        mass = f"  {number(atom.mass)}" if atom.mass is not None else ""
        line = f"  {n:>3}  {atom.type:<4}  1      {residue:<5}    {atom.name:<4}  {n:>3}  {atom.charge:5.1f}{mass}"
        lines.append(line)
    return lines + [""]


def bonds_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ bonds ]", "; i  j  func  length  force"]
    lines += [f"  {at[b.i]:>3} {at[b.j]:>3}  1  {number(b.length)}  {number(b.force)}" for b in molecule.bonds]
    if molecule.constraints:
        lines += ["#ifdef FLEXIBLE", "; the constraints, as stiff bonds"]
        lines += [f"  {at[c.i]:>3} {at[c.j]:>3}  1  {number(c.length)}  {number(c.flexible_force)}"
                  for c in molecule.constraints]  # fmt: skip
        lines.append("#endif")
    return lines + [""]


def constraints_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ constraints ]", "; i  j  func  length", "#ifndef FLEXIBLE"]
    lines += [f"  {at[c.i]:>3} {at[c.j]:>3}  1  {number(c.length)}" for c in molecule.constraints]
    return lines + ["#endif", ""]


def angles_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ angles ]", "; i  j  k  func  theta  force"]
    lines += [f"  {at[a.i]:>3} {at[a.j]:>3} {at[a.k]:>3}  2  {number(a.theta)}  {number(a.force)}"
              for a in molecule.angles]  # fmt: skip
    return lines + [""]


def dihedrals_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ dihedrals ]", "; i  j  k  l  func  phi  force  (multiplicity)"]
    for d in molecule.dihedrals:
        atoms = " ".join(f"{at[name]:>3}" for name in d.atoms)
        multiplicity = f"  {d.multiplicity}" if d.multiplicity is not None else ""
        lines.append(f"  {atoms}  {d.function}  {number(d.phi)}  {number(d.force)}{multiplicity}")
    return lines + [""]


def virtual_sites_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ virtual_sites3 ]", "; site  frame i j k  func  parameters"]
    for v in molecule.virtual_sites:
        frame = " ".join(f"{at[name]:>3}" for name in v.frame)
        lines.append(f"  {at[v.site]:>3}  {frame}  {v.function}  " + "  ".join(number(p) for p in v.parameters))
    return lines + [""]


def exclusions_section(molecule: Molecule, at: dict[str, int]) -> list[str]:
    lines = ["[ exclusions ]"] + ["  " + " ".join(str(at[name]) for name in row) for row in molecule.exclusions]
    return lines + [""]


def molecule_text(molecule: Molecule) -> str:
    at = index_of(molecule)
    lines = [f";;;;;; {molecule.name}", *(f"; {note}" for note in molecule.notes)]
    lines.append("; Sources: " + "; ".join(REFERENCES[key][0] for key in molecule.references) + ".")
    lines += ["", "[ moleculetype ]", "; name  nrexcl", f"  {molecule.name:<5} 1", ""]
    lines += atoms_section(molecule)
    if molecule.bonds or molecule.constraints:
        lines += bonds_section(molecule, at)
    if molecule.constraints:
        lines += constraints_section(molecule, at)
    if molecule.angles:
        lines += angles_section(molecule, at)
    if molecule.dihedrals:
        lines += dihedrals_section(molecule, at)
    if molecule.virtual_sites:
        lines += virtual_sites_section(molecule, at)
    if molecule.exclusions:
        lines += exclusions_section(molecule, at)
    return "\n".join(lines) + "\n"


def molecules_text(title: str, molecules: Sequence[Molecule]) -> str:
    return "\n".join(header(title, _keys(molecules))) + "\n" + "\n".join(molecule_text(m) for m in molecules)


def forcefield_files() -> dict[str, str]:
    """File name -> text of every generated file."""
    return {
        "martini_v2.2.itp": forcefield_text(),
        "martini_v2.0_lipids.itp": molecules_text(
            "Martini 2 topologies of MuMMI's lipids: " + " ".join(MUMMI_LIPIDS), lipids()
        ),
        "martini_v2.0_solvents.itp": molecules_text("Martini 2 water and antifreeze water", solvents()),
        "martini_v2.0_ions.itp": molecules_text("Martini 2 ions", ions()),
        "insane_lipids.dat": "\n".join(header("insane definitions of the lipids its own table lacks", _keys(lipids())))
        + insane_lipid_definitions(),
    }


def _keys(molecules: Sequence[Molecule]) -> list[str]:
    return list(dict.fromkeys(key for molecule in molecules for key in molecule.references))


def write_forcefield(directory: Path) -> list[Path]:
    """Write the include files and insane's lipid definitions into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in forcefield_files().items():
        path = directory / name
        path.write_text(text, encoding="ascii")
        paths.append(path)
    return paths
