"""The ids at some seen indices, as a read-only sequence that looks them up only when read.

``DynimSampler.add_candidates`` returns the ids it discarded this way: a campaign's
coordinator does not read them, and building a list of ten thousand strings spread
over the heap costs more than a millisecond of cache misses per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np


class IdView(Sequence[str]):
    """``ids[i]`` for each ``i`` in ``at``; ``ids`` must only ever grow at the end."""

    __slots__ = ("_ids", "_at")

    def __init__(self, ids: list[str], at: np.ndarray) -> None:
        self._ids, self._at = ids, at

    def __len__(self) -> int:
        return len(self._at)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return list(map(self._ids.__getitem__, self._at[i].tolist()))
        return self._ids[int(self._at[i])]

    def __iter__(self) -> Iterator[str]:
        return map(self._ids.__getitem__, self._at.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are not hashable

    def __repr__(self) -> str:
        return f"IdView({list(self)!r})"
