"""ddcMD's particle files: read, written (for tests and fake engines), and an MDAnalysis reader (format ``DDCMD``).

UNTESTED AGAINST A LIVE ddcMD (it cannot be built here). The layout follows ddcMD's
sources (LLNL/ddcMD ``src/io.c`` write_fileheader, ``src/subsetWrite.c``,
``src/collection_write.c``, ``src/pinfo.c``, ``src/bioGid.h``, ``src/box.c``; LLNL/simutil
``src/pio.c`` and ``src/ioUtils.c``); the tests read a file from ddcMD's examples
(``tests/data/ddcmd/waterbox``) and files written here in that layout.

A particle file is a text header, ``<name> FILEHEADER { key = value; ... }`` closed by
an empty line, then ``nrecord`` records spread over ``<base>#000000`` ...
``<base>#<nfiles - 1>`` (six digits; the header only in the first). Records are

* ``VARRECORDASCII``: one line each, fields separated by blanks;
* ``FIXRECORDASCII``: lines padded to ``lrec`` bytes;
* ``FIXRECORDBINARY``: ``lrec`` bytes each: ``u4 u8`` unsigned and ``f4 f8`` IEEE floats in
  the byte order named by ``endian_key`` (the int whose bytes are "1234" on the writer),
  ``bN`` N-byte big-endian unsigned; bytes after the named fields are skipped.

The fields read: ``id`` (ddcMD's gid: molecule << 32 | residue << 16 | group << 8 | atom),
``rx ry rz`` (in ``field_units``, default Ang), ``vx vy vz`` (default Ang/fs), and the
species: in ASCII files ``type`` (the species name; ``class`` is its kind, ATOM) and
``group``, in binary files ``pinfo = group + nGroups * (species + nSpecies * kind)``, indices
into the header's ``groups`` and ``species`` lists (pinfoDecode; ddcMD's encoder agrees with it
while every species is of one kind, ATOM, as in Martini runs). ``h`` holds the box vectors as
columns, ``time`` is in fs.

Positions: ddcMD keeps particles in a box whose corner is ``reducedcorner`` (default
-1/2, box.c) times ``h``, so restart files hold them from -L/2 to L/2, while the binary
subset files MuMMI analysed (subsetWrite, ``format = binaryCharmm``: fields ``id pinfo rx ry
rz``, ``u8 u4 f4 f4 f4``, ``lrec`` 24) hold them minus the corner. :class:`Snapshot` holds box
coordinates in both cases. The MDAnalysis reader gives them relative to the corner, wrapped
into the box ([0, L) in an orthorhombic box, as GROMACS writes them), atoms sorted by id:
the topology's order for ids that number molecules, then atoms, in topology order (as
mummi's and LLNL's ddcMDconverter write them).

Following a running ddcMD: the reader opened on a ddcMD run directory reads the file that
the ``subsetWrite`` analysis of its ``object.data`` writes (``filename``, default ``subset``)
every ``outputrate`` loops. Frame i is ``snapshot.<loop>/<filename>#000000`` with loop
(i + 1) * outputrate (ddcMD runs its analyses after the steps of a loop, never at the loop it
starts from), and the frames end before the first file that is missing or not complete: a
file is complete when its records fill exactly ``nrecord * lrec`` bytes (``nrecord`` lines for
ASCII). The ``restart`` link says nothing about it: ddcMD writes a checkpoint and moves the
link before it runs the analyses of the same loop (masters.c: doCheckpoint, then doAnalysis).
A restarted ddcMD rewrites the files of the loops after its checkpoint; frame i stays the file
of its loop, so the in situ analysis, which commits how many frames it counted, neither loses
nor counts one twice (frames it counted from a killed run past its checkpoint are not counted
again after the rewrite).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from MDAnalysis.coordinates.base import ReaderBase
from MDAnalysis.lib.mdamath import triclinic_box
from MDAnalysis.lib.util import store_init_arguments

from mummi.core.unreadable import UnreadableFileError, reading

FORMAT = "DDCMD"
FIRST_FILE = "#000000"
DATATYPES = ("VARRECORDASCII", "FIXRECORDASCII", "FIXRECORDBINARY")
BYTE_ORDER_OF_KEY = {int.from_bytes(b"1234", "little"): "<", int.from_bytes(b"1234", "big"): ">"}
ANGSTROM_PER = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "nm": 10.0, "bohr": 0.529177210903, "a0": 0.529177210903}
FS_PER = {"fs": 1.0, "ps": 1e3, "ns": 1e6}
BINARY_CHARMM_FIELDS = ("id", "pinfo", "rx", "ry", "rz")  # subsetWrite's binaryCharmm: positions minus the corner
MAX_HEADER_BYTES = 1 << 20
_OBJECT = re.compile(r"(\w+)\s+(\w+)\s*\{([^{}]*)\}")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


# ------------------------------------------------------------------ objects
def parse_objects(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """ddcMD objects ``name CLASS { key = value; ... }`` as (name, class, {key: value}); values keep their words."""
    return [(m[1], m[2], _keywords(m[3])) for m in _OBJECT.finditer(text)]


def _keywords(body: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in body.split(";") if "=" in item)
    return {key.strip(): " ".join(value.split()) for key, value in pairs}


def read_object_file(path: Path) -> list[tuple[str, str, dict[str, str]]]:
    """The objects of a ddcMD input file (``object.data``), comments removed."""
    return parse_objects(_COMMENT.sub(" ", Path(path).read_text()))


def _quantity(text: str, count: int, scale: dict[str, float], default_unit: str) -> tuple[list[float], float]:
    """``count`` numbers and the factor of the unit that may follow them (``93.8 0 0 ... Ang``)."""
    words = text.split()
    if len(words) not in (count, count + 1):
        raise ValueError(f"expected {count} numbers and an optional unit, got {text!r}")
    unit = words[count] if len(words) > count else default_unit
    return [float(w) for w in words[:count]], unit_factor(unit, scale)


def unit_factor(unit: str, scale: dict[str, float]) -> float:
    try:
        return scale[unit.lower()]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(scale)}") from None


# ------------------------------------------------------------------- header
@dataclass(frozen=True)
class Header:
    name: str  # the object's name: "particle" in restarts, "subset" from subsetWrite
    datatype: str
    nfiles: int
    nrecord: int
    lrec: int  # 0 for VARRECORDASCII
    field_names: tuple[str, ...]
    field_types: tuple[str, ...]
    field_units: tuple[str, ...] | None
    field_format: tuple[str, ...] | None
    byteorder: str  # "<" or ">"
    loop: int
    time_fs: float
    h: np.ndarray  # (3, 3) Angstrom, box vectors as columns
    reduced_corner: np.ndarray
    groups: tuple[str, ...]
    species: tuple[str, ...]
    kinds: tuple[str, ...]  # the header's "types": ATOM
    length: int  # bytes before the first record in file #000000

    def unit_of(self, name: str, default: str) -> str:
        if self.field_units is None or name not in self.field_names:
            return default
        return self.field_units[self.field_names.index(name)]


def header_end(raw: bytes) -> int | None:
    """Bytes of the header at the start of ``raw``, or None while it is incomplete: up to the
    ``}`` closing the object and the empty line after it (pio.c readPheader)."""
    close = raw.find(b"}")
    end = raw.find(b"\n\n", close) if close >= 0 else -1
    return None if end < 0 else end + 2


def parse_header(raw: bytes) -> Header:
    """The header at the start of ``raw`` (which holds all of it)."""
    length = header_end(raw)
    if length is None:
        raise ValueError("no complete FILEHEADER (an object closed by '}' and an empty line)")
    objects = parse_objects(raw[:length].decode("ascii"))
    if len(objects) != 1 or objects[0][1] != "FILEHEADER":
        raise ValueError("the file does not start with one '<name> FILEHEADER {...}' object")
    name, _, keys = objects[0]
    return _header(name, keys, length)


def _header(name: str, keys: dict[str, str], length: int) -> Header:
    missing = [key for key in ("datatype", "nrecord", "field_names", "field_types", "h") if key not in keys]
    if missing:
        raise ValueError(f"the header has no {', '.join(missing)}")
    names, types = tuple(keys["field_names"].split()), tuple(keys["field_types"].split())
    if len(names) != len(types) or int(keys.get("nfields", len(names))) != len(names):
        raise ValueError(f"{len(names)} field_names, {len(types)} field_types, nfields={keys.get('nfields')}")
    datatype = keys["datatype"]
    if datatype not in DATATYPES:
        raise ValueError(f"datatype {datatype!r} is not read here; readable: {', '.join(DATATYPES)}")
    h, h_scale = _quantity(keys["h"], 9, ANGSTROM_PER, "Ang")
    (time,), time_scale = _quantity(keys.get("time", "0"), 1, FS_PER, "fs")
    header = Header(
        name=name,
        datatype=datatype,
        nfiles=_positive(keys.get("nfiles", "1"), "nfiles"),
        nrecord=_natural(keys["nrecord"], "nrecord"),
        lrec=0 if datatype == "VARRECORDASCII" else _positive(keys["lrec"], "lrec"),
        field_names=names,
        field_types=types,
        field_units=_words_per_field(keys, "field_units", len(names)),
        field_format=_words_per_field(keys, "field_format", len(names)),
        byteorder=_byteorder(keys.get("endian_key")),
        loop=_natural(keys.get("loop", "0"), "loop"),
        time_fs=time * time_scale,
        h=np.array(h).reshape(3, 3) * h_scale,
        reduced_corner=np.array([float(w) for w in keys.get("reducedcorner", "-0.5 -0.5 -0.5").split()]),
        groups=tuple(keys.get("groups", "").split()),
        species=tuple(keys.get("species", "").split()),
        kinds=tuple(keys.get("types", "").split()),
        length=length,
    )
    if header.reduced_corner.shape != (3,) or not np.linalg.det(header.h) > 0:
        raise ValueError("reducedcorner needs 3 numbers and h a right-handed box of positive volume")
    if datatype == "FIXRECORDBINARY":
        _binary_dtype(header)  # checks the field types against lrec
    return header


def _natural(text: str, what: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{what}={value} is negative")
    return value


def _positive(text: str, what: str) -> int:
    value = _natural(text, what)
    if value == 0:
        raise ValueError(f"{what} is 0")
    return value


def _words_per_field(keys: dict[str, str], key: str, n: int) -> tuple[str, ...] | None:
    if key not in keys:
        return None
    words = tuple(keys[key].split())
    if len(words) != n:
        raise ValueError(f"{key} has {len(words)} entries for {n} fields")
    return words


def _byteorder(endian_key: str | None) -> str:
    """Byte order of binary fields; files without a key are little-endian, as every ddcMD machine wrote them."""
    if endian_key is None:
        return "<"
    try:
        return BYTE_ORDER_OF_KEY[int(endian_key)]
    except KeyError:
        raise ValueError(f"endian_key={endian_key} is neither machine's value of the bytes '1234'") from None


def read_header(first: Path) -> Header | None:
    """The header of file ``first`` (``...#000000``), or None while it is still being written."""
    with open(first, "rb") as f:
        raw = f.read(MAX_HEADER_BYTES)
    if header_end(raw) is None:
        if len(raw) == MAX_HEADER_BYTES:
            raise UnreadableFileError(f"{first}: no end of a ddcMD FILEHEADER in its first {MAX_HEADER_BYTES} bytes")
        return None
    with reading(first, "ddcMD particle file header"):
        return parse_header(raw)


# ------------------------------------------------------------------ records
def first_file(path: str | Path) -> Path:
    """``<base>#000000`` for a path naming a particle file set as ``<base>#``, ``<base>#NNNNNN`` or ``<base>``."""
    path = Path(path)
    match = re.fullmatch(r"(.*)#(\d{6})?", path.name)
    base = match.group(1) if match else path.name
    return path.with_name(base + FIRST_FILE)


def part_files(first: Path, nfiles: int) -> list[Path]:
    base = first.name[: -len(FIRST_FILE)]
    return [first.with_name(f"{base}#{i:06d}") for i in range(nfiles)]


def _record_bytes(first: Path, header: Header) -> bytes:
    paths = part_files(first, header.nfiles)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UnreadableFileError(f"{first}: its header names {header.nfiles} files; missing: {', '.join(missing)}")
    parts = [p.read_bytes() for p in paths]
    return parts[0][header.length :] + b"".join(parts[1:])


def _records_complete(data: bytes, header: Header) -> bool:
    if header.datatype == "VARRECORDASCII":
        return data.count(b"\n") == header.nrecord and (not data or data.endswith(b"\n"))
    return len(data) == header.nrecord * header.lrec


def is_complete(path: str | Path) -> bool:
    """Whether the particle file set at ``path`` is all there: header, every part file, every record."""
    first = first_file(path)
    if not first.is_file():
        return False
    header = read_header(first)
    if header is None:
        return False
    parts = part_files(first, header.nfiles)
    if not all(p.is_file() for p in parts):
        return False
    if header.datatype == "VARRECORDASCII":
        return _records_complete(_record_bytes(first, header), header)
    return sum(p.stat().st_size for p in parts) - header.length == header.nrecord * header.lrec


def _binary_dtype(header: Header) -> np.dtype:
    """One record's layout; ``bN`` fields as N bytes."""
    names, formats, offsets, offset = [], [], [], 0
    for name, ftype in zip(header.field_names, header.field_types):
        kind, size = ftype[0], int(ftype[1:] or 0)
        if kind == "b" and size > 0:
            formats.append(f"({size},)u1")
        elif kind in "uf" and size in (4, 8):
            formats.append(f"{header.byteorder}{kind}{size}")
        else:
            raise ValueError(f"field {name} has type {ftype!r}; binary fields are u4 u8 f4 f8 bN")
        names.append(name)
        offsets.append(offset)
        offset += size
    if offset > header.lrec:
        raise ValueError(f"the fields take {offset} bytes, more than lrec={header.lrec}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": header.lrec})


