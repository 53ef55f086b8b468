"""Pydantic types shared by every domain's schemas (one definition each)."""

from __future__ import annotations

from typing import Literal

#: How labcrunch writes a non-finite number in JSON, which has no NaN or infinity.
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
#: A number as labcrunch reads and writes it: a JSON number, or one of the :data:`NonFinite` strings.
Number = float | NonFinite
