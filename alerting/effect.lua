-- churnwatch incrementality ledger (alerting/effect_store.py). Every key shares the {effect}
-- hash tag: one slot, so each call is atomic, also on a Redis Cluster.
-- KEYS: 1 open (zset alert id → alert time), 2 alerts (hash alert id → cmsgpack
--   {subscriber, time, {cell, ...}, outcome: -1 undecided, 0 churned, 1 retained}), 3 by subscriber (hash subscriber → "id,id,..."),
--   4 counts (hash "<cell>|c|n|k" → count), 5 done (zset alert id → time: settled alerts,
--   kept for 2 windows so a re-registration is ignored), 6 clock (highest event time seen).
-- register: ARGV[2] = cmsgpack {{alert id, subscriber, time, {cell, ...}}, ...}.
-- observe: ARGV[2] = cmsgpack {{subscriber, kind ("churn" or "active"), time}, ...};
--   ARGV[3] = the batch's highest event time, ARGV[4] = window ms, ARGV[5] = grace ms.
--   The first churn event in an open alert's window decides it as not retained, an `active`
--   renewal as retained (a churn after the window: retained); an alert is settled, and
--   counted, when its window has closed (clock − window − grace), as retained if nothing
--   decided it. Counting only closed windows keeps the rates unbiased: settling churners at
--   once would count a recent alert's churners before its stayers.
local open, alerts, bysub, counts, done, clock = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local mode = ARGV[1]
local items = cmsgpack.unpack(ARGV[2])

local function ids_of(sid)
  local raw = redis.call("HGET", bysub, sid)
  local out = {}
  if raw then
    for id in string.gmatch(raw, "[^,]+") do out[#out + 1] = id end
  end
  return out
end

local function settle(id)
  local raw = redis.call("HGET", alerts, id)
  if not raw then return 0 end
  local rec = cmsgpack.unpack(raw)
  local retained = rec[4] ~= 0
  for _, cell in ipairs(rec[3]) do
    redis.call("HINCRBY", counts, cell .. "|n", 1)
    if retained then redis.call("HINCRBY", counts, cell .. "|k", 1) end
  end
  redis.call("HDEL", alerts, id)
  redis.call("ZREM", open, id)
  redis.call("ZADD", done, rec[2], id)
  local rest = {}
  for _, other in ipairs(ids_of(rec[1])) do
    if other ~= id then rest[#rest + 1] = other end
  end
  if #rest > 0 then
    redis.call("HSET", bysub, rec[1], table.concat(rest, ","))
  else
    redis.call("HDEL", bysub, rec[1])
  end
  return 1
end

if mode == "register" then
  local n = 0
  for _, item in ipairs(items) do
    local id, sid, ts, cells = item[1], item[2], item[3], item[4]
    if redis.call("HEXISTS", alerts, id) == 0 and not redis.call("ZSCORE", done, id) then
      redis.call("HSET", alerts, id, cmsgpack.pack({sid, ts, cells, -1}))
      redis.call("ZADD", open, ts, id)
      local ids = ids_of(sid)
      ids[#ids + 1] = id
      redis.call("HSET", bysub, sid, table.concat(ids, ","))
      for _, cell in ipairs(cells) do redis.call("HINCRBY", counts, cell .. "|c", 1) end
      n = n + 1
    end
  end
  return n
end

local window, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
for _, item in ipairs(items) do
  local sid, kind, ts = item[1], item[2], item[3]
  for _, id in ipairs(ids_of(sid)) do
    local raw = redis.call("HGET", alerts, id)
    if raw then
      local rec = cmsgpack.unpack(raw)
      if rec[4] == -1 and rec[2] <= ts then  -- undecided, and the event is after the alert
        rec[4] = (kind == "active" or ts - rec[2] > window) and 1 or 0
        redis.call("HSET", alerts, id, cmsgpack.pack(rec))
      end
    end
  end
end
local settled = 0
local now = math.max(tonumber(redis.call("GET", clock) or "0"), tonumber(ARGV[3]))
redis.call("SET", clock, now)
for _, id in ipairs(redis.call("ZRANGEBYSCORE", open, "-inf", now - window - grace)) do
  settled = settled + settle(id)
end
redis.call("ZREMRANGEBYSCORE", done, "-inf", now - 2 * window - grace)
return settled
