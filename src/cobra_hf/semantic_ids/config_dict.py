"""What the quantizers' config dataclasses share: a JSON-ready dict and back, refusing fields it does not know."""

from __future__ import annotations

import dataclasses


class DictConfig:
    """Mixin for a dataclass saved as config.json beside `model_type` and `format_version` (which are not fields)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"model_type", "format_version"})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {unknown}")
        return cls(**{k: v for k, v in data.items() if k in known})
