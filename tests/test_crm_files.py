"""ndpipe.ops.crm: flat records into bounded upload files, report lines and their round trip."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpipe import codec
from ndpipe.errors import RecordError
from ndpipe.io import Position
from ndpipe.ops.crm import (
    DELIMITERS,
    Counts,
    UploadFile,
    check_flat,
    is_report_entry,
    join_results,
    report_entry,
    split_files,
    summary_line,
    unwrap_reports,
)

# Keys as records carry them, hostile ones included: the delimiters, quotes, line ends, unicode.
keys = st.sampled_from(
    ["email", "firstName", "lastName", "a,b", "semi;colon", "tab\there", 'q"uote', "nl\nkey", "é"]
)
texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(",;\t\"\r\n '"),
    max_size=40,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
flat_records = st.dictionaries(keys, scalars, min_size=1, max_size=6)


def positioned(records: list[dict], position: Position) -> Iterator[dict]:
    """Records as the reader yields them: the position names each one as it comes."""
    for number, record in enumerate(records, 1):
        position.number = number
        yield record


def cell(value: object) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else str(value)


def reference(records: list[dict], delimiter: str) -> bytes:
    """The file these records make, written by the standard library's CSV writer."""
    header: list[str] = []
    for record in records:
        header += [key for key in record if key not in header]
    lines = []
    # With CRLF as its line end the writer quotes a cell holding a CR or an LF (with LF alone,
    # Python 3.11's leaves a CR bare); each line then ends in LF, as the upload files do.
    for row in [header] + [[cell(record.get(key)) for key in header] for record in records]:
        text = io.StringIO()
        csv.writer(text, delimiter=delimiter, lineterminator="\r\n").writerow(row)
        lines.append(text.getvalue().removesuffix("\r\n") + "\n")
    return "".join(lines).encode()


def split(records: list[dict], tmp: Path, **options: object) -> tuple[list[UploadFile], object]:
    """The files split_files makes, and the error it ended with (or None)."""
    position = Position("test")
    files: list[UploadFile] = []
    error = None
    try:
        for upload in split_files(
            positioned(records, position), position=position, spool_dir=str(tmp), **options
        ):
            files.append(upload)
    except RecordError as raised:
        error = raised
    return files, error


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(flat_records, max_size=25),
    max_bytes=st.integers(min_value=8, max_value=600),
    format=st.sampled_from(sorted(DELIMITERS)),
)
def test_files_are_bounded_whole_ordered_and_exact(
    tmp_path: Path, records: list[dict], max_bytes: int, format: str
) -> None:
    delimiter = DELIMITERS[format]
    records = [codec.loads(codec.dumps(record)) for record in records]
    directory = tmp_path / os.urandom(4).hex()
    directory.mkdir()
    files, error = split(records, directory, delimiter=delimiter, max_bytes=max_bytes)
    sent = 0
    for number, upload in enumerate(files, 1):
        assert upload.number == number
        data = Path(upload.path).read_bytes()
        assert len(data) == upload.size <= max_bytes
        chunk = records[sent : sent + upload.count]
        # Byte for byte what the standard library writes: header first, RFC 4180 quoting,
        # values exact, rows whole and in input order.
        assert data == reference(chunk, delimiter)
        rows = list(upload.rows())
        assert [codec.loads(row.record_json) for row in rows] == chunk
        assert [row.input for row in rows] == [f"test:{sent + i + 1}" for i in range(len(chunk))]
        sent += upload.count
        # Greedy: the next record would not have fitted in this file.
        if sent < len(records) and (number < len(files) or error is not None):
            assert len(reference([*chunk, records[sent]], delimiter)) > max_bytes
    if error is None:
        assert sent == len(records)
    else:
        # The record that cannot fit in a file even alone is named by its line.
        assert str(error).startswith(f"test:{sent + 1}: ")
        assert "--max-bytes" in str(error)
        assert len(reference([records[sent]], delimiter)) > max_bytes


def test_missing_keys_are_empty_cells_and_header_is_union(tmp_path: Path) -> None:
    records = [{"email": "a@x.com"}, {"firstName": "B", "email": "b@x.com"}, {"lastName": None}]
    (upload,) = split(records, tmp_path, delimiter=",", max_bytes=10_000)[0]
    assert upload.header == ["email", "firstName", "lastName"]
    assert (
        Path(upload.path).read_bytes() == b"email,firstName,lastName\na@x.com,,\nb@x.com,B,\n,,\n"
    )


