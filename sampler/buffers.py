"""Arrays that grow at the end in amortised constant time per element."""

from __future__ import annotations

from typing import Any

import numpy as np


class Growing:
    """A numpy array of rows that only grows at the end; index it like the array it holds."""

    def __init__(self, dtype: Any, row_shape: tuple[int, ...] = (), capacity: int = 1024) -> None:
        self._data = np.empty((capacity, *row_shape), dtype=dtype)
        self._n = 0

    @classmethod
    def of(cls, values: np.ndarray) -> Growing:
        grown = cls(values.dtype, values.shape[1:], max(1024, len(values)))
        grown.extend(values)
        return grown

    def extend(self, values: np.ndarray) -> None:
        n = len(values)
        if self._n + n > len(self._data):
            data = np.empty((max(2 * len(self._data), self._n + n), *self._data.shape[1:]), dtype=self._data.dtype)
            data[: self._n] = self._data[: self._n]
            self._data = data
        self._data[self._n : self._n + n] = values
        self._n += n

    def append(self, value: Any) -> None:
        if self._n == len(self._data):
            self.extend(np.asarray([value], dtype=self._data.dtype))
        else:
            self._data[self._n] = value
            self._n += 1

    @property
    def view(self) -> np.ndarray:
        return self._data[: self._n]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        return self.view[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.view[index] = value
