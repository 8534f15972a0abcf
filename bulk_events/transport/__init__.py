"""The network seam (:mod:`.base`), its HTTP implementations (:mod:`.http`) and an in-memory one
for tests (:mod:`.memory`)."""

from .base import MaybeSent, NotSent, Reply, Transport
from .http import ApiTransport, EventUrlTransport, Timeouts
from .memory import MemoryTransport

__all__ = [
    "ApiTransport",
    "EventUrlTransport",
    "MaybeSent",
    "MemoryTransport",
    "NotSent",
    "Reply",
    "Timeouts",
    "Transport",
]