def test_a_lone_empty_cell_is_quoted_so_no_blank_line(tmp_path: Path) -> None:
    (upload,) = split([{"email": ""}, {"email": None}], tmp_path, max_bytes=100)[0]
    assert Path(upload.path).read_bytes() == b'email\n""\n""\n'
    assert [row.cells for row in upload.rows()] == [[""], [""]]


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], {}, []])
def test_nested_values_are_refused_naming_the_field(tmp_path: Path, value: object) -> None:
    files, error = split(
        [{"email": "a@x.com"}, {"email": "b@x.com", "app_metadata": value}],
        tmp_path,
        max_bytes=1000,
    )
    # The file before the bad record still goes out, as for any bad input.
    assert [upload.count for upload in files] == [1]
    assert str(error).startswith("test:2: field 'app_metadata' is an")
    with pytest.raises(RecordError, match=r"users\.json:3: field 'x'"):
        check_flat({"x": value}, "users.json:3")


def test_an_empty_record_is_refused(tmp_path: Path) -> None:
    _, error = split([{}], tmp_path, max_bytes=1000)
    assert str(error).startswith("test:1: the record has no fields")
    _, error = split([{"email": "a@x.com"}, {}], tmp_path, max_bytes=1000)
    assert str(error).startswith("test:2: the record has no fields")


def test_convert_rewrites_strings_and_the_prefix_warning_comes_once(tmp_path: Path) -> None:
    notes: list[str] = []
    records = [{"email": "'a@x.com", "when": "2024-01-02T03:04:05.678Z"}, {"email": "'b@x.com"}]
    (upload,) = split(
        records,
        tmp_path,
        max_bytes=1000,
        convert=lambda key, text: text.upper() if key == "when" else text,
        notify=notes.append,
    )[0]
    assert Path(
        upload.path
    ).read_bytes() == b"email,when\n'a@x.com,2024-01-02T03:04:05.678Z\n'b@x.com,\n".replace(
        b"05.678Z", b"05.678Z".upper()
    )
    assert len(notes) == 1
    assert "test:1" in notes[0] and "escape-csv --unescape" in notes[0]
    # The report keeps the record as read, not as converted.
    assert codec.loads(next(upload.rows()).record_json) == records[0]


def test_remove_deletes_the_files(tmp_path: Path) -> None:
    files, _ = split([{"email": f"{n}@x.com"} for n in range(50)], tmp_path, max_bytes=100)
    assert len(files) > 2
    for upload in files:
        upload.remove()
    assert list(tmp_path.iterdir()) == []


def test_join_results_by_cells_then_by_key(tmp_path: Path) -> None:
    records = [{"email": f"u{n}@x.com", "firstName": f"N{n}"} for n in range(6)]
    (upload,) = split(records, tmp_path, max_bytes=10_000)[0]
    # The service's header order differs, one row's other cell was changed by the service,
    # and one row matches nothing at all.
    header = ["firstName", "email"]
    results = [
        (["N4", "u4@x.com"], "r4"),
        (["changed", "u1@x.com"], "r1"),
        (["N9", "nobody@x.com"], "r9"),
    ]
    joined = list(join_results(upload, header, results, key="email"))
    assert [(row.input if row else None, reason) for row, _, reason in joined] == [
        ("test:2", "r1"),
        ("test:5", "r4"),
        (None, "r9"),
    ]


report_values = st.recursive(
    scalars, lambda children: st.lists(children) | st.dictionaries(texts, children), max_leaves=8
)


@settings(max_examples=30, deadline=None)
@given(
    record=st.dictionaries(texts, report_values, max_size=5),
    reason=texts,
    batch=st.none() | st.integers(min_value=1, max_value=2**31),
    warning=st.booleans(),
)
def test_report_lines_read_back_as_their_record(
    record: dict, reason: str, batch: int | None, warning: bool
) -> None:
    entry = report_entry(record, "stdin:7", reason, batch=batch, warning=warning)
    line = codec.loads(codec.dumps(entry))
    assert list(unwrap_reports([line])) == [record]
    # A record that merely looks like one (an extra key) is left as it is.
    other = {**line, "extra": 1}
    assert list(unwrap_reports([other])) == [other]
    if not is_report_entry(record):
        assert list(unwrap_reports([record])) == [record]


def test_summary_line() -> None:
    counts = Counts(read=10, sent=9, failed=2, warned=1, jobs=3, skipped=1)
    line = summary_line(counts, job_noun="batch", job_plural="batches", report="failed.ndjson")
    assert line == (
        "10 records read (1 in files before --start-at), 9 sent in 3 batches: 7 accepted, "
        "2 failed, 1 with warnings; see failed.ndjson"
    )
    dry = summary_line(Counts(read=1, sent=1, files=1), dry_run=True)
    assert dry == "dry run: 1 record read; 1 in 1 file; nothing was sent"
