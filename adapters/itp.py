"""Reading GROMACS include files (``.itp``) far enough to check a system before grompp sees it.

Only what createsim needs: the atom types a force field defines and, per molecule
type, its atoms (name, type, residue, charge). Preprocessor lines are skipped, so
conditional sections (position restraints) are read as if every ``#ifdef`` held,
which does not change atoms or types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mummi.core.unreadable import reading


@dataclass
class MoleculeType:
    name: str
    atom_names: list[str] = field(default_factory=list)
    atom_types: list[str] = field(default_factory=list)
    residues: list[str] = field(default_factory=list)  # per atom: its residue's name
    resids: list[str] = field(default_factory=list)  # per atom: its residue's number
    charges: list[float] = field(default_factory=list)

    @property
    def charge(self) -> float:
        return sum(self.charges)

    def residue_runs(self) -> list[tuple[str, int]]:
        """(name, atom count) of each residue, in order."""
        runs: list[tuple[str, int]] = []
        for i, name in enumerate(self.residues):
            if i and (self.resids[i], name) == (self.resids[i - 1], self.residues[i - 1]):
                runs[-1] = (name, runs[-1][1] + 1)
            else:
                runs.append((name, 1))
        return runs


@dataclass
class Includes:
    atom_types: set[str] = field(default_factory=set)
    molecules: dict[str, MoleculeType] = field(default_factory=dict)


def read_itps(paths: list[Path]) -> Includes:
    """Atom types and molecule types of ``paths``, in order (a later molecule type of the same name wins)."""
    found = Includes()
    for path in paths:
        with reading(path, "GROMACS include file"):
            _read_one(path.read_text(encoding="utf-8", errors="replace"), found, path)
    return found


def _read_one(text: str, found: Includes, path: Path) -> None:
    section, mol = "", None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[\s*(\w+)\s*\]", line)
        if header:
            section = header.group(1)
            continue
        fields = line.split()
        if section == "atomtypes":
            found.atom_types.add(fields[0])
        elif section == "moleculetype":
            mol = found.molecules[fields[0]] = MoleculeType(fields[0])
        elif section == "atoms":
            if mol is None or len(fields) < 7:
                raise ValueError(f"{path}:{number}: an [ atoms ] line needs 7 fields inside a [ moleculetype ]")
            mol.atom_types.append(fields[1])
            mol.resids.append(fields[2])
            mol.residues.append(fields[3])
            mol.atom_names.append(fields[4])
            mol.charges.append(float(fields[6]))
