"""Array backends of the lipid solver: numpy (the reference, CPU) and torch (GPU).

A backend owns the field arrays and the few primitives the DDFT step is made of:
real FFTs, a species-mixing matrix product (in real and in Fourier space), the
finite-volume drift divergence, and the scatter of RAS potential blocks. The
numpy versions are the readable reference; the torch versions do the same
arithmetic on a GPU (or on the CPU, which is how the tests compare them). Backends
are chosen by name with :func:`make_backend`; torch is imported only when asked for.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import scipy.fft

log = logging.getLogger(__name__)

COMPUTE = ("auto", "numpy", "torch")
#: Rows per block of the numpy drift kernel (its work arrays then stay in cache).
DRIFT_BLOCK_ROWS = 128
#: Grids of at least this many points split the numpy drift's channels over two threads.
DRIFT_THREAD_MIN_POINTS = 512 * 512


class Backend(Protocol):
    name: str
    real: np.dtype
    device: str

    def asarray(self, x: np.ndarray) -> Any: ...
    def to_numpy(self, x: Any) -> np.ndarray: ...
    def rfft2(self, x: Any) -> Any: ...
    def irfft2(self, x_hat: Any, n: int, overwrite: bool = False) -> Any: ...
    def mix(self, matrix: Any, x: Any) -> Any: ...
    def mix_fourier(self, matrix: Any, x_hat: Any) -> Any: ...
    def weighted_sum(self, weights: Any, x_hat: Any) -> Any: ...
    def fourier_factor(self, factor: np.ndarray) -> Any: ...
    def concat(self, parts: list[Any]) -> Any: ...
    def drift(self, c: Any, phi: Any) -> Any: ...
    def add_blocks(self, field: Any, rows: np.ndarray, cols: np.ndarray, blocks: np.ndarray) -> None: ...
    def channel_min(self, c: Any) -> np.ndarray: ...
    def channel_max(self, c: Any) -> np.ndarray: ...
    def channel_sum(self, c: Any) -> np.ndarray: ...


def make_backend(compute: str = "auto", dtype: str | np.dtype = "float32") -> Backend:
    """``numpy``, ``torch`` (CUDA when present, else CPU) or ``auto`` (torch on a GPU, else numpy)."""
    if compute not in COMPUTE:
        raise ValueError(f"unknown compute backend {compute!r}; allowed: {', '.join(COMPUTE)}")
    if compute == "auto":
        try:
            import torch
        except ImportError:
            return NumpyBackend(dtype)
        compute = "torch" if torch.cuda.is_available() else "numpy"
    return TorchBackend(dtype) if compute == "torch" else NumpyBackend(dtype)


def tune_allocator() -> None:
    """Let glibc reuse large blocks instead of mapping fresh pages for every field-sized array.

    A step allocates a dozen arrays of N²×14 values; above glibc's mmap threshold
    (at most 32 MiB by default) each one is mapped and page-faulted anew, which
    costs more system time than the arithmetic. Raising the threshold keeps them on
    the heap. Process-wide and harmless; called by the macro job and benchmark.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class NumpyBackend:
    """scipy.fft with all available cores; float32 or float64."""

    name = "numpy"
    device = "cpu"

    def __init__(self, dtype: str | np.dtype = "float32") -> None:
        self.real = np.dtype(dtype)
        if self.real not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.real}")
        self.workers = _cpu_count()
        self._work: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._sum_weights: tuple[np.ndarray, np.ndarray] | None = None

    def asarray(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        kind = np.result_type(self.real, np.complex64) if np.iscomplexobj(x) else self.real
        return np.ascontiguousarray(x, dtype=kind)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.array(x)

    def rfft2(self, x: np.ndarray) -> np.ndarray:
        # What scipy's rfft2 does, with the second pass (complex, along y) in place:
        # pocketfft's in-place transform along a non-contiguous axis is about twice
        # as fast as its out-of-place one here; the result is the same.
        half = scipy.fft.rfft(x, axis=-1, workers=self.workers)
        return scipy.fft.fft(half, axis=-2, workers=self.workers, overwrite_x=True)

    def irfft2(self, x_hat: np.ndarray, n: int, overwrite: bool = False) -> np.ndarray:
        """Inverse of :meth:`rfft2`; ``overwrite`` lets it use ``x_hat`` as its work array."""
        # Two passes (complex along y, in place on a copy unless x_hat may be
        # overwritten, then complex-to-real along x) run faster here than scipy's
        # irfft2 and give the same result. The last pass is not asked to overwrite
        # its input: that makes pocketfft slower, not faster.
        half = x_hat if overwrite and x_hat.flags.c_contiguous else np.array(x_hat, order="C")
        half = scipy.fft.ifft(half, axis=-2, workers=self.workers, overwrite_x=True)
        return scipy.fft.irfft(half, n=n, axis=-1, workers=self.workers)

    def mix(self, matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``matrix @ x`` over the leading (channel) axis of real fields."""
        shape = x.shape
        return (matrix.astype(self.real) @ x.reshape(shape[0], -1)).reshape((matrix.shape[0],) + shape[1:])

    def mix_fourier(self, matrix: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """A real matrix times complex fields: one real product on the (re, im) view."""
        shape = x_hat.shape
        flat = x_hat.view(self.real).reshape(shape[0], -1)
        out = matrix.astype(self.real) @ flat
        return out.view(x_hat.dtype).reshape((matrix.shape[0],) + shape[1:])

    def weighted_sum(self, weights: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """Σ_i weights[s, i] * x_hat[i] for each s (weights real, per Fourier mode), without big temporaries.

        One einsum per s on the (re, im) view, with the weights repeated along the
        last axis (cached for the weights object): a single pass of real products
        instead of a complex-by-real multiply and an add per (s, i).
        """
        x_hat = self.asarray(x_hat)
        cached = self._sum_weights
        if cached is None or cached[0] is not weights:
            cached = self._sum_weights = (weights, np.repeat(np.asarray(weights, self.real), 2, axis=-1))
        repeated = cached[1]
        n_out, n_in = weights.shape[:2]
        flat = x_hat.view(self.real).reshape(n_in, -1)
        out = np.empty((n_out,) + x_hat.shape[1:], x_hat.dtype)
        out_flat = out.view(self.real).reshape(n_out, -1)
        for s in range(n_out):
            np.einsum("ij,ij->j", repeated[s].reshape(n_in, -1), flat, out=out_flat[s])
        return out

    def fourier_factor(self, factor: np.ndarray) -> np.ndarray:
        """A real per-mode factor in the form that multiplies complex fields fastest.

        Complex with a zero imaginary part; the products are the same.
        """
        return np.ascontiguousarray(factor, dtype=np.result_type(self.real, np.complex64))

    def concat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=0)

    def drift(self, c: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Per cell, Σ over its faces of the drift flux q (see :func:`_face_flux`), per channel.

        The result is q(right face) - q(left face) + q(upper face) - q(lower face).
        Rows are processed in blocks of ``DRIFT_BLOCK_ROWS`` so that the work arrays
        stay in cache; the lower face of a block's first row is the previous
        block's last upper face (for row 0, the last block's).
        """
        out = np.empty_like(c)
        n_rows, n_cols = c.shape[1:]
        block = min(DRIFT_BLOCK_ROWS, n_rows)
        split = self._drift_split(c.shape)
        if split:
            # the channels are independent: the worker takes the first ones, this thread the rest
            done = self._pool().submit(self._drift_channels, c[:split], phi[:split], out[:split], block, 1)
            self._drift_channels(c[split:], phi[split:], out[split:], block, 0)
            done.result()
        else:
            self._drift_channels(c, phi, out, block, 0)
        return out

    def _drift_split(self, shape: tuple[int, ...]) -> int:
        """How many channels the drift hands to a second thread (0: none, for small grids or one core)."""
        if self.workers < 2 or shape[0] < 2 or shape[1] * shape[2] < DRIFT_THREAD_MIN_POINTS:
            return 0
        return shape[0] // 2

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="macro-drift")
        return self._executor

    def _drift_channels(self, c: np.ndarray, phi: np.ndarray, out: np.ndarray, block: int, slot: int) -> None:
        n_rows, n_cols = c.shape[1:]
        d, s, q = self._buffers((block, n_cols), slot)
        for ci, pi, oi in zip(c, phi, out):
            carry = None
            for r0 in range(0, n_rows, block):
                r1 = min(r0 + block, n_rows)
                k = r1 - r0
                cb, pb, ob, db, sb, qb = ci[r0:r1], pi[r0:r1], oi[r0:r1], d[:k], s[:k], q[:k]
                # x faces: between columns ix and ix+1 (periodic)
                np.subtract(pb[:, 1:], pb[:, :-1], out=db[:, :-1])
                np.subtract(pb[:, :1], pb[:, -1:], out=db[:, -1:])
                np.subtract(cb[:, 1:], cb[:, :-1], out=sb[:, :-1])
                np.subtract(cb[:, :1], cb[:, -1:], out=sb[:, -1:])
                _face_flux(db, sb, cb, qb)
                np.subtract(qb[:, 1:], qb[:, :-1], out=ob[:, 1:])
                np.subtract(qb[:, :1], qb[:, -1:], out=ob[:, :1])
                # y faces: between rows iy and iy+1 (periodic)
                m = k if r1 < n_rows else k - 1
                np.subtract(pi[r0 + 1 : r0 + 1 + m], pb[:m], out=db[:m])
                np.subtract(ci[r0 + 1 : r0 + 1 + m], cb[:m], out=sb[:m])
                if m < k:
                    np.subtract(pi[0], pi[-1], out=db[-1])
                    np.subtract(ci[0], ci[-1], out=sb[-1])
                _face_flux(db, sb, cb, qb)
                ob += qb
                ob[1:] -= qb[:-1]
                if carry is not None:
                    ob[0] -= carry
                carry = qb[-1].copy()
            oi[0] -= carry

    def add_blocks(self, field: np.ndarray, rows: np.ndarray, cols: np.ndarray, blocks: np.ndarray) -> None:
        """``field[:, rows[a], cols[a]] += blocks[a]`` for each a (periodic indices, no repeats within a block)."""
        size = rows.shape[1]
        for a in range(len(blocks)):
            r0, c0 = rows[a, 0], cols[a, 0]
            if rows[a, -1] == r0 + size - 1 and cols[a, -1] == c0 + size - 1:  # no wrap: a plain slice
                field[:, r0 : r0 + size, c0 : c0 + size] += blocks[a]
            else:
                field[:, rows[a][:, None], cols[a][None, :]] += blocks[a]

    def channel_min(self, c: np.ndarray) -> np.ndarray:
        return c.reshape(c.shape[0], -1).min(axis=1)

    def channel_max(self, c: np.ndarray) -> np.ndarray:
        return c.reshape(c.shape[0], -1).max(axis=1).astype(np.float64)

    def channel_sum(self, c: np.ndarray) -> np.ndarray:
        return c.reshape(c.shape[0], -1).sum(axis=1, dtype=np.float64)

    def _buffers(self, shape: tuple[int, ...], slot: int = 0) -> tuple[np.ndarray, ...]:
        """Three work arrays of ``shape``, one set per thread slot."""
        key = shape + (slot,)
        work = self._work
        if key not in work:
            work = {k: v for k, v in work.items() if k[:-1] == shape}  # drop other shapes' sets
            work[key] = tuple(np.empty(shape, self.real) for _ in range(3))
            self._work = work
        return work[key]


def _face_flux(d: np.ndarray, s: np.ndarray, c: np.ndarray, q: np.ndarray) -> None:
    """q = d·(c + s·(1/2 + d/12)) in place (d: Δφ across the face, s: Δc, c: left cell)."""
    np.multiply(d, 1.0 / 12.0, out=q)
    q += 0.5
    q *= s
    q += c
    q *= d


class TorchBackend:
    """torch on CUDA when available (else CPU, for tests); float32 or float64."""

    name = "torch"

    def __init__(self, dtype: str | np.dtype = "float32") -> None:
        import torch

        self.torch = torch
        self.real = np.dtype(dtype)
        self._dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[self.real]
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    def asarray(self, x: np.ndarray) -> Any:
        x = np.asarray(x)
        t = self.torch.as_tensor(np.ascontiguousarray(x), device=self.device)
        return t.to(self._dtype.to_complex() if t.is_complex() else self._dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy().copy()

    def rfft2(self, x: Any) -> Any:
        return self.torch.fft.rfft2(x)

    def irfft2(self, x_hat: Any, n: int, overwrite: bool = False) -> Any:
        return self.torch.fft.irfft2(x_hat, s=(n, n))

    def mix(self, matrix: Any, x: Any) -> Any:
        m = self.asarray(matrix)
        return (m @ x.reshape(x.shape[0], -1)).reshape((m.shape[0],) + tuple(x.shape[1:]))

    def mix_fourier(self, matrix: Any, x_hat: Any) -> Any:
        m = self.asarray(matrix)
        flat = self.torch.view_as_real(x_hat).reshape(x_hat.shape[0], -1)
        out = (m @ flat).reshape((m.shape[0],) + tuple(x_hat.shape[1:]) + (2,))
        return self.torch.view_as_complex(out.contiguous())

    def weighted_sum(self, weights: Any, x_hat: Any) -> Any:
        return (weights * x_hat[None]).sum(dim=1)

    def fourier_factor(self, factor: np.ndarray) -> Any:
        return self.asarray(factor)

    def concat(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts, 0)

    def drift(self, c: Any, phi: Any) -> Any:
        out = self.torch.zeros_like(c)
        for axis in (-1, -2):
            d = self.torch.roll(phi, -1, axis) - phi
            s = self.torch.roll(c, -1, axis) - c
            q = d * (c + s * (0.5 + d / 12.0))
            out += q - self.torch.roll(q, 1, axis)
        return out

    def add_blocks(self, field: Any, rows: np.ndarray, cols: np.ndarray, blocks: np.ndarray) -> None:
        n = field.shape[-1]
        flat = (rows[:, :, None] * n + cols[:, None, :]).reshape(-1)
        values = self.asarray(blocks).permute(1, 0, 2, 3).reshape(field.shape[0], -1)
        field.view(field.shape[0], -1).index_add_(1, self.torch.as_tensor(flat, device=self.device), values)

    def channel_min(self, c: Any) -> np.ndarray:
        return self.to_numpy(c.reshape(c.shape[0], -1).amin(dim=1))

    def channel_max(self, c: Any) -> np.ndarray:
        return self.to_numpy(c.reshape(c.shape[0], -1).amax(dim=1)).astype(np.float64)

    def channel_sum(self, c: Any) -> np.ndarray:
        return self.to_numpy(c.reshape(c.shape[0], -1).sum(dim=1, dtype=self.torch.float64))
