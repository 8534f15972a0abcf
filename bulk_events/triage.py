"""Before sending: validate a chunk, key its bodies, and decide each row's fate from what the file
and the journal say: invalid, duplicate, already sent, unanswered before, not selected, or a Job.

Everything here is CPU- or disk-bound, so the pipeline runs :class:`Triage` in a worker thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd

from .checker import Checked, ChunkChecker, SentAs
from .columns import Chosen
from .delivery.deliverer import Job
from .journal import Entry, Journal, State
from .keys import changed_columns, contacts_of, digests
from .layout import Layout
from .options import Selection
from .outcome import Outcome, SkipReason, Status
from .outcome import valid as valid_outcome
from .payload import Body, placed, spread, with_body
from .reader import HIDDEN_ROWS
from .schema import RowValidator
from .seen import SeenKeys


@dataclass
class Prepared:
    """One chunk, validated and keyed."""

    frame: pd.DataFrame  # the original cells, for the report
    rows: list[int]
    bodies: Sequence[Body | None]  # decoded when asked for if packed (see PackedBodies)
    errors: dict[int, list[str]]
    positions: list[int] = field(default_factory=list)  # indexes of rows with a body
    keys: list[bytes] = field(default_factory=list)  # per position
    firsts: list[int | None] = field(default_factory=list)  # per position: earlier identical row
    entries: dict[bytes, Entry] = field(default_factory=dict)  # what the journal knows
    events: list[str | None] = field(default_factory=list)  # per position: the row's own event
    contacts: list[bytes | None] = field(default_factory=list)  # per position
    history: dict[bytes, tuple[bytes, bytes, str]] = field(default_factory=dict)  # by contact
    admitted: set[bytes] = field(default_factory=set)  # keys an earlier run decided to send
    fates: list[tuple[int, Outcome | Job]] = field(default_factory=list)
    sent_as: Sequence[SentAs | None] = field(default_factory=list)  # what goes out, per row
    # Rows that go out not quite as the file has them (a bad phone left out), by index: the
    # warning their outcome carries.
    warnings: dict[int, str] = field(default_factory=dict)


class Triage:
    """Validates, keys and classifies chunk after chunk of one file (one instance per run)."""

    def __init__(
        self,
        layout: Layout,
        validator: RowValidator,
        *,
        identity: str,
        selection: Selection,
        journal: Journal,
        chosen: Chosen | None = None,
        identity_of: Callable[[str], str] | None = None,
        run_id: int = 0,
        on_new_event: Callable[[str], None] | None = None,
        sent_event: str | None = None,
        dry_run: bool = False,
    ) -> None:
        self.layout = layout
        # A dry run sends nothing: a row that would go out is decided ``valid`` here at once.
        self.dry_run = dry_run
        self.selection = selection
        self.journal = journal
        self.chosen = chosen or Chosen(layout)
        # The part that depends on each chunk alone (see CheckPool: it may run elsewhere).
        self.checker = ChunkChecker(
            layout,
            validator,
            identity=identity,
            chosen=self.chosen,
            identity_of=identity_of,
            sent_event=sent_event,
        )
        self.run_id = run_id
        self.on_new_event = on_new_event
        self.seen = SeenKeys()
        self.national_phones = 0  # phones that look national and go out as written
        self.per_event: Counter[str] = Counter()  # rows with a body, by their event
        self.without_automation_id = 0  # rows to send with no automation_id

    def close(self) -> None:
        self.seen.close()

    def prepare(self, chunk: pd.DataFrame) -> Prepared:
        """Check and key one chunk, then decide each row's fate (:meth:`decide`)."""
        return self.decide(chunk, self.checker.check(chunk))

    def decide(self, chunk: pd.DataFrame, checked: Checked) -> Prepared:
        """The ordered part of a chunk's triage, after :meth:`ChunkChecker.check` (which may
        have run in another process): in-file duplicates, the journal, each row's fate."""
        hidden = [int(r) for r in chunk.attrs.get(HIDDEN_ROWS, ())]
        frame = chunk if checked.blank is None else chunk[~checked.blank]
        bodies = checked.bodies
        self.national_phones += checked.national_phones
        prepared = Prepared(frame, frame.index.tolist(), bodies, checked.errors)
        prepared.warnings = checked.warnings
        prepared.sent_as = checked.sent_as
        if checked.names is not None and self.on_new_event is not None:
            for name in checked.counted:
                if name not in self.per_event:
                    self.on_new_event(name)
                self.per_event[name] += 1
        elif checked.names is not None:
            self.per_event.update(checked.counted)
        events = checked.names if checked.names is not None else [None] * len(bodies)
        prepared.positions = with_body(bodies)
        prepared.events = [events[i] for i in prepared.positions]
        if prepared.positions:
            self._identify(prepared, checked.keys, checked.contacts)
        prepared.fates = list(self._classify(prepared))
        valid = Status.VALID
        missing = checked.without_automation_id
        if missing:
            self.without_automation_id += sum(
                1
                for i, f in prepared.fates
                if i in missing and (isinstance(f, Job) or f.status is valid)
            )
        if not self.journal.readonly:
            # Who each event goes to, recorded before it is sent: a later run then knows the
            # contact already received this event, and with which cells.
            self.journal.remember_contacts(
                [
                    (job.key, contact, digests(job.body))
                    for job, contact in self._jobs_with_contacts(prepared)
                ]
            )
        if hidden:
            _add_hidden(prepared, hidden)
        return prepared

    def _jobs_with_contacts(self, prepared: Prepared) -> Iterator[tuple[Job, bytes]]:
        """Each job that has a contact, with that contact."""
        where = {i: j for j, i in enumerate(prepared.positions)}
        for i, fate in prepared.fates:
            if isinstance(fate, Job):
                contact = prepared.contacts[where[i]] if prepared.contacts else None
                if contact is not None:
                    yield fate, contact

    def _identify(
        self, prepared: Prepared, base: list[bytes] | None, contacts: list[bytes | None] | None
    ) -> None:
        """Find in-file duplicates and what earlier runs did with each key (``base``: every
        body's key, from the checker; ``contacts``: every body's contact)."""
        rows = [prepared.rows[i] for i in prepared.positions]
        bodies = _Present(prepared)
        checker = self.checker
        identities = checker.identities(prepared.events)
        if base is None:
            base = checker.keys(identities, bodies.all())
        firsts = self.seen.first_rows(base, rows)
        keys = list(base)
        if self.selection.allow_duplicates:
            # The n-th identical body in a file gets occurrence number n in its key, so each
            # occurrence is sent once, and re-sorting the file does not change which are sent.
            occurrence = 1
            todo = [j for j, f in enumerate(firsts) if f is not None]
            while todo:
                candidates = checker.keys(
                    [identities[j] for j in todo], [bodies.at(j) for j in todo], occurrence
                )
                claimed = self.seen.first_rows(candidates, [rows[j] for j in todo])
                for j, key in zip(todo, candidates, strict=True):
                    keys[j] = key
                todo = [j for j, f in zip(todo, claimed, strict=True) if f is not None]
                occurrence += 1
        prepared.keys = keys
        prepared.firsts = firsts
        prepared.entries = self.journal.lookup(keys)
        if not self.chosen.key:
            # Without --key the body is the event, so a changed row of a contact is a new one:
            # what the journal knows about each contact lets such rows be held back.
            if contacts is None:
                contacts = contacts_of(identities, bodies.all())
            prepared.contacts = contacts
            # Only a row the journal has no entry for is decided by its contact's history (see
            # _decide): a rerun of rows already sent looks up nothing more.
            entries = prepared.entries
            new = [j for j, k in enumerate(keys) if k not in entries] if entries else None
            known = [
                c
                for c in (contacts if new is None else [contacts[j] for j in new])
                if c is not None
            ]
            if known:
                prepared.history = self.journal.contact_history(known, run_id=self.run_id)
                if prepared.history:
                    prepared.admitted = self.journal.known_contacts(
                        keys if new is None else [keys[j] for j in new]
                    )

    def classify(self, prepared: Prepared) -> Iterator[tuple[int, Outcome | Job]]:
        """Each row's fate by its index in the chunk: an outcome already, or a Job to send."""
        return iter(prepared.fates)

    def _classify(self, prepared: Prepared) -> Iterator[tuple[int, Outcome | Job]]:
        positions = prepared.positions
        if len(positions) < len(prepared.rows):
            has = set(positions)
            for i, row in enumerate(prepared.rows):
                if i not in has:
                    reasons = prepared.errors.get(row, ["invalid"])
                    yield i, Outcome(row, Status.INVALID, "; ".join(reasons))
        s = self.selection
        rows, bodies, keys, events = prepared.rows, prepared.bodies, prepared.keys, prepared.events
        # Most rows are new events: no earlier identical row, nothing in the journal, no
        # contact history, no --only-failed. Those become Jobs at once; the rest are decided.
        plain = not s.only_failed and not prepared.history
        entries, firsts = prepared.entries, prepared.firsts
        unique = s.allow_duplicates
        dry = self.dry_run
        for j, i in enumerate(positions):
            key = keys[j]
            if plain and (unique or firsts[j] is None) and key not in entries:
                if dry:
                    yield i, valid_outcome(rows[i])
                else:
                    body = bodies[i]
                    assert body is not None
                    yield i, Job(rows[i], key, body, events[j])
            else:
                yield i, self._decide(rows[i], key, i, prepared, j)

    def _decide(
        self, row: int, key: bytes, i: int, prepared: Prepared, j: int
    ) -> Outcome | Job:
        """The fate of row ``row`` (index ``i`` in the chunk, ``j`` among its bodies)."""
        s = self.selection
        first = prepared.firsts[j]
        if first is not None and not s.allow_duplicates:
            return Outcome(
                row,
                Status.SKIPPED,
                f"duplicate of row {first} (same event); --allow-duplicates sends both",
                reason=SkipReason.DUPLICATE,
            )
        entry = prepared.entries.get(key)
        state = entry.state if entry is not None else None
        if entry is not None and state is State.SENT:
            return Outcome(
                row,
                Status.SKIPPED,
                f"already sent at {entry.sent_at} (row {entry.row} then)",
                entry.http_status,
                entry.attempts,
                entry.sent_at,
                reason=SkipReason.ALREADY_SENT,
            )
        if entry is not None and state in (State.UNKNOWN, State.INFLIGHT) and not s.retry_unknown:
            return Outcome(
                row,
                Status.UNKNOWN,
                "sent by an earlier run with no answer: the service may have taken it; "
                "not resent without --retry-unknown",
                entry.http_status,
                entry.attempts,
                reason=SkipReason.UNANSWERED_BEFORE,
            )
        contact = prepared.contacts[j] if prepared.contacts else None
        earlier = prepared.history.get(contact) if contact is not None else None
        if earlier is not None and entry is None and key not in prepared.admitted:
            _, before, sent_at = earlier
            body = prepared.bodies[i]
            assert body is not None
            # An identical body under a new key is a repeat (--allow-duplicates), not a change.
            changed = changed_columns(before, body)
            if changed and not s.resend_changed:
                return Outcome(
                    row,
                    Status.SKIPPED,
                    f"contact already received this event on {sent_at[:10]}; changed: "
                    f"{', '.join(changed)}; pass --key COLUMN to say what makes an event new "
                    "(--key email: once per contact), or --resend-changed to send it",
                    reason=SkipReason.CHANGED_CONTACT,
                )
        if s.only_failed and state not in (State.FAILED, State.UNKNOWN):
            return Outcome(
                row,
                Status.SKIPPED,
                "not selected: --only-failed sends only rows that failed before",
                reason=SkipReason.NOT_SELECTED,
            )
        if self.dry_run:
            return Outcome(row, Status.VALID)
        body = prepared.bodies[i]
        assert body is not None
        return Job(row=row, key=key, body=body, event=prepared.events[j])


