"""Progress on stderr for long runs: fetch's download, import's jobs, sort's spill and merge.

The CLI runs against the loopback Auth0 server, with jobs polled without pauses. Plain lines
are limited to one per NDPIPE_PROGRESS_INTERVAL seconds (30 by default), so a fast run shows
none; the tests set it to 0 to see every line the size rules allow. The redrawn line of a
terminal is checked through a pseudo-terminal on stderr, stdout staying a pipe.
"""

from __future__ import annotations

import gzip
import io
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ndpipe.progress import Progress, size
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import ROOT, environment, ndjson, run_ndpipe

SYNTHETIC = 8000
EVERY_STEP = {"NDPIPE_POLL_INTERVAL": "0", "NDPIPE_PROGRESS_INTERVAL": "0"}
DOWNLOADING = re.compile(
    r"ndpipe fetch: job (job_\w+): downloading, ([\d.]+ k?M?B) of ([\d.]+ k?M?B) \((\d+)%\), "
    r"([\d,]+) users"
)
IMPORTING = re.compile(
    r"ndpipe import: (\d+)/(\d+) jobs? done, ([\d,]+) users? imported, [\d.,]+ users/s"
    r"(, about \d+ (s|min|h) left|, all input read)?"
)


def tenant_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {"AUTH0_TOKEN": "", **env, "NDPIPE_POLL_INTERVAL": "0", **extra}


def lines(stderr: bytes) -> list[str]:
    return stderr.decode().splitlines()


