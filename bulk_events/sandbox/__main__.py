"""``python -m bulk_events.sandbox``: the sandbox as a process, until SIGTERM or SIGINT.

Used by tests that kill the importer or measure the rate at a server in another process; see
:mod:`bulk_events.sandbox` for what it records.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from bulk_events.sandbox import Sandbox


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bulk_events.sandbox",
        description="Run a local SendPulse imitation until SIGTERM/SIGINT.",
        epilog="example: python -m bulk_events.sandbox --port 0 --record arrived.jsonl --rate-limit 10",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--record", help="append each accepted event to this JSONL file")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per second")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument(
        "--token-ttl", type=float, default=3600.0, help="seconds a token lives (e.g. 5)"
    )
    parser.add_argument("--api-key", default="sandbox-api-key", help="the API key it accepts")
    parser.add_argument(
        "--quota", type=int, default=None, help="events taken per --quota-window, then 429"
    )
    parser.add_argument(
        "--quota-window",
        type=float,
        default=86400.0,
        help="seconds (default: a day); SIGUSR1 refills the quota at once",
    )
    parser.add_argument(
        "--arrivals", help="append each request's arrival time and answer to this JSONL file"
    )
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument(
        "--misbehave",
        action="append",
        default=[],
        metavar="KIND[:TIMES]",
        help="e.g. drop-after:3 or 500 (repeatable)",
    )
    parser.add_argument("--delay", type=float, default=5.0, help="delay of the slow kinds")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    sandbox = Sandbox(
        client_id=args.client_id,
        client_secret=args.client_secret,
        api_key=args.api_key,
        quota=args.quota,
        quota_window=args.quota_window,
        arrivals=args.arrivals,
        token_ttl=args.token_ttl,
        rate_limit=args.rate_limit,
        latency=args.latency,
        record=args.record,
        history=False,
    )
    for spec in args.misbehave:
        kind, _, times = spec.partition(":")
        sandbox.misbehave(kind, times=int(times or 1), delay=args.delay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sandbox.refill_quota)  # "a new day"
    url = await sandbox.start(args.host, args.port)
    print(f"listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bulk_events.sandbox``."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # a bad --misbehave kind
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, or the address is not ours
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
