"""Constant memory: max RSS must not grow with the input (STYLE.md: a large-input memory test).

The stateless verbs run chained in one process over about a million generated users; the
child's max RSS (from wait4) is bounded, and compared with a run ten times smaller.

Linux carries a process's peak RSS across fork and exec, so a child started straight from
pytest would report pytest's own peak. A small launcher process starts ndpipe instead and
reports the grandchild's figure on stderr.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import orjson

from tests.conftest import ROOT, environment

CHAIN = [
    "select", "Email Address=email", "First Name=given_name", "Name=user_metadata.name || name",
    "created_at", "logins_count", "user_metadata",
    "then", "filter", "logins_count >= `0`",
    "then", "map", "--set", "source=`\"auth0\"`", "--del", "user_metadata.preferences",
    "then", "escape-csv",
    "then", "csv",
]  # fmt: skip


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def user(number: int) -> dict:
    return {
        "user_id": f"auth0|{number:024x}",
        "email": f"user{number}@example.com",
        "email_verified": number % 3 == 0,
        "name": f"=User {number}",
        "given_name": "Zoë",
        "family_name": 'O\'Brien, "Jr"',
        "identities": [{"connection": "Username-Password-Authentication", "provider": "auth0"}],
        "app_metadata": {"plan": "premium", "roles": ["admin", "user"]},
        "user_metadata": {"name": f"User\n{number}", "preferences": {"newsletter": True}},
        "created_at": "2021-09-16T03:24:32.897Z",
        "logins_count": number % 97,
    }


def max_rss_kib(args: list[str], count: int) -> tuple[int, int]:
    """Run `ndpipe ARGS` over COUNT generated users; returns (max RSS in KiB, output bytes)."""
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "ndpipe", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        cwd=ROOT,
    )
    assert process.stdin is not None and process.stdout is not None

    def feed() -> None:
        block = b"".join(orjson.dumps(user(n)) + b"\n" for n in range(1000))
        for _ in range(count // 1000):
            process.stdin.write(block)  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed)
    writer.start()
    written = 0
    while chunk := process.stdout.read(1 << 20):
        written += len(chunk)
    writer.join()
    assert process.wait() == 0
    return int(process.stderr.read().split()[-1]), written  # type: ignore[union-attr]


def test_stateless_verbs_run_in_constant_memory():
    small_rss, small_out = max_rss_kib(CHAIN, 100_000)
    large_rss, large_out = max_rss_kib(CHAIN, 1_000_000)
    assert large_out > 9 * small_out  # the whole input went through
    assert large_rss < 100 * 1024, f"max RSS {large_rss} KiB on 1M users"
    assert large_rss - small_rss < 16 * 1024, f"RSS grew from {small_rss} to {large_rss} KiB"