class _Present:
    """The bodies of a chunk's rows that have one, by their position among them: decoded only
    if asked for (see PackedBodies)."""

    def __init__(self, prepared: Prepared) -> None:
        self._bodies, self._positions = prepared.bodies, prepared.positions

    def at(self, j: int) -> Body:
        body = self._bodies[self._positions[j]]
        assert body is not None
        return body

    def all(self) -> list[Body]:
        return [self.at(j) for j in range(len(self._positions))]


HIDDEN_IN_SHEET = "hidden in the sheet; --hidden include sends it"


def _add_hidden(prepared: Prepared, hidden: list[int]) -> None:
    """Put the rows ``--hidden skip`` left out back in their places, each ``skipped``: no row is
    lost without a word. Their cells were not read, so the report shows them empty."""
    blank = pd.DataFrame("", index=pd.Index(hidden), columns=prepared.frame.columns, dtype=object)
    frame = pd.concat([prepared.frame, blank]).sort_index(kind="stable")
    rows = frame.index.tolist()
    at = {row: i for i, row in enumerate(rows)}
    moved = [at[row] for row in prepared.rows]  # old index -> new index
    bodies = spread(prepared.bodies, moved, len(rows))
    prepared.sent_as = placed(prepared.sent_as, moved, len(rows))
    prepared.fates = [(moved[i], fate) for i, fate in prepared.fates] + [
        (at[row], Outcome(row, Status.SKIPPED, HIDDEN_IN_SHEET, reason=SkipReason.HIDDEN))
        for row in hidden
    ]
    prepared.positions = [moved[i] for i in prepared.positions]
    prepared.warnings = {moved[i]: text for i, text in prepared.warnings.items()}
    prepared.frame, prepared.rows, prepared.bodies = frame, rows, bodies
