"""The encoders' network architectures: frozen dataclasses saved in a model's JSON manifest."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

A = TypeVar("A", bound="JsonArchitecture")


class JsonArchitecture:
    """``to_json``/``from_json`` for a frozen dataclass whose tuple fields (layer widths) are lists in JSON."""

    def to_json(self) -> dict[str, object]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[A], data: dict[str, Any]) -> A:
        own = fields(cls)  # type: ignore[arg-type]
        known = {f.name for f in own}
        unknown = set(data) - known
        if unknown:
            msg = f"unknown architecture keys {sorted(unknown)}; allowed: {sorted(known)}"
            raise ValueError(msg)
        widths = {f.name for f in own if isinstance(f.default, tuple)}
        return cls(**{key: tuple(int(w) for w in v) if key in widths else v for key, v in data.items()})
