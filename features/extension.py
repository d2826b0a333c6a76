"""An optional extension record carried inside a subscriber's state value.

A state value is the codec blob (``features.codec``), then the profile attributes (msgpack).
Other layers may keep a small record of their own for the subscriber *in the same value*, so
it is committed atomically with the features by the batch commit and costs no extra Redis key.
It sits between the codec blob and the attributes, framed as the byte ``0xC1`` (which msgpack
never uses, so an attribute map can never start with it), a varint length and the body::

    codec blob | [0xC1 varint(len) body] | attributes msgpack

Values written before extensions existed have no frame and read as an empty body.
"""

from __future__ import annotations

MARK = 0xC1


def split(tail: bytes) -> tuple[bytes, bytes]:
    """The part of a state value after the codec blob → (extension body, attributes)."""
    if not tail or tail[0] != MARK:
        return b"", tail
    size = shift = 0
    pos = 1
    while True:
        byte = tail[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return tail[pos:pos + size], tail[pos + size:]


def frame(body: bytes) -> bytes:
    """The framed extension to put after the codec blob (empty body: nothing)."""
    if not body:
        return b""
    out = bytearray([MARK])
    size = len(body)
    while size >= 0x80:
        out.append((size & 0x7F) | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + body


def attributes(tail: bytes) -> bytes:
    """The attributes msgpack of a tail, without any extension."""
    return split(tail)[1]
