"""One feed written the ways several producers write it: subscriber ids in other formats
of the same number, and late copies of events.

``churnwatch.core.events.normalise_subscriber`` makes ``+447954288876``,
``+44 7954 288876`` and ``00447954288876`` one subscriber (a number without ``+`` or ``00``,
such as ``447954288876``, keeps its digits only: another subscriber, no country is guessed).
"""

from __future__ import annotations

import random

import orjson

from churnwatch.core.events import decode_payload

FORMATS = 3


def variant(line: bytes, k: int) -> bytes:
    """The line with its subscriber id written in format ``k`` (0: ``+447954288876``,
    1: ``+44 7954 288876``, 2: ``00447954288876``); a valid event only: invalid records
    are dead-lettered by their payload, which must not change."""
    valid, rejected = decode_payload(line)
    if len(valid) != 1 or rejected or not valid[0].subscriber_id.startswith("+44"):
        return line
    doc = orjson.loads(line)
    digits = valid[0].subscriber_id[3:]
    doc["subscriber_id"] = (f"+44{digits}", f"+44 {digits[:4]} {digits[4:]}",
                            f"0044{digits}")[k % FORMATS]
    return orjson.dumps(doc)


def subscriber(line: bytes) -> str:
    """The normalised subscriber id of a valid event, else the line (sent alone)."""
    valid, rejected = decode_payload(line)
    return valid[0].subscriber_id if len(valid) == 1 and not rejected else line.hex()


def with_late(lines: list[bytes], rate: float, behind_ms: int, seed: int = 0) -> list[bytes]:
    """``lines`` with, after about ``rate`` of the valid events, a copy under a new event id
    ``behind_ms`` older: late if ``behind_ms`` exceeds the lateness (7 days by default)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for n, line in enumerate(lines):
        out.append(line)
        valid, rejected = decode_payload(line)
        if len(valid) == 1 and not rejected and rng.random() < rate:
            doc = orjson.loads(line)
            doc["event_id"] = f"late-{n}"
            doc["ts"] = valid[0].ts - behind_ms
            out.append(orjson.dumps(doc))
    return out
