-- churnwatch batch commit and delivery marks.
--
-- commit: KEYS[3i-2], KEYS[3i-1], KEYS[3i] = staging key, state key, ledger hash of the i-th
--   subscriber of the batch; ARGV[2] = cmsgpack array, per subscriber, of
--   {{rule, "ts|rank|event_id", ...}, {event_id, alert_json, ...}}: cooldown entries to set and
--   alerts decided in this batch (kept as pending until delivered); ARGV[3] = TTL seconds.
--   Promotes every staged state and records every decision in one atomic step.
-- mark: KEYS[2i-1], KEYS[2i] = ledger hash and recent-alerts list of delivered alert i;
--   ARGV[2] = cmsgpack array of {event_id, alert_json}; ARGV[3] = TTL, ARGV[4] = list length.
local mode = ARGV[1]
local items = cmsgpack.unpack(ARGV[2])
local ttl = tonumber(ARGV[3])

if mode == "commit" then
  for i, item in ipairs(items) do
    local stage, state, ledger = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    if redis.call("EXISTS", stage) == 1 then
      redis.call("RENAME", stage, state)
    end
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
  return #items
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
