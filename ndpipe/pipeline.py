"""Stages and the one loop that runs them.

A command's click callback builds a Stage and returns it; nothing runs until every stage of
the command line has been parsed and validated. Then `run` composes the stages over one reader:

    source (stdin, or fetch)  ->  transform  ->  transform  ->  sink (NDJSON, CSV, JSON array, ...)

`ndpipe a | ndpipe b` and `ndpipe a then b` therefore run the same generators; chaining only
skips the serialise/parse round trip between processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from ndpipe import output, projection
from ndpipe.errors import EXIT_OK, DataError, NdpipeError, UsageError
from ndpipe.io import Encoder, ErrorPolicy, Position, Records, encoder, read_records, write_ndjson
from ndpipe.text import plural as plural  # re-exported: messages everywhere import it from here

# A transform is called as transform(records), or as transform(records, policy=policy) when its
# stage says `takes_policy`: ops whose expressions can fail on one record hand the failure to the
# policy, which raises it or (--on-error skip) counts it.
Transform = Callable[..., Records]
Source = Callable[[ErrorPolicy, Position], Records]
# A sink gets the record stream, stdout, the encoder for untouched records (see
# ndpipe.io.encoder) and the reader's position (where the record in hand came from).
Sink = Callable[[Records, BinaryIO, Encoder, Position], None]


@dataclass
class Stage:
    """One command of a pipeline, fully configured.

    Exactly one of `transform`, `source` or `sink` is usually set. `finish` runs after the
    stream has ended (summaries on stderr) and may return a non-zero exit code.
    """

    name: str
    transform: Transform | None = None
    source: Source | None = None
    sink: Sink | None = None
    finish: Callable[[], int | None] | None = None
    on_error: str = "fail"
    notes: list[str] = field(default_factory=list)
    # The transform yields the records it receives untouched (filter, head, dedupe at once; sort
    # and sample later, pointing the position back at each: see takes_position), so its output
    # can be the input lines as read, not encoded again.
    preserves: bool = False
    takes_policy: bool = False
    # Files the stage reads, and files it writes as (label, path): checked against each other
    # once the whole command line is parsed, before anything is opened (see check_files).
    inputs: list[str] = field(default_factory=list)
    outputs: list[tuple[str, output.Target]] = field(default_factory=list)
    # What the stage reads of each record it receives, for projection pushdown: None is the
    # whole record; otherwise top-level field names (str) and compiled expressions, whose
    # fields ndpipe.projection works out (falling back to whole records when unsure).
    reads: list[Any] | None = None
    # The transform also takes the reader's Position (transform(records, position=...)) when
    # every stage before it passes records on untouched: it may then keep each record's input
    # line (position.raw) and, as it yields a record, point the position back at that record,
    # its line and its number, so the writer copies the line and errors name it.
    takes_position: bool = False
    # The transform yields new records built from what it reads (select): for projection
    # pushdown, the stages after it read those, not the reader's records.
    builds: bool = False
    # Work a sink right after this stage may do in its place, faster: escape-csv's default
    # style offers "formula-escape", which csv does column-wise on its batches.
    offers: str | None = None
    # A sink's answer to the offer of the stage before it: True when it takes the work over
    # (and will do it); that stage's transform is then skipped, its name still labels errors.
    absorbs: Callable[[str], bool] | None = None


def warn(command: str, message: str) -> None:
    """A message for the user on stderr, never on stdout (which carries data only)."""
    sys.stderr.write(f"ndpipe {command}: {message}\n")
    sys.stderr.flush()


def _named(records: Records, name: str) -> Records:
    """Tag errors raised by (or below) this stage with the stage's name, for the message prefix."""
    try:
        yield from records
    except NdpipeError as error:
        if getattr(error, "command", None) is None:
            error.command = name  # type: ignore[attr-defined]
        raise


def check_order(stages: list[Stage]) -> None:
    """A source may only come first and a sink only last; say so before reading anything."""
    for index, stage in enumerate(stages):
        problem = None
        if stage.source is not None and index > 0:
            problem = f"{stage.name} reads input itself, so it must come first in a chain"
        if stage.sink is not None and index < len(stages) - 1:
            following = stages[index + 1].name
            problem = f"{stage.name} writes the final output; it cannot be followed by {following}"
        if problem:
            error = UsageError(problem)
            error.command = stage.name  # type: ignore[attr-defined]
            raise error


def check_files(stages: list[Stage]) -> None:
    """Refuse (exit 2) an output that is an input, stdout's file, another output or a directory.

    stdin counts as an input when it is a file (`< users.ndjson`).
    """
    check_order(stages)
    inputs = ["-"] + [path for stage in stages for path in stage.inputs]
    outputs = [entry for stage in stages for entry in stage.outputs]
    output.check_files(inputs, outputs)


def compose(stages: list[Stage], position: Position, policy: ErrorPolicy) -> Records:
    """The record stream at the end of all transforms (the sink, if any, is not applied)."""
    first = stages[0]
    if first.source is not None:
        records: Records = _named(first.source(policy, position), first.name)
        rest = stages[1:]
    else:
        # Decode only the fields the stages read, when that is sure (see ndpipe.projection).
        records = read_records("-", policy, position, projection=projection.plan(stages))
        rest = stages
    untouched = True
    taken = _taken_over(stages)
    for stage in rest:
        if stage is taken:
            records = _named(records, stage.name)
            untouched = False
        elif stage.transform is not None:
            options: dict[str, Any] = {}
            if stage.takes_policy:
                options["policy"] = policy
            if stage.takes_position and untouched:
                options["position"] = position
            records = _named(stage.transform(records, **options), stage.name)
            untouched = untouched and stage.preserves
    return records


def _taken_over(stages: list[Stage]) -> Stage | None:
    """The stage whose work the sink after it does itself (csv escaping for escape-csv)."""
    if len(stages) < 2:
        return None
    before, last = stages[-2], stages[-1]
    if before.offers is None or last.absorbs is None or not last.absorbs(before.offers):
        return None
    return before


def run(stages: list[Stage], out: BinaryIO) -> int:
    """Run a validated pipeline to the end and return the exit code; errors propagate."""
    check_order(stages)
    position = Position("stdin")
    policy = ErrorPolicy("skip" if any(s.on_error == "skip" for s in stages) else "fail", position)
    records = compose(stages, position, policy)
    last = stages[-1]
    untouched = all(stage.preserves for stage in stages if stage.transform is not None)
    unchanged = position if untouched else None
    # Sinks only write and flush, which Stdout does with clear errors.
    stdout = cast(BinaryIO, output.Stdout(out))
    try:
        try:
            if last.sink is not None:
                last.sink(records, stdout, encoder(unchanged), position)
            else:
                write_ndjson(records, stdout, unchanged)
        except RecursionError:
            raise DataError("the record is nested too deeply to process") from None
    except NdpipeError as error:
        if getattr(error, "command", None) is None:
            error.command = last.name  # type: ignore[attr-defined]
        where = getattr(error, "where", "unset")
        if where is None and position.number:
            error.where = str(position)  # type: ignore[attr-defined]
        raise
    output.commit_all()
    summary = policy.summary()
    if summary:
        warn(stages[0].name, summary)
    code = EXIT_OK
    for stage in stages:
        if stage.finish is not None:
            code = max(code, stage.finish() or EXIT_OK)
    return code
