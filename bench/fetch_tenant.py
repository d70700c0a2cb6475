"""Memory and time of `ndpipe fetch` from a tenant, on the loopback Auth0 server (tests/).

    python bench/fetch_tenant.py [--sizes 100000,1000000]

For each size the server holds that many generated users (made while the export file is written,
never stored) and `ndpipe fetch --connection Username-Password-Authentication` runs as a user
would: token, job, polling, a gzip download through the signed link, NDJSON to stdout. The run's
max RSS comes from wait4 in a small launcher (Linux carries a parent's peak RSS across fork and
exec, so the figure would otherwise be the benchmark's own). The wall time includes the server
writing the export file, which is counted separately.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0  # noqa: E402

LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stderr=open(os.devnull, "wb"))
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(count: int) -> dict[str, float]:
    with FakeAuth0() as server:
        server.export_timeline = []
        server.seed_synthetic(count)
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            AUTH0_DOMAIN=server.base_url,
            AUTH0_CLIENT_ID=server.client_id,
            AUTH0_CLIENT_SECRET=server.client_secret,
            NDPIPE_POLL_INTERVAL="0",
        )
        command = [sys.executable, "-m", "ndpipe", "fetch", "--connection", DEFAULT_CONNECTION]
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stdout is not None and process.stderr is not None
        lines = 0
        size = 0
        while chunk := process.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
        code = process.wait()
        wall = time.perf_counter() - started
        rss_kib = int(process.stderr.read().split()[-1])
        job = next(iter(server.jobs.values()))
        gz = job.file.stat().st_size if job.file else 0
    if code != 0 or lines != count:
        raise SystemExit(f"fetch of {count} users failed: exit {code}, {lines} lines")
    return {"users": count, "wall": wall, "rss_mib": rss_kib / 1024, "out_mb": size / 1e6,
            "gzip_mb": gz / 1e6}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    print("| users | output | gzip file | wall (server writing the file included) | max RSS |")
    print("|---:|---:|---:|---:|---:|")
    for count in sizes:
        row = measure(count)
        print(f"| {count:,} | {row['out_mb']:.0f} MB | {row['gzip_mb']:.1f} MB | "
              f"{row['wall']:.1f} s | {row['rss_mib']:.0f} MiB |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