def _binary_columns(data: bytes, header: Header, wanted: Iterable[str]) -> dict[str, np.ndarray]:
    records = np.frombuffer(data, dtype=_binary_dtype(header), count=header.nrecord)
    columns = {}
    for name in wanted:
        column = records[name]
        columns[name] = _big_endian_unsigned(column) if column.ndim == 2 else column
    return columns


def _big_endian_unsigned(column: np.ndarray) -> np.ndarray:
    value = np.zeros(len(column), dtype=np.uint64)
    for k in range(column.shape[1]):
        value = value * np.uint64(256) + column[:, k]
    return value


def _ascii_columns(data: bytes, header: Header, wanted: Iterable[str]) -> dict[str, np.ndarray]:
    n = len(header.field_names)
    rows = [line.split(None, n)[:n] for line in data.decode("ascii").splitlines()]
    short = next((i for i, row in enumerate(rows) if len(row) < n), None)
    if short is not None:
        raise ValueError(f"record {short} has {len(rows[short])} fields, the header names {n}")
    columns = list(zip(*rows)) if rows else [()] * n
    return {name: _ascii_column(columns[header.field_names.index(name)], name, header) for name in wanted}


def _ascii_column(words: Sequence[str], name: str, header: Header) -> np.ndarray:
    i = header.field_names.index(name)
    kind = header.field_types[i][0]
    if kind == "f":
        return np.array(words, dtype=np.float64)
    if kind == "u":
        base = 16 if header.field_format and header.field_format[i].endswith("x") else 10
        return np.array([int(w, base) for w in words], dtype=np.uint64)
    return np.array(words, dtype=str)


