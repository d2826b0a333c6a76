"""Delayed labels for a batch or a silence sweep: from scored rows and decided alerts to new
snapshot records (carried in the state values) and labelled examples. Pure and synchronous.

The records ride in each subscriber's state value (``features.extension``), so marking a
snapshot consumed is part of the batch commit: a replayed batch finds its events duplicate
and resolves nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from churnwatch.core.events import Event
from features.extension import frame
from features.store import BatchFeatures
from online_models.snapshots import (
    Book,
    LabelPolicy,
    Resolved,
    due_of,
    learnable,
    quantise,
    stored_values,
)

LABEL_TYPES = ("churn", "active")


@dataclass(frozen=True)
class SweepWrite:
    """A sweep's change to one subscriber's state value: replace ``old`` tail by ``new``."""

    subscriber_id: str
    old: bytes
    new: bytes


def resolve_batch(policy: LabelPolicy, events: Sequence[Event], staged: BatchFeatures,
                  marks: Mapping[tuple[str, str], bool]) -> Resolved:
    """Walk the batch's applied events in order; store the new records in ``staged.staged``
    (in place); return the examples, experiment outcomes and drops.

    A subscriber without label or alert in the batch whose clock stays below its record's
    due time (see :meth:`Book.due`) is skipped: nothing can change (most subscribers in most
    batches)."""
    out = Resolved()
    rows = staged.rows.tolist()
    if not rows:
        return out
    ready = learnable(staged.matrix, policy).tolist()
    by_sub: dict[str, list[int]] = {}
    latest: dict[str, int] = {}
    eventful = {sid for sid, _ in marks}
    eventful.update(staged.previous_attrs)  # snapshots' attributes are stored relative to these
    for j, i in enumerate(rows):
        ev = events[i]
        sid = ev.subscriber_id
        by_sub.setdefault(sid, []).append(j)
        if ev.ts > latest.get(sid, 0):
            latest[sid] = ev.ts
        if ev.type in LABEL_TYPES:
            eventful.add(sid)
    values = staged.staged
    records = values.extensions()
    changing = {sid: js for sid, js in by_sub.items()
                if not (records[sid] and sid not in eventful and
                        max(latest[sid], staged.clocks.get(sid, 0)) < due_of(records[sid]))}
    # only the learnable rows of those subscribers can become snapshots: quantise just them
    # (a fifth of a backlog batch's rows; quantising all of them took ~8 % of its time)
    needed = [j for js in changing.values() for j in js if ready[j]]
    at = dict(zip(needed, range(len(needed))))
    quantised = quantise(staged.matrix[needed]) if needed else None

    def row_values(j: int) -> list[int | None]:
        assert quantised is not None
        return stored_values(quantised[at[j]].tolist())

    for sid, js in changing.items():  # the others: nothing can change before their due time
        old = records[sid]
        after = staged.attrs[js[-1]]  # the attributes stored with the new value
        book = Book.decode(old, staged.previous_attrs.get(sid, after))
        book.clock = max(book.clock, staged.clocks.get(sid, 0))
        book.rows = row_values
        for j in js:
            _step(book, policy, events[rows[j]], j, ready[j], staged.attrs[j], marks, out)
        body = book.encode(policy, after)
        if body != old:
            values.replace_extension(sid, body)
    return out


def _step(book: Book, policy: LabelPolicy, ev: Event, j: int, ready: bool,
          attrs: dict[str, float], marks: Mapping[tuple[str, str], bool],
          out: Resolved) -> None:
    """One applied event of a subscriber, in order (``ready``: its row is learnable)."""
    sid = ev.subscriber_id
    book.advance(ev.ts, policy, sid, attrs, out)
    if ev.type in LABEL_TYPES:
        book.label(ev.type == "churn", ev.ts, policy, sid, attrs, out)
    elif ready:
        book.take(j, attrs, policy, out)
    held_out = marks.get((sid, ev.event_id))
    if held_out is not None:
        book.alerted(book.clock, held_out, policy, out)


def resolve_sweep(policy: LabelPolicy, snap: BatchFeatures, watermark: int,
                  marks: Mapping[tuple[str, str], bool], trigger_id: str,
                  ) -> tuple[Resolved, list[SweepWrite]]:
    """The silence sweep's checks at ``watermark``: survival, a snapshot of the quiet
    subscriber, and its alert; returns the tails to compare-and-set."""
    out = Resolved()
    writes: list[SweepWrite] = []
    quantised = quantise(snap.matrix)
    ready = learnable(snap.matrix, policy).tolist()
    for j, k in enumerate(snap.rows.tolist()):
        sid = snap.subscribers[k]
        _, old, attrs_raw = snap.staged.parts(sid)
        attrs = snap.attrs[j]
        book = Book.decode(old, attrs)
        book.advance(watermark, policy, sid, attrs, out)
        if ready[j]:
            book.take(stored_values(quantised[j].tolist()), attrs, policy, out)
        held_out = marks.get((sid, trigger_id))
        if held_out is not None:
            book.alerted(book.clock, held_out, policy, out)
        body = book.encode(policy, attrs)
        if body != old:
            writes.append(SweepWrite(sid, frame(old) + attrs_raw, frame(body) + attrs_raw))
    return out, writes

