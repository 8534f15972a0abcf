"""Delivering events: what an answer means (:mod:`.verdict`), when to give up on the service
(:mod:`.breaker`), the journal's group commit (:mod:`.writer`), and the loop that ties them
(:mod:`.deliverer`)."""

from .breaker import Breaker
from .deliverer import Deliverer, Job, RetryPolicy
from .verdict import Kind, Verdict, judge
from .writer import JournalWriter

__all__ = [
    "Breaker",
    "Deliverer",
    "Job",
    "JournalWriter",
    "Kind",
    "RetryPolicy",
    "Verdict",
    "judge",
]