def _columns(data: bytes, header: Header) -> dict[str, np.ndarray]:
    used = {"id", "rx", "ry", "rz", "vx", "vy", "vz", "type", "group", "pinfo"}
    wanted = [name for name in header.field_names if name in used]
    if header.datatype == "FIXRECORDBINARY":
        return _binary_columns(data, header, wanted)
    return _ascii_columns(data, header, wanted)


# ----------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class Snapshot:
    """One particle file set, records in file order, positions in ddcMD's box coordinates."""

    loop: int
    time_fs: float
    h: np.ndarray  # (3, 3) Angstrom, box vectors as columns
    ids: np.ndarray  # (n,) uint64 gids
    positions: np.ndarray  # (n, 3) Angstrom
    species: np.ndarray  # (n,) species names
    groups: np.ndarray  # (n,) group names
    velocities: np.ndarray | None = None  # (n, 3) Angstrom/ps
    reduced_corner: np.ndarray = field(default_factory=lambda: np.full(3, -0.5))

    @property
    def corner(self) -> np.ndarray:
        return self.h @ self.reduced_corner


def read_snapshot(path: str | Path) -> Snapshot:
    """The particle file set at ``path`` (``<base>#000000`` or ``<base>#``), which must be complete."""
    first = first_file(path)
    header = read_header(first)
    if header is None:
        raise UnreadableFileError(f"{first}: its ddcMD FILEHEADER is cut short")
    data = _record_bytes(first, header)
    with reading(first, f"ddcMD particle file ({header.datatype}, {header.nrecord} records)"):
        if not _records_complete(data, header):
            raise ValueError(f"{len(data)} bytes of records over {header.nfiles} file(s): cut short or overlong")
        return _snapshot(header, _columns(data, header))


