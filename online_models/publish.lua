-- Publish a model version: only the learner holding the lock, only on top of the head it
-- started from, never over an existing version. Optionally make it active (unless pinned).
-- The learner's dedup window is stored with the head (one copy, replaced), not in the version.
-- KEYS: lock, head, version, versions (hash), active, pinned, history, dedup window
-- ARGV: owner, expected head ("" = none), version id, checkpoint blob, metadata JSON,
--       "1" to make it active, dedup window blob
-- Returns 1 published, 0 lock lost, -1 head moved, -2 version exists.
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
local head = redis.call("GET", KEYS[2]) or ""
if head ~= ARGV[2] then
  return -1
end
if not redis.call("SET", KEYS[3], ARGV[4], "NX") then
  return -2
end
redis.call("HSET", KEYS[4], ARGV[3], ARGV[5])
redis.call("SET", KEYS[2], ARGV[3])
redis.call("SET", KEYS[8], ARGV[7])
if ARGV[6] == "1" and redis.call("EXISTS", KEYS[6]) == 0 then
  local active = redis.call("GET", KEYS[5])
  if active and active ~= ARGV[3] then
    redis.call("LPUSH", KEYS[7], active)
    redis.call("LTRIM", KEYS[7], 0, 99)
  end
  redis.call("SET", KEYS[5], ARGV[3])
end
return 1
