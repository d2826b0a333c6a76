-- churnwatch feature store: stage a micro-batch of events and return per-event features.
--
-- KEYS[3i-2], KEYS[3i-1], KEYS[3i]: state key (a cmsgpack blob), staging key and alert-ledger
-- hash of the i-th distinct subscriber in the batch. The new state is written to the staging
-- key only; alerting/ledger.lua's commit promotes it atomically with the batch's alert
-- decisions, so a crash in between loses nothing (the replayed batch starts from the state).
-- ARGV[1]  cmsgpack array of events {key_index, event_id, type, ts, day, month, a, b}
--          spend: a = cents | complaint: a = category 0..3 | usage: a, b = data, voice (milli)
--          plan_change: a = fee cents | profile: a = tenure months (-1 none), b = attrs map
-- ARGV[2]  allowed lateness in ms     ARGV[3]  key TTL in seconds
-- ARGV[4]  read-only "now" {day, month} override as "day:month", or "" (apply mode)
--
-- Returns {statuses, features, attrs, ledgers, pending}: statuses has one char per event
-- (A applied, D duplicate, L late), or in read mode one per subscriber (A known, - unknown);
-- features is a matrix of little-endian float64, one row of 27 values per applied event (or
-- per known subscriber in read mode); attrs[i] is "ts|msgpack" of subscriber i's attributes before the
-- batch; ledgers[i] its cooldown entries {rule, "ts|rank|event_id", ...}; pending holds the
-- undelivered alerts (JSON) of duplicate events, to be sent again.
--
-- State layout (one cmsgpack map, flat arrays so a visit allocates a handful of tables):
--   d = {day, logins, data_milli, voice_milli, ...}   activity days within 35 days
--   s = {day, spends, cents, ...}                      spend days within 30 days
--   c = {day, category, ...}                           complaints within 30 days
--   m = {month, cents, ...}                            spend months, current and 5 before
--   e = {event_id, ts, ...}                            ids seen within the allowed lateness
--   scalars: mx/mm clock (ts, month), fd first day, ls/ll/lc/lu last spend/login/complaint/
--   usage day, t1/f1 t0/f0 latest two plan changes, at/a/ten/tm latest profile.

local LOGIN, SPEND, COMPLAINT, USAGE, PLAN, PROFILE = 1, 0, 2, 3, 4, 5
local events = cmsgpack.unpack(ARGV[1])
local lateness = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local floor = math.floor

