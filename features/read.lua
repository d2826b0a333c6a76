-- churnwatch feature store read: the state blobs and cooldown entries of a batch's subscribers.
--
-- KEYS[2i-1], KEYS[2i]: state key (a binary blob, see features/codec.py) and alert-ledger hash
-- of the i-th subscriber. Read only. Returns {blobs, ledgers}: blobs is n little-endian uint32
-- lengths (0: no state) followed by the blobs themselves; ledgers lists, for each subscriber
-- with cooldown entries (fields "r:<rule>"), i and {rule, "ts|rank|event_id", ...}.
-- One string and a short list keep the client's reply parsing off the hot path.
local n = #KEYS / 2
local sizes, blobs, ledgers = {}, {}, {}
for i = 1, n do
  local blob = redis.call("GET", KEYS[2 * i - 1])
  if blob then
    blobs[#blobs + 1] = blob
    sizes[i] = struct.pack("<I4", #blob)
  else
    sizes[i] = struct.pack("<I4", 0)
  end
  local fields = redis.call("HGETALL", KEYS[2 * i])
  local entries = {}
  for k = 1, #fields, 2 do
    if string.sub(fields[k], 1, 2) == "r:" then
      entries[#entries + 1] = string.sub(fields[k], 3)
      entries[#entries + 1] = fields[k + 1]
    end
  end
  if #entries > 0 then
    ledgers[#ledgers + 1] = i
    ledgers[#ledgers + 1] = entries
  end
end
return {table.concat(sizes) .. table.concat(blobs), ledgers}
