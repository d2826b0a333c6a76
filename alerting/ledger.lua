-- churnwatch batch commit and delivery marks.
--
-- commit: KEYS[1..n] = state keys of the n subscribers with a new state, KEYS[n+i] = ledger
--   hash of the i-th subscriber with decisions; ARGV[2] = cmsgpack array, per such subscriber,
--   of {{rule, "ts|rank|event_id", ...}, {event_id, alert_json, ...}}: cooldown entries to set
--   and alerts decided in this batch (kept as pending until delivered); ARGV[3] = TTL seconds
--   of the ledger; ARGV[4] = n little-endian uint32 blob lengths, then the n state blobs
--   (on a single Redis n is 0: alerting/ledger.py sends the states by MSET in the same
--   MULTI/EXEC, which costs redis-server half the time of a Lua string per value).
--   Stores every new state and records every decision in one atomic step. ARGV[5] = "mset":
--   states are written by MSET, 200 at a time (a SET ... EX per key costs 2-4x more; a
--   cluster refuses MSET across slots, so there each key is its own MSET). States carry no
--   expiry: the silence sweep removes idle subscribers (streams/pipeline.py).
-- mark: KEYS[2i-1], KEYS[2i] = ledger hash and recent-alerts list of delivered alert i;
--   ARGV[2] = cmsgpack array of {event_id, alert_json}; ARGV[3] = TTL, ARGV[4] = list length.
local mode = ARGV[1]
local items = cmsgpack.unpack(ARGV[2])
local ttl = tonumber(ARGV[3])

if mode == "commit" then
  local states = ARGV[4]
  local n = #KEYS - #items
  local pos = 4 * n + 1
  local batch = ARGV[5] == "mset" and 400 or 2  -- a cluster refuses MSET across slots
  local args = {}
  for i = 1, n do
    local size = struct.unpack("<I4", states, 4 * i - 3)
    args[#args + 1] = KEYS[i]
    args[#args + 1] = string.sub(states, pos, pos + size - 1)
    pos = pos + size
    if #args >= batch then
      redis.call("MSET", unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call("MSET", unpack(args)) end
  for i, item in ipairs(items) do
    local ledger = KEYS[n + i]
    local entries, pending = item[1], item[2]
    for k = 1, #entries, 2 do
      redis.call("HSET", ledger, "r:" .. entries[k], entries[k + 1])
    end
    for k = 1, #pending, 2 do
      redis.call("HSET", ledger, "p:" .. pending[k], pending[k + 1])
    end
    if #entries > 0 or #pending > 0 then
      redis.call("EXPIRE", ledger, ttl)
    end
  end
  return n + #items
end

local keep = tonumber(ARGV[4])
for i, item in ipairs(items) do
  local ledger, list = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call("HDEL", ledger, "p:" .. item[1]) == 1 then
    redis.call("LPUSH", list, item[2])
    redis.call("LTRIM", list, 0, keep - 1)
    redis.call("EXPIRE", list, ttl)
  end
end
return #items
