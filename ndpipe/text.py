"""Words for messages, shared by every layer (commands, ops and services alike)."""

from __future__ import annotations


def plural(count: int, noun: str, plural: str | None = None) -> str:
    """`1 user`, `2 users`: a count with its noun, for messages (`plural` if not noun + s)."""
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
