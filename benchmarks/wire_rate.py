"""The pace at the wire: events per second as a sandbox in another process saw them arrive.

    python benchmarks/wire_rate.py [--rows 300] [--latency 0.1] [--rate 10] [--busy]

Starts ``python -m bulk_events.sandbox`` (refusing the 11th request in any second) and the
importer, each as its own process, and prints from the server's record of arrivals: the achieved
rate (events after the first / time from the first arrival to the last), the busiest second and
how many requests were refused. Target: at least 97% of the rate, 0 refused, busiest second <= rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bulk_events.sandbox import max_in_window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--busy", action="store_true", help="keep a core busy meanwhile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        arrivals = folder / "arrivals.jsonl"
        data = folder / "c.csv"
        with data.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["email"])
            writer.writerows([f"user{i}@example.com"] for i in range(args.rows))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_events.sandbox",
                "--rate-limit",
                "10",
                "--latency",
                str(args.latency),
                "--arrivals",
                str(arrivals),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        spinner = (
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
        )
        env = {
            **os.environ,
            "SENDPULSE_CLIENT_ID": "sandbox-client",
            "SENDPULSE_CLIENT_SECRET": "sandbox-secret",
        }
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bulk_events",
                    "import",
                    str(data),
                    "--event",
                    "bench",
                    "--api-url",
                    url,
                    "--rate",
                    str(args.rate),
                    "-q",
                    "--report",
                    str(folder / "r.csv"),
                    "--state",
                    str(folder / "s.sqlite"),
                ],
                env=env,
                check=False,
            )
        finally:
            if spinner is not None:
                spinner.kill()
            server.send_signal(signal.SIGTERM)
            server.wait()
        seen = [json.loads(line) for line in arrivals.read_text().splitlines()]
    events = sorted(a["at"] for a in seen if a["kind"] == "event")
    achieved = (len(events) - 1) / (events[-1] - events[0]) if len(events) > 1 else 0.0
    refused = sum(1 for a in seen if a["status"] == 429)
    busiest = max_in_window([a["at"] for a in seen])
    print(
        f"{len(events)} events at {args.latency * 1000:.0f} ms answers"
        f"{' (busy core)' if args.busy else ''}: {achieved:.2f} events/s "
        f"({achieved / args.rate:.1%} of {args.rate:g}), busiest second {busiest}, "
        f"{refused} refused"
    )
    return 0 if refused == 0 and busiest <= args.rate else 1


if __name__ == "__main__":
    sys.exit(main())
