"""ndpipe: streaming NDJSON tools for Auth0 user exports and any large NDJSON.

The command line is `ndpipe.cli`; the same stages as Python functions are in `ndpipe.api`, and
re-exported here (`ndpipe.read`, `ndpipe.select`, ...). They are imported on first use, so the
CLI, which imports this module first, starts no slower for them.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: this module runs first for every CLI command, so it imports nothing
# it does not need (mypy reads the name all the same).
TYPE_CHECKING = False

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from ndpipe.api import (
        CleanStats,
        DataError,
        DedupeStats,
        NdpipeError,
        RecordError,
        Rejected,
        Skipped,
        UpsertStats,
        UsageError,
        dedupe,
        escape_csv,
        filter,
        head,
        import_clean,
        map,
        read,
        sample,
        select,
        sort,
        upsert_patch,
        write_csv,
        write_json_array,
        write_ndjson,
    )

__all__ = [
    "CleanStats",
    "DataError",
    "DedupeStats",
    "NdpipeError",
    "RecordError",
    "Rejected",
    "Skipped",
    "UpsertStats",
    "UsageError",
    "__version__",
    "dedupe",
    "escape_csv",
    "filter",
    "head",
    "import_clean",
    "map",
    "read",
    "sample",
    "select",
    "sort",
    "upsert_patch",
    "write_csv",
    "write_json_array",
    "write_ndjson",
]


def __getattr__(name: str) -> Any:
    """`ndpipe.select` and the rest: ndpipe.api, imported when one is first used."""
    if name in __all__:
        return getattr(importlib.import_module("ndpipe.api"), name)
    raise AttributeError(f"module 'ndpipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