def with_tty_stderr(
    args: list[str], env: dict[str, str], stdin: Any = None
) -> tuple[int, bytes, str]:
    """Run `ndpipe ARGS` with stderr on a pseudo-terminal; (exit code, stdout, terminal text)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ndpipe", *args],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=environment(env),
        cwd=ROOT,
    )
    os.close(follower)
    seen = bytearray()

    def drain() -> None:  # the terminal must be read while the command writes to it
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal
                return
            if not data:
                return
            seen.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = process.communicate(timeout=60)
    reader.join(timeout=10)
    os.close(leader)
    return process.returncode, stdout, seen.decode().replace("\r\n", "\n")


# --- the shared line -------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_line_is_redrawn_at_most_five_times_a_second():
    now = [0.0]
    terminal = Terminal()
    line = Progress("ndpipe x", stream=terminal, interval=30, clock=lambda: now[0])
    for step in range(100):  # 100 updates in 1 s
        now[0] = step / 100
        line.update(f"{step} done")
    line.close()
    text = terminal.getvalue()
    assert text.count("\r") == 6  # at 0, 0.2, 0.4, 0.6, 0.8 s, and the last state on close
    assert text.endswith("\rndpipe x: 99 done\x1b[K\n")


def test_plain_lines_wait_for_the_interval_and_each_tenth():
    now = [0.0]
    log = io.StringIO()
    line = Progress("ndpipe x", stream=log, interval=10, clock=lambda: now[0])
    for second in range(100):
        now[0] = second
        line.update(f"{second}%", fraction=second / 100)
    line.close()
    assert log.getvalue().splitlines() == [f"ndpipe x: {n}%" for n in range(10, 100, 10)]


def test_plain_lines_without_a_size_come_once_per_interval():
    now = [0.0]
    log = io.StringIO()
    line = Progress("ndpipe x", stream=log, interval=10, clock=lambda: now[0])
    for second in range(35):
        now[0] = second
        line.update(f"{second} users")
    assert log.getvalue().splitlines() == ["ndpipe x: 10 users", "ndpipe x: 20 users",
                                           "ndpipe x: 30 users"]  # fmt: skip


def test_sizes():
    assert [size(n) for n in (950, 64_000, 12_345_678, 2_500_000_000)] == [
        "950 B", "64 kB", "12.3 MB", "2.5 GB"]  # fmt: skip


# --- fetch -----------------------------------------------------------------------------------


def test_fetch_shows_the_download_on_stderr_and_not_on_stdout(
    auth0_server: FakeAuth0, auth0_env: dict[str, str]
) -> None:
    auth0_server.seed_synthetic(SYNTHETIC)
    result = run_ndpipe("fetch", env=tenant_env(auth0_env, **EVERY_STEP))
    assert result.returncode == 0, result.stderr.decode()
    found = [DOWNLOADING.fullmatch(line) for line in lines(result.stderr)]
    shown = [match for match in found if match]
    assert len(shown) >= 2, result.stderr.decode()
    job_id = shown[0].group(1)
    file = auth0_server.jobs[job_id].file
    assert file is not None
    assert {match.group(3) for match in shown} == {size(file.stat().st_size)}
    percents = [int(match.group(4)) for match in shown]
    users = [int(match.group(5).replace(",", "")) for match in shown]
    assert percents == sorted(percents) and len({p // 10 for p in percents}) == len(percents)
    assert users == sorted(users) and users[-1] <= SYNTHETIC
    assert lines(result.stderr)[-1] == f"ndpipe fetch: export job {job_id}: {SYNTHETIC} users"
    assert result.stdout == gzip.decompress(file.read_bytes())

    # With the default interval a run this short shows no download line; --quiet shows nothing.
    default = run_ndpipe("fetch", "--job", job_id, env=tenant_env(auth0_env))
    assert default.returncode == 0
    assert "downloading" not in default.stderr.decode()
    assert default.stdout == result.stdout
    quiet = run_ndpipe("fetch", "--job", job_id, "--quiet", env=tenant_env(auth0_env, **EVERY_STEP))
    assert quiet.returncode == 0
    assert quiet.stderr == b""
    assert quiet.stdout == result.stdout


def test_fetch_redraws_one_line_on_a_terminal(auth0_server: FakeAuth0, auth0_env: dict[str, str]):
    auth0_server.seed_synthetic(SYNTHETIC)
    code, stdout, terminal = with_tty_stderr(["fetch"], tenant_env(auth0_env))
    assert code == 0, terminal
    assert len(stdout.splitlines()) == SYNTHETIC
    download = next(line for line in terminal.split("\n") if "downloading" in line)
    draws = [draw.removesuffix("\x1b[K") for draw in download.split("\r") if draw]
    assert len(draws) >= 2  # the first state, then at least the final one
    assert draws[-1].endswith("(100%), 8,000 users")
    assert all(DOWNLOADING.fullmatch(draw) for draw in draws), draws
    assert terminal.endswith(f": {SYNTHETIC} users\n")


# --- import ----------------------------------------------------------------------------------


def users(count: int, name: str = "user") -> bytes:
    return ndjson([{"email": f"{name}{n}@example.com", "email_verified": True}
                   for n in range(count)])  # fmt: skip


def import_args(*args: str) -> list[str]:
    return ["import", "--connection", DEFAULT_CONNECTION, "--max-bytes", "2000", *args]


def test_import_shows_jobs_users_rate_and_time_left_for_a_file(
    auth0_server: FakeAuth0, auth0_env: dict[str, str], tmp_path: Path
) -> None:
    auth0_server.import_timeline = ["pending", "processing", "processing"]
    given = tmp_path / "users.ndjson"
    given.write_bytes(users(300))
    result = run_ndpipe(*import_args(str(given)), env=tenant_env(auth0_env, **EVERY_STEP))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
    progress = [IMPORTING.fullmatch(line) for line in lines(result.stderr)]
    shown = [match for match in progress if match]
    assert shown, result.stderr.decode()
    assert all(match.group(4) for match in shown)  # a regular file: an estimate, or "all read"
    assert lines(result.stderr)[-1].startswith("ndpipe import: 300 users read, 300 sent in ")

    # Piped input has no known size: no estimate. --quiet: no progress.
    piped = run_ndpipe(
        *import_args(), input=users(300, "piped"), env=tenant_env(auth0_env, **EVERY_STEP)
    )
    assert piped.returncode == 0, piped.stderr.decode()
    shown = [m for m in (IMPORTING.fullmatch(line) for line in lines(piped.stderr)) if m]
    assert shown and not any(match.group(4) for match in shown)
    done = [(int(m.group(1)), int(m.group(2))) for m in shown]
    assert all(ended <= sent for ended, sent in done)
    quiet = run_ndpipe(*import_args("--quiet"), input=users(30, "quiet"),
                       env=tenant_env(auth0_env, **EVERY_STEP))  # fmt: skip
    assert quiet.returncode == 0
    (summary,) = lines(quiet.stderr)  # the summary alone
    assert summary.startswith("ndpipe import: 30 users read, 30 sent in ")


def test_import_redraws_one_line_on_a_terminal(
    auth0_server: FakeAuth0, auth0_env: dict[str, str], tmp_path: Path
) -> None:
    given = tmp_path / "users.ndjson"
    given.write_bytes(users(100))
    quiet = tmp_path / "quiet.ndjson"
    quiet.write_bytes(users(10, "quiet"))
    with quiet.open("rb") as stdin:
        code, _, terminal = with_tty_stderr(import_args("--quiet"), tenant_env(auth0_env), stdin)
        assert code == 0, terminal
        assert "\r" not in terminal
    with given.open("rb") as stdin:  # stdin that is a regular file gives an estimate too
        code, stdout, terminal = with_tty_stderr(import_args(), tenant_env(auth0_env), stdin)
    assert code == 0, terminal
    assert stdout == b""
    redrawn = [line for line in terminal.split("\n") if "\r" in line]
    assert redrawn, terminal
    draws = [draw.removesuffix("\x1b[K") for line in redrawn for draw in line.split("\r") if draw]
    assert all(IMPORTING.fullmatch(draw) for draw in draws if "imported" in draw), draws
    assert IMPORTING.fullmatch(draws[-1]) and ", 100 users imported, " in draws[-1]


# --- sort ------------------------------------------------------------------------------------


def test_sort_says_when_it_spills_and_merges(tmp_path: Path) -> None:
    data = ndjson([{"n": (n * 7919) % 3000, "pad": "x" * 60} for n in range(3000)])
    in_memory = run_ndpipe("sort", "-k", "n", input=data)
    assert in_memory.returncode == 0
    assert in_memory.stderr == b""  # no spill, nothing to say
    spilled = run_ndpipe("sort", "-k", "n", "-S", "64K", "-T", str(tmp_path), input=data)
    assert spilled.returncode == 0, spilled.stderr
    assert spilled.stdout == in_memory.stdout
    first, merge = lines(spilled.stderr)
    assert re.fullmatch(
        rf"ndpipe sort: the input outgrew the 64 kB buffer \(--buffer-size\); writing sorted "
        rf"runs to {re.escape(str(tmp_path))}/ndpipe-sort-\w+", first
    ), first  # fmt: skip
    runs = int(re.fullmatch(r"ndpipe sort: merging (\d+) sorted runs", merge).group(1))  # type: ignore[union-attr]
    assert runs > 2
    quiet = run_ndpipe("sort", "-k", "n", "-S", "64K", "--quiet", input=data)
    assert quiet.returncode == 0
    assert quiet.stderr == b""
    assert quiet.stdout == in_memory.stdout
    assert list(tmp_path.iterdir()) == []  # the runs are gone


def test_a_bad_progress_interval_exits_2_before_any_request(auth0_server, auth0_env):
    env = tenant_env(auth0_env, NDPIPE_PROGRESS_INTERVAL="often")
    result = run_ndpipe("fetch", env=env)
    assert result.returncode == 2
    assert "NDPIPE_PROGRESS_INTERVAL must be seconds" in result.stderr.decode()
    assert auth0_server.log == []
