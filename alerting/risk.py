"""Each subscriber's risk score over time: one point per event-time day (UTC), the latest
score of that day, under the subscriber's hash tag.

A history is one string per subscriber: the day of its last point (days since 1970-01-01
UTC, uint16: good to 2149), then its points, oldest first, 3 bytes each (uint24): the days
since the point before (10 bits; a gap of 1,024 days or more drops the points before it),
the score quantised to 1/4095 (12 bits) and the severity code (2 bits). Cut to the last
``cap`` points, 100 days cost about 300 bytes of Redis. A batch's points for a day the
history already ends with replace that last point (in place); points for earlier days (late
events) are ignored. A new day rewrites the string at its exact size (an ``APPEND`` would
leave Redis's greedy slack, up to twice the string). All points of a batch are written by
one script call queued on the batch's commit pipeline: no extra round trip (on a Redis
Cluster, one call per node, see ``churnwatch.infra.redis.script_router``). The key has no
expiry of its own (an EXPIRE per subscriber and batch was a quarter of the script's work):
the silence sweep deletes it with the rest of an idle subscriber, and a churn gives it the
state's TTL.

Earlier releases kept 7-byte points (event time in seconds as uint32, score × 10000 as
uint16, severity code) under another key (``Keys.legacy_risk``). A subscriber's first point
under the current layout converts that history (its day, its score to the new scale) and
deletes it; the sweep's removal and a churn's expiry cover the legacy key too, so a
subscriber who never scores again loses it with the rest of its keys.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import ScriptCalls, Write

_IN = struct.Struct("<HH")  # a point as the script takes it: day, score << 2 | severity
_HEAD = struct.Struct("<H")
_LEGACY = struct.Struct("<IHB")  # the 7-byte points of earlier releases
_SCALE = 4_095  # the score's 12 bits
_LAST_DAY = 65_535
_SEVERITY = ("", "low", "medium", "high")
_CODE = {name: code for code, name in enumerate(_SEVERITY)}
# KEYS: (history, legacy history) per subscriber; ARGV: cap, then each one's points (_IN)
_SCRIPT = """
local keep = tonumber(ARGV[1]) * 3
local function point(gap, qs) return struct.pack("<I3", gap * 16384 + qs) end
local function gap_of(p) return math.floor(struct.unpack("<I3", p) / 16384) end
local function history(last, body)
  if #body > keep then body = string.sub(body, -keep) end
  return struct.pack("<I2", last) .. body