local states = {}
local attrs_out = {}
local ledgers = {}
local nsubs = #KEYS / 3
for i = 1, nsubs do
  local blob = redis.call("GET", KEYS[3 * i - 2])
  local st
  if blob then
    st = cmsgpack.unpack(blob)
  else
    st = {d = {}, s = {}, c = {}, m = {}, e = {}, a = {}}
  end
  states[i] = st
  attrs_out[i] = (st.at or -1) .. "|" .. cmsgpack.pack(st.a)
  local entries = {}
  local fields = redis.call("HGETALL", KEYS[3 * i])
  for k = 1, #fields, 2 do
    if string.sub(fields[k], 1, 2) == "r:" then
      entries[#entries + 1] = string.sub(fields[k], 3)
      entries[#entries + 1] = fields[k + 1]
    end
  end
  ledgers[i] = entries
end

local NAN = 0 / 0

local function since(nowday, day)
  if day then return nowday - day end
  return NAN
end

-- add `values` to the entry of `key` in flat array `arr` with `width` slots per entry
local function bump(arr, width, key, a, b, c)
  local n = #arr
  for j = 1, n, width do
    if arr[j] == key then
      arr[j + 1] = arr[j + 1] + a
      if width > 2 then arr[j + 2] = arr[j + 2] + b end
      if width > 3 then arr[j + 3] = arr[j + 3] + c end
      return
    end
  end
  arr[n + 1] = key
  arr[n + 2] = a
  if width > 2 then arr[n + 3] = b end
  if width > 3 then arr[n + 4] = c end
end

-- keep only entries whose key is >= cutoff (the same table when nothing is old)
local function prune(arr, width, cutoff)
  local stale = false
  for j = 1, #arr, width do
    if arr[j] < cutoff then stale = true; break end
  end
  if not stale then return arr end
  local out, n = {}, 0
  for j = 1, #arr, width do
    if arr[j] >= cutoff then
      for w = 0, width - 1 do out[n + 1 + w] = arr[j + w] end
      n = n + width
    end
  end
  return out
end

local ROW = "<" .. string.rep("d", 27)

-- append the 27 features of `st` at (nowday, nowmonth) to `out` as packed little-endian doubles
local function features(st, nowday, nowmonth, out)
  local months = {0, 0, 0, 0, 0, 0}
  local m = st.m
  for j = 1, #m, 2 do
    local k = nowmonth - m[j]
    if k >= 0 and k <= 5 then months[k + 1] = months[k + 1] + m[j + 1] end
  end
  local l7, l28, d7, d28, v7, v28 = 0, 0, 0, 0, 0, 0
  local d = st.d
  for j = 1, #d, 4 do
    local k = nowday - d[j]
    if k >= 0 and k < 7 then
      l7 = l7 + d[j + 1]; d7 = d7 + d[j + 2]; v7 = v7 + d[j + 3]
    elseif k >= 7 and k <= 34 then
      l28 = l28 + d[j + 1]; d28 = d28 + d[j + 2]; v28 = v28 + d[j + 3]
    end
  end
  local sn, sc = 0, 0
  local s = st.s
  for j = 1, #s, 3 do
    local k = nowday - s[j]
    if k >= 0 and k < 30 then sn = sn + s[j + 1]; sc = sc + s[j + 2] end
  end
  local cat = {0, 0, 0, 0}
  local c = st.c
  for j = 1, #c, 2 do
    local k = nowday - c[j]
    if k >= 0 and k < 30 then cat[c[j + 1] + 1] = cat[c[j + 1] + 1] + 1 end
  end
  local fee, delta = NAN, 0
  if st.f1 then fee = st.f1 end
  if st.f0 then delta = st.f1 - st.f0 end
  local tenure = NAN
  if st.ten then tenure = st.ten + (nowmonth - st.tm) end
  local plan_day = NAN
  if st.t1 then plan_day = nowday - floor(st.t1 / 86400000) end
  out[#out + 1] = struct.pack(ROW, months[1], months[2], months[3], months[4], months[5],
    months[6], l7, l28, cat[1] + cat[2] + cat[3] + cat[4], cat[1], cat[2], cat[3], cat[4],
    sn, sc, since(nowday, st.ls or st.fd), d7, d28, v7, v28, fee, delta, plan_day, tenure,
    since(nowday, st.ll), since(nowday, st.lc), since(nowday, st.lu))
end

local out = {}
if ARGV[4] ~= "" then
  local sep = string.find(ARGV[4], ":")
  local day = tonumber(string.sub(ARGV[4], 1, sep - 1))
  local month = tonumber(string.sub(ARGV[4], sep + 1))
  local present = {}
  for i = 1, nsubs do
    local st = states[i]
    if st.mx then
      present[i] = "A"
      features(st, math.max(day, floor(st.mx / 86400000)), math.max(month, st.mm), out)
    else
      present[i] = "-"
    end
  end
  return {table.concat(present), table.concat(out), attrs_out, ledgers, {}}
end

local function seen(e, id)
  for j = 1, #e, 2 do
    if e[j] == id then return true end
  end
  return false
end

local statuses = {}
local pending = {}
for idx, ev in ipairs(events) do
  local st = states[ev[1]]
  local id, etype, ts, day, month = ev[2], ev[3], ev[4], ev[5], ev[6]
  if st.mx and ts < st.mx - lateness then
    statuses[idx] = "L"
  elseif seen(st.e, id) then
    statuses[idx] = "D"
    local alert = redis.call("HGET", KEYS[3 * ev[1]], "p:" .. id)
    if alert then pending[#pending + 1] = alert end
  else
    statuses[idx] = "A"
    local e = st.e
    e[#e + 1] = id
    e[#e + 1] = ts
    if not st.mx or ts > st.mx then
      st.mx = ts
      st.mm = month
    end
    if not st.fd or day < st.fd then st.fd = day end
    if etype == LOGIN then
      bump(st.d, 4, day, 1, 0, 0)
      if not st.ll or day > st.ll then st.ll = day end
    elseif etype == SPEND then
      bump(st.s, 3, day, 1, ev[7])
      bump(st.m, 2, month, ev[7])
      if not st.ls or day > st.ls then st.ls = day end
    elseif etype == COMPLAINT then
      local c = st.c
      c[#c + 1] = day
      c[#c + 1] = ev[7]
      if not st.lc or day > st.lc then st.lc = day end
    elseif etype == USAGE then
      bump(st.d, 4, day, 0, ev[7], ev[8])
      if not st.lu or day > st.lu then st.lu = day end
    elseif etype == PLAN then
      if not st.t1 or ts >= st.t1 then
        st.t0, st.f0 = st.t1, st.f1
        st.t1, st.f1 = ts, ev[7]
      elseif not st.t0 or ts >= st.t0 then
        st.t0, st.f0 = ts, ev[7]
      end
    elseif etype == PROFILE then
      if not st.at or ts >= st.at then
        st.at = ts
        st.a = ev[8]
        if ev[7] >= 0 then
          st.ten, st.tm = ev[7], month
        end
      end
    end
    features(st, floor(st.mx / 86400000), st.mm, out)
  end
end

for i = 1, nsubs do
  local st = states[i]
  if st.mx then
    local today = floor(st.mx / 86400000)
    st.d = prune(st.d, 4, today - 34)
    st.s = prune(st.s, 3, today - 29)
    st.c = prune(st.c, 2, today - 29)
    st.m = prune(st.m, 2, st.mm - 5)
    local e, horizon = st.e, st.mx - lateness
    local stale = false
    for j = 2, #e, 2 do
      if e[j] < horizon then stale = true; break end
    end
    if stale then
      local kept = {}
      for j = 1, #e, 2 do
        if e[j + 1] >= horizon then
          kept[#kept + 1] = e[j]
          kept[#kept + 1] = e[j + 1]
        end
      end
      st.e = kept
    end
    redis.call("SET", KEYS[3 * i - 1], cmsgpack.pack(st), "EX", ttl)
  end
end
return {table.concat(statuses), table.concat(out), attrs_out, ledgers, pending}
