"""The lipid channel table: the 14 concentration channels of the macro model, its patches and every sim.

One definition, used by the macro model (field order), membrane building (which
lipid a channel places), the in situ analysis (which residues a channel counts)
and the feedback (which channels it corrects). The plasma-membrane mimic of seed
000: eight inner-leaflet lipid types and six outer ones.
"""

from __future__ import annotations

from enum import Enum


class Leaflet(str, Enum):
    INNER = "inner"
    OUTER = "outer"


INNER_LIPIDS: tuple[str, ...] = ("POPC", "PAPC", "POPE", "DIPE", "DPSM", "PAPS", "PAP6", "CHOL")
OUTER_LIPIDS: tuple[str, ...] = ("POPC", "PAPC", "POPE", "DIPE", "DPSM", "CHOL")
#: The 14 channels, in order: (leaflet, lipid name), the inner leaflet first.
CHANNELS: tuple[tuple[str, str], ...] = tuple(("inner", n) for n in INNER_LIPIDS) + tuple(
    ("outer", n) for n in OUTER_LIPIDS
)
#: ``"inner:POPC"`` ... in channel order.
CHANNEL_NAMES: tuple[str, ...] = tuple(f"{leaflet}:{name}" for leaflet, name in CHANNELS)
N_CHANNELS = len(CHANNELS)
N_INNER = len(INNER_LIPIDS)
#: Residue name of the protein in built membranes and trajectories.
PROTEIN_NAME = "RAS"


def channel_of(leaflet: str, lipid: str) -> int:
    """Channel index of ``lipid`` in ``leaflet``, or -1 when the patch has no such channel."""
    names = INNER_LIPIDS if leaflet == Leaflet.INNER.value else OUTER_LIPIDS
    offset = 0 if leaflet == Leaflet.INNER.value else N_INNER
    return offset + names.index(lipid) if lipid in names else -1


def leaflet_of(channel: int) -> int:
    """0 for an inner-leaflet channel, 1 for an outer one."""
    return 0 if channel < N_INNER else 1


def leaflet_channels(leaflet: str) -> list[int]:
    """The channels of ``leaflet`` ('inner', 'outer', or 'both')."""
    if leaflet == Leaflet.INNER.value:
        return list(range(N_INNER))
    if leaflet == Leaflet.OUTER.value:
        return list(range(N_INNER, N_CHANNELS))
    return list(range(N_CHANNELS))