end
local function convert(old)  -- 7-byte points (uint32 seconds, uint16 score x 10000, code)
  local out, last = {}, -1
  for pos = #old % 7 + 1, #old - 6, 7 do
    local ts, score, code = struct.unpack("<I4I2B", string.sub(old, pos, pos + 6))
    local d = math.floor(ts / 86400)
    if d > last then
      local gap = d - last
      if last < 0 or gap >= 1024 then out, gap = {}, 0 end
      out[#out + 1] = point(gap, math.floor(score * 4095 / 10000 + 0.5) * 4 + code)
      last = d
    end
  end
  if last < 0 then return "" end
  return history(last, table.concat(out))
end
for i = 1, #KEYS, 2 do
  local key, points = KEYS[i], ARGV[(i + 1) / 2 + 1]
  local value = redis.call("GET", key) or ""
  local was = value  -- nil once converted from a legacy history
  if #value < 2 then
    local old = redis.call("GET", KEYS[i + 1])
    if old then
      redis.call("DEL", KEYS[i + 1])
      value, was = convert(old), nil
    end
  end
  local stored = -1
  if #value >= 2 then stored = struct.unpack("<I2", value) end
  -- the points of days after the stored one (each day's last), and the stored day's last
  local days, scores, replace = {}, {}, nil
  local day = stored
  for pos = 1, #points, 4 do
    local d, qs = struct.unpack("<I2I2", points, pos)
    if d > day then
      days[#days + 1], scores[#days + 1], day = d, qs, d
    elseif d == day then
      if #days > 0 then scores[#days] = qs else replace = qs end
    end
  end
  local tail = nil  -- the stored day's last point, replaced
  if replace then
    local p = point(gap_of(string.sub(value, -3)), replace)
    if p ~= string.sub(value, -3) then tail = p end
  end
  if #days > 0 then
    local body = string.sub(value, 3)
    if tail then body = string.sub(body, 1, -4) .. tail end
    local last = stored
    for k = 1, #days do
      local gap = days[k] - last
      if last < 0 or gap >= 1024 then body, gap = "", 0 end
      body = body .. point(gap, scores[k])
      last = days[k]
    end
    redis.call("SET", key, history(last, body))
  elseif was == nil then  -- converted from the legacy history
    if tail then value = string.sub(value, 1, -4) .. tail end
    if #value > 0 then redis.call("SET", key, value) end
  elseif tail then  -- in place
    redis.call("SETRANGE", key, #value - 3, tail)
  end
end
return #KEYS / 2
"""


def pack(day: int, score: float, severity: str) -> bytes:
    """One point as the script takes it: the event-time day (days since 1970), score in
    [0, 1] (clamped), severity ("" for none)."""
    q = round(min(max(score, 0.0), 1.0) * _SCALE)
    return _IN.pack(min(max(day, 0), _LAST_DAY), q << 2 | _CODE[severity])


def packed(points: Mapping[str, Sequence[tuple[int, float, str]]]) -> list[bytes]:
    """Each subscriber's points (event time ms, score, severity) as :func:`pack` packs them,
    concatenated, in the order of ``points``. A measured hot path: one :func:`pack` call per
    point took about 5 ms of a 10,000-event batch, so all points are packed at once with
    numpy (:class:`RiskPoints` as they are held); inputs numpy would read differently (a missing score, a time or score that
    is not a plain number) take the per-point path, which fails as :func:`pack` does."""
    if isinstance(points, RiskPoints):
        return points.packed()
    series = list(points.values())
    flat = list(chain.from_iterable(series))
    if not flat:
        return [b"" for _ in series]
    ts_in, score_in, severity_in = zip(*flat)
    try:
        ts, score = np.array(ts_in), np.array(score_in)
    except (OverflowError, ValueError):
        ts = score = np.empty(0, np.str_)  # ragged or huge: the per-point path decides
    if ts.dtype != np.int64 or score.dtype.kind not in "fiub" or np.isnan(score).any():
        return [b"".join(pack(t // DAY_MS, s, sev) for t, s, sev in one) for one in series]
    codes = np.fromiter(map(_CODE.__getitem__, severity_in), np.uint16, len(flat))
    ends = np.cumsum(np.fromiter(map(len, series), np.int64, len(series)))
    return _packed_columns(ts, score.astype(np.float64), codes, ends)


def _packed_columns(ts: np.ndarray, score: np.ndarray, codes: np.ndarray, ends: np.ndarray
                    ) -> list[bytes]:
    """:func:`pack` of each point (int64 times, float scores, severity codes), cut where each
    subscriber's points end."""
    out = np.empty((len(ts), 2), "<u2")
    out[:, 0] = np.clip(ts // DAY_MS, 0, _LAST_DAY)
    out[:, 1] = np.rint(np.clip(score, 0.0, 1.0) * _SCALE).astype(np.uint16) << 2 | codes
    raw = out.tobytes()
    cuts = (ends * _IN.size).tolist()
    return [raw[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]


@dataclass(frozen=True, eq=False)  # equal as mappings are
class RiskPoints(Mapping[str, list[tuple[int, float, str]]]):
    """A batch's risk points, by subscriber, held as columns: subscriber ``i``'s points are
    rows ``ends[i - 1]:ends[i]`` of ``ts`` (event time, ms), ``scores`` and ``ranks``
    (indices into ``names``: severity names, "" for none). Read as a mapping: each
    subscriber's points as (event time, score, severity). A measured hot path:
    :meth:`RiskHistory.writes` packs the columns as they are, no object per point."""

    subscribers: list[str]
    ends: np.ndarray
    ts: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    names: tuple[str, ...]

    @cached_property
    def _at(self) -> dict[str, int]:
        return dict(zip(self.subscribers, range(len(self.subscribers))))

    def __getitem__(self, subscriber_id: str) -> list[tuple[int, float, str]]:
        i = self._at[subscriber_id]
        rows = slice(int(self.ends[i - 1]) if i else 0, int(self.ends[i]))
        return list(zip(self.ts[rows].tolist(), self.scores[rows].tolist(),
                        [self.names[r] for r in self.ranks[rows].tolist()]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.subscribers)

    def __len__(self) -> int:
        return len(self.subscribers)

    def packed(self) -> list[bytes]:
        """:func:`packed` of these points."""
        if np.isnan(self.scores).any():  # pack refuses a missing score: fail alike
            return packed(dict(self))
        codes = np.array([_CODE[name] for name in self.names], np.uint16)[self.ranks]
        return _packed_columns(self.ts, self.scores.astype(np.float64), codes, self.ends)


def unpack(raw: bytes) -> list[dict[str, Any]]:
    """A stored history → its points, oldest first: ``ts`` the day's first millisecond (UTC),
    ``score`` to 3 decimals, ``severity`` (None for none)."""
    if len(raw) < _HEAD.size + 3:
        return []
    (day,) = _HEAD.unpack_from(raw)
    body = raw[_HEAD.size:]
    out = []
    for at in range(len(body) - 3, len(body) % 3 - 1, -3):
        v = int.from_bytes(body[at:at + 3], "little")
        out.append({"ts": day * DAY_MS, "score": round((v >> 2 & _SCALE) / _SCALE, 3),
                    "severity": _SEVERITY[v & 3] or None})
        day -= v >> 14
    out.reverse()
    return out


def unpack_legacy(raw: bytes) -> list[dict[str, Any]]:
    """A history of 7-byte points → its points as :func:`unpack` gives them (the day; the
    score to 4 decimals)."""
    return [{"ts": ts // 86_400 * DAY_MS, "score": score / 10_000,
             "severity": _SEVERITY[sev] or None}
            for ts, score, sev in _LEGACY.iter_unpack(raw[len(raw) % _LEGACY.size:])]


class RiskHistory:
    """Records and reads subscribers' daily risk points: (event time ms, score, severity)."""

    def __init__(self, redis: Any, keys: Keys = Keys(), cap: int = 100) -> None:
        self.redis = redis
        self.keys = keys
        self.cap = cap
        self._script = redis.register_script(_SCRIPT)
        self.router = ScriptRouter(redis)

    async def writes(self, points: Mapping[str, Sequence[tuple[int, float, str]]]
                     ) -> list[Write]:
        """Each subscriber's points (event time ms, score, severity or ""); a point for a day
        before the previous one is ignored."""
        if not points or not self.cap:
            return []
        sids = list(points)
        keys = [self.keys.risk(sid) for sid in sids]
        series = packed(points)
        calls = tuple((node, [k for i in group
                              for k in (keys[i], self.keys.legacy_risk(sids[i]))],
                       [self.cap, *(series[i] for i in group)])
                      for node, group in await self.router.split(keys))
        return [ScriptCalls(self.router, self._script, calls)]

    async def read(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The subscriber's points, oldest first (:func:`unpack`). A history still in the legacy
        layout (no point since the upgrade) is read from it."""
        raw = await self.redis.get(self.keys.risk(subscriber_id))
        if raw is None:
            legacy = await self.redis.get(self.keys.legacy_risk(subscriber_id))
            return unpack_legacy(legacy or b"")
        return unpack(raw)
