-- Replace the end of state values, only where it still is what the caller read.
-- KEYS[i]: a subscriber's state key; ARGV[2i-1], ARGV[2i]: the tail read, the tail to write.
-- The silence sweep uses it to update snapshot records (features.extension) without
-- overwriting a batch commit that raced it: a changed tail is left alone. Returns the count.
local n = 0
for i = 1, #KEYS do
  local value = redis.call("GET", KEYS[i])
  local old, new = ARGV[2 * i - 1], ARGV[2 * i]
  if value and #value >= #old and string.sub(value, #value - #old + 1) == old then
    redis.call("SET", KEYS[i], string.sub(value, 1, #value - #old) .. new, "KEEPTTL")
    n = n + 1
  end
end
return n
