"""A local HTTP sink for the benchmarks: the same server for bulk-events and for the bare baselines.

Two modes, both bound to loopback and run as a separate process so the client under test has a
core of its own on a 2-core machine::

    python benchmarks/sink.py --mode minimal            # answers as fast as it can
    python benchmarks/sink.py --mode sandbox --latency 0.25 --rate-limit 10

``minimal`` is the cheapest server that still speaks the REST API's shape (an OAuth token, then
``POST /events/name/{name}`` answered with ``{"result": true}``), so the sink costs as little as
possible of the measurement. ``sandbox`` is bulk-events' own SendPulse imitation with its
sliding-window limit, plus a count of the 429 refusals it sent.

Both print ``listening on http://127.0.0.1:PORT`` and serve two extra routes for the runner:
``GET /__stats`` (events seen, refusals, wall-clock time of the first and last event) and
``POST /__reset``. They stop on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from aiohttp import web

from bulk_events.sandbox import max_in_window

try:  # the sink should be the cheaper side of the measurement: uvloop when it is installed
    import uvloop
except ImportError:  # pragma: no cover - optional
    uvloop = None  # type: ignore[assignment]

_TOKEN = b'{"access_token":"bench-token","token_type":"Bearer","expires_in":3600}'
_OK = b'{"result":true}'


class Stats:
    """What the runner reads after each run; wall-clock times compare across processes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.events = 0
        self.tokens = 0
        self.refused = 0  # 429 answers
        self.statuses: dict[int, int] = {}
        self.first_event_at: float | None = None
        self.last_event_at: float | None = None
        self.starts: list[float] = []  # monotonic start of each event request (for windows)

    def event(self) -> None:
        now = time.time()
        if self.first_event_at is None:
            self.first_event_at = now
        self.last_event_at = now
        self.events += 1
        self.starts.append(time.monotonic())

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "tokens": self.tokens,
            "refused": self.refused,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "first_event_at": self.first_event_at,
            "last_event_at": self.last_event_at,
            "max_in_window": max_in_window(self.starts),
        }


def _control_routes(app: web.Application, stats: Stats) -> None:
    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    async def reset(request: web.Request) -> web.Response:
        stats.reset()
        return web.json_response({"reset": True})

    app.router.add_get("/__stats", get_stats)
    app.router.add_post("/__reset", reset)


def minimal_app(stats: Stats) -> web.Application:
    """The cheapest server with the REST API's shape; it checks nothing."""

    async def token(request: web.Request) -> web.Response:
        await request.read()
        stats.tokens += 1
        return web.Response(body=_TOKEN, content_type="application/json")

    async def event(request: web.Request) -> web.Response:
        await request.read()
        stats.event()
        return web.Response(body=_OK, content_type="application/json")

    app = web.Application()
    app.router.add_post("/oauth/access_token", token)
    app.router.add_post("/events/name/{name}", event)
    _control_routes(app, stats)
    return app


def sandbox_app(
    stats: Stats, *, latency: float, rate_limit: int | None
) -> tuple[web.Application, Any]:
    """bulk-events' Sandbox, with a middleware that counts what it refused."""
    from bulk_events.sandbox import Sandbox

    sandbox = Sandbox(rate_limit=rate_limit, latency=latency, history=False)

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        is_event = request.path.startswith("/events/")
        if is_event:
            stats.event()
        elif request.path == "/oauth/access_token":
            stats.tokens += 1
        response = await handler(request)
        stats.statuses[response.status] = stats.statuses.get(response.status, 0) + 1
        if response.status == 429:
            stats.refused += 1
        return response

    sandbox.app.middlewares.append(count)
    _control_routes(sandbox.app, stats)
    return sandbox.app, sandbox


async def serve(args: argparse.Namespace) -> None:
    stats = Stats()
    if args.mode == "minimal":
        app = minimal_app(stats)
    else:
        app, _ = sandbox_app(stats, latency=args.latency, rate_limit=args.rate_limit)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # A safety net: a sink left behind by a crashed runner stops by itself.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.max_seconds)
    finally:
        await runner.cleanup()  # the sandbox's shutdown hook wakes its slow answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["minimal", "sandbox"], default="minimal")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="sandbox: seconds before answering"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=None, help="sandbox: requests per sliding second"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=1800.0, help="stop by itself after this long"
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="plain asyncio even if uvloop is installed"
    )
    args = parser.parse_args(argv)
    if uvloop is not None and not args.no_uvloop:
        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