def _snapshot(header: Header, columns: dict[str, np.ndarray]) -> Snapshot:
    missing = {"id", "rx", "ry", "rz"} - set(columns)
    if missing:
        raise ValueError(f"no field {', '.join(sorted(missing))}")
    ids = columns["id"].astype(np.uint64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("two records have the same id")
    scale = unit_factor(header.unit_of("rx", "Ang"), ANGSTROM_PER)
    positions = np.column_stack([columns[c] for c in ("rx", "ry", "rz")]).astype(np.float64) * scale
    corner = header.h @ header.reduced_corner
    if header.datatype == "FIXRECORDBINARY" and header.field_names == BINARY_CHARMM_FIELDS:
        positions += corner
    species, groups = _species_and_groups(header, columns)
    return Snapshot(
        header.loop,
        header.time_fs,
        header.h,
        ids,
        positions,
        species,
        groups,
        _velocities(header, columns),
        header.reduced_corner,
    )


def _velocities(header: Header, columns: dict[str, np.ndarray]) -> np.ndarray | None:
    if not {"vx", "vy", "vz"} <= set(columns):
        return None
    length, _, time = header.unit_of("vx", "Ang/fs").partition("/")
    scale = unit_factor(length, ANGSTROM_PER) / unit_factor(time, FS_PER) * FS_PER["ps"]
    return np.column_stack([columns[c] for c in ("vx", "vy", "vz")]).astype(np.float64) * scale


def _species_and_groups(header: Header, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = len(columns["id"])
    if "pinfo" in columns:
        return decode_pinfo(columns["pinfo"], header.groups, header.species, len(header.kinds))
    species = columns.get("type", np.full(n, "", dtype=str))
    return species, columns.get("group", np.full(n, "", dtype=str))


def decode_pinfo(
    pinfo: np.ndarray, groups: Sequence[str], species: Sequence[str], n_kinds: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(species, group) names of packed ``pinfo`` indices (pinfo.c pinfoDecode)."""
    if not groups or not species:
        raise ValueError("pinfo fields need the header's groups and species lists")
    index = pinfo.astype(np.int64)
    if len(index) and index.max() >= len(groups) * len(species) * max(1, n_kinds):
        raise ValueError(f"pinfo {index.max()} is past {len(groups)} groups x {len(species)} species")
    species_index = (index // len(groups)) % len(species)
    return np.asarray(species, dtype=str)[species_index], np.asarray(groups, dtype=str)[index % len(groups)]


def encode_pinfo(species_index: np.ndarray, group_index: np.ndarray, n_groups: int) -> np.ndarray:
    """Packed ``pinfo`` of particles of kind ATOM (the first kind): ``group + n_groups * species``."""
    return (np.asarray(group_index) + n_groups * np.asarray(species_index)).astype(np.uint32)


# ------------------------------------------------------------- MDAnalysis frame
def frame_positions(snapshot: Snapshot) -> np.ndarray:
    """Positions (Angstrom, float32) sorted by id, relative to the box corner and wrapped into the box."""
    order = np.argsort(snapshot.ids, kind="stable")
    relative = snapshot.positions[order] - snapshot.corner
    cells = np.floor(relative @ np.linalg.inv(snapshot.h).T)
    return (relative - cells @ snapshot.h.T).astype(np.float32)


def frame_velocities(snapshot: Snapshot) -> np.ndarray | None:
    if snapshot.velocities is None:
        return None
    return snapshot.velocities[np.argsort(snapshot.ids, kind="stable")].astype(np.float32)


def box_dimensions(h: np.ndarray) -> np.ndarray:
    """MDAnalysis' ``[a, b, c, alpha, beta, gamma]`` of box vectors given as the columns of ``h``."""
    return np.asarray(triclinic_box(h[:, 0], h[:, 1], h[:, 2]), dtype=np.float32)


# --------------------------------------------------------- following a run
def subset_output(workdir: Path) -> tuple[str, int]:
    """(file name, loops between files) of the ``subsetWrite`` analysis in ``workdir/object.data``."""
    path = Path(workdir) / "object.data"
    for _, cls, keys in read_object_file(path):
        if cls == "ANALYSIS" and keys.get("type") == "subsetWrite":
            rate = int(keys.get("outputrate", "0"))
            if rate <= 0:
                raise ValueError(f"{path}: the subsetWrite analysis has no positive outputrate")
            return keys.get("filename", "subset"), rate
    raise ValueError(f"{path}: no subsetWrite ANALYSIS object, so ddcMD writes no frames to follow")


def snapshot_dirs(workdir: Path) -> dict[int, Path]:
    """``snapshot.<loop>`` directories of a ddcMD run directory by loop."""
    found = {}
    for entry in os.scandir(workdir):
        match = re.fullmatch(r"snapshot\.(\d+)", entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = Path(entry.path)
    return found


def complete_frames(workdir: Path) -> list[Path]:
    """First files of the frames of a ddcMD run, in loop order, up to the first missing or incomplete one."""
    name, rate = subset_output(workdir)
    dirs = snapshot_dirs(workdir)
    frames: list[Path] = []
    loop = rate
    while loop in dirs and is_complete(dirs[loop] / (name + FIRST_FILE)):
        frames.append(dirs[loop] / (name + FIRST_FILE))
        loop += rate
    return frames


class DdcmdReader(ReaderBase):
    """MDAnalysis reader of ddcMD particle files: one file set, or the frames of a ddcMD run directory.

    ``mda.Universe(topology, path, format="DDCMD")``; atoms in id order, positions in
    Angstrom relative to the box corner, time in ps. A run directory's frames are those
    complete when the reader is opened (:func:`complete_frames`).
    """

    format = FORMAT
    units = {"time": "ps", "length": "Angstrom", "velocity": "Angstrom/ps"}

    @store_init_arguments
    def __init__(self, filename: Any, n_atoms: int | None = None, **kwargs: Any) -> None:
        super().__init__(filename, **kwargs)
        path = Path(self.filename)
        self._files = complete_frames(path) if path.is_dir() else [first_file(path)]
        self.n_frames = len(self._files)
        first = read_snapshot(self._files[0]) if self._files else None
        if first is None and n_atoms is None:
            raise EOFError(f"{path}: no complete ddcMD frame yet")
        self.n_atoms = len(first.ids) if first is not None else int(n_atoms or 0)
        has_velocities = first is not None and first.velocities is not None
        self.ts = self._Timestep(self.n_atoms, velocities=has_velocities, **self._ts_kwargs)
        self.ts.frame = -1
        if first is not None:
            self._fill(self.ts, first, 0)

    def _read_frame(self, frame: int) -> Any:
        return self._fill(self.ts, read_snapshot(self._files[frame]), frame)

    def _read_next_timestep(self, ts: Any = None) -> Any:
        ts = self.ts if ts is None else ts
        if ts.frame + 1 >= self.n_frames:
            raise EOFError("end of the ddcMD frames")
        return self._fill(ts, read_snapshot(self._files[ts.frame + 1]), ts.frame + 1)

    def _fill(self, ts: Any, snapshot: Snapshot, frame: int) -> Any:
        if len(snapshot.ids) != self.n_atoms:
            raise UnreadableFileError(
                f"{self._files[frame]}: {len(snapshot.ids)} particles, the first frame has {self.n_atoms}"
            )
        ts.frame = frame
        ts.positions = frame_positions(snapshot)
        ts.dimensions = box_dimensions(snapshot.h)
        ts.time = snapshot.time_fs / FS_PER["ps"]
        velocities = frame_velocities(snapshot)
        if ts.has_velocities and velocities is not None:
            ts.velocities = velocities
        return ts

    def _get_dt(self) -> float:
        headers = [read_header(f) for f in self._files[:2]]
        if len(headers) < 2 or headers[0] is None or headers[1] is None:
            raise AttributeError("dt needs two frames")
        return (headers[1].time_fs - headers[0].time_fs) / FS_PER["ps"]

    def _reopen(self) -> None:
        self.ts.frame = -1

    def close(self) -> None:
        """Nothing stays open between frames."""


# ------------------------------------------------------------------ writers
_SPECIES_KIND = "ATOM"
FIELD_KEYS = ("field_names", "field_types", "field_units", "field_format")


def _index_of(names: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Distinct names in order of first appearance, and each entry's index among them."""
    distinct = list(dict.fromkeys(names.tolist()))
    lookup = {name: i for i, name in enumerate(distinct)}
    return distinct, np.array([lookup[name] for name in names.tolist()], dtype=np.int64)


def _header_text(name: str, snapshot: Snapshot, keys: dict[str, str], misc: Sequence[str]) -> bytes:
    """A header laid out as ddcMD's write_fileheader writes it."""
    rows = [" ".join(f"{v:21.14f}" for v in row) for row in snapshot.h]
    lines = [
        f"{name} FILEHEADER {{type=MULTILINE; datatype={keys['datatype']}; checksum=NONE; "
        "create_time=Thu Jan  1 00:00:00 1970; run_id=0x00000000;",
        "code_version=mummi-test-writer; srcpath=none;",
        f"loop={snapshot.loop}; time={snapshot.time_fs:f} fs;",
        f"nfiles={keys['nfiles']}; nrecord={len(snapshot.ids)}; lrec={keys['lrec']}; nfields={keys['nfields']}; "
        f"endian_key={keys['endian_key']};",
        *(f"{key}={keys[key]};" for key in FIELD_KEYS if key in keys),
        "reducedcorner=" + " ".join(f"{v:21.14f}" for v in snapshot.reduced_corner) + ";",
        f"h={rows[0]}",
        f"  {rows[1]}",
        f"  {rows[2]} Ang;",
        *misc,
        "}",
        " ",
        "",
    ]
    return "\n".join(lines).encode("ascii") + b"\n"


def _split(header: bytes, records: np.ndarray | list[bytes], nfiles: int) -> list[bytes]:
    """File contents: the records shared out over ``nfiles`` files, the header before the first."""
    chunks = np.array_split(np.arange(len(records)), nfiles)
    if isinstance(records, np.ndarray):
        parts = [records[c[0] : c[-1] + 1].tobytes() if len(c) else b"" for c in chunks]
    else:
        parts = [b"".join(records[i] for i in c) for c in chunks]
    parts[0] = header + parts[0]
    return parts


def subset_file_contents(snapshot: Snapshot, nfiles: int = 1, byteorder: str = "<") -> list[bytes]:
    """``snapshot`` as subsetWrite (``format = binaryCharmm``, lengthUnit Ang) writes it, one bytes per file."""
    species, species_index = _index_of(snapshot.species)
    groups, group_index = _index_of(snapshot.groups)
    dtype = np.dtype([("id", f"{byteorder}u8"), ("pinfo", f"{byteorder}u4"), ("r", f"{byteorder}f4", (3,))])
    records = np.zeros(len(snapshot.ids), dtype=dtype)
    records["id"] = snapshot.ids
    records["pinfo"] = encode_pinfo(species_index, group_index, len(groups))
    records["r"] = snapshot.positions - snapshot.corner
    keys = {
        "datatype": "FIXRECORDBINARY",
        "nfiles": str(nfiles),
        "lrec": str(dtype.itemsize),
        "nfields": "5",
        "endian_key": str(int.from_bytes(b"1234", "little" if byteorder == "<" else "big")),
        "field_names": "id pinfo rx ry  rz",
        "field_types": " u8 u4 f4 f4 f4",
        "field_units": "1 1 Ang Ang Ang",
    }
    misc = [
        "random = NONE;",
        "nrandomFieldSize = 0;",
        f"types = {_SPECIES_KIND} ;",
        f"groups = {' '.join(groups)} ;",
        f"species = {' '.join(species)} ;",
    ]
    return _split(_header_text("subset", snapshot, keys, misc), records, nfiles)


def particle_file_contents(snapshot: Snapshot, datatype: str = "VARRECORDASCII", nfiles: int = 1) -> list[bytes]:
    """``snapshot`` as an ASCII restart file: ``VARRECORDASCII`` as ddcMD's examples and converters
    write it, ``FIXRECORDASCII`` as ddcMD's checkpoints (collection_writeBLOCK, checksums left 0)."""
    fixed = datatype == "FIXRECORDASCII"
    velocities = np.zeros_like(snapshot.positions) if snapshot.velocities is None else snapshot.velocities
    values = np.hstack([snapshot.positions, velocities / FS_PER["ps"]])  # velocities in Ang/fs
    lines = [
        f"{'00000000 ' if fixed else ''}{int(gid):16d} {_SPECIES_KIND} {sp:>15s} {g:>6s} "
        + " ".join(f"{x:21.13e}" for x in row)
        for gid, sp, g, row in zip(snapshot.ids, snapshot.species, snapshot.groups, values)
    ]
    lrec = 8 * ((max(map(len, lines), default=0) + 1 + 7) // 8) if fixed else 0
    records = [(line.ljust(lrec - 1) if fixed else line).encode("ascii") + b"\n" for line in lines]
    names = "id class type group rx ry rz vx vy vz"
    keys = {
        "datatype": datatype,
        "nfiles": str(nfiles),
        "lrec": str(lrec),
        "nfields": str(len(names.split()) + fixed),
        "endian_key": str(int.from_bytes(b"1234", "little")),
        "field_names": f"checksum {names}" if fixed else names,
        "field_types": ("u " if fixed else "") + "u s s s f f f f f f",
    }
    if fixed:
        keys["field_units"] = "1 1 1 1 1 Ang Ang Ang Ang/fs Ang/fs Ang/fs"
        keys["field_format"] = "%08x %16lu %s %s %s" + " %21.13e" * 6
    groups, species = _index_of(snapshot.groups)[0], _index_of(snapshot.species)[0]
    misc = [f"groups = {' '.join(groups)} ;", f"species = {' '.join(species)} ;", f"types = {_SPECIES_KIND} ;"]
    return _split(_header_text("particle", snapshot, keys, misc), records, nfiles)


def write_file_set(first: Path, contents: Sequence[bytes]) -> None:
    """Write ``contents[i]`` to ``<base>#<i>``, in place as ddcMD does (a reader may see them half written)."""
    for path, content in zip(part_files(first_file(first), len(contents)), contents):
        path.write_bytes(content)
