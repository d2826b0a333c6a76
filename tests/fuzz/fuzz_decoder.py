"""atheris (libFuzzer) fuzzing of the event decoder: no input may raise, every rejection has a
reason, and every accepted event respects the contract.

    python tests/fuzz/fuzz_decoder.py -runs=200000          # bounded run
    python tests/fuzz/fuzz_decoder.py -max_total_time=600   # ten minutes

tests/test_fuzz_atheris.py runs it briefly in the default test run.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from churnwatch.core.errors import EventError
    from churnwatch.core.events import (
        EVENT_TYPES,
        MAX_TS_MS,
        MIN_TS_MS,
        decode_payload,
        normalise_subscriber,
    )


def check(data: bytes) -> None:
    events, rejected = decode_payload(data)
    for ev in events:
        assert ev.type in EVENT_TYPES and MIN_TS_MS <= ev.ts < MAX_TS_MS, ev
        assert ev.event_id and ev.subscriber_id and ev.subscriber_id.strip() == ev.subscriber_id
    for rej in rejected:
        assert isinstance(rej.reason, str) and rej.reason, rej
    text = data.decode("utf-8", "replace")
    try:
        normalise_subscriber(text)
    except EventError as exc:
        assert exc.reason


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
