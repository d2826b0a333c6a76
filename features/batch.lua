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
-- features is a comma-separated matrix, one row of 27 values per applied event (or per known
-- subscriber in read mode); attrs[i] is "ts|msgpack" of subscriber i's attributes before the
-- batch; ledgers[i] its cooldown entries {rule, "ts|rank|event_id", ...}; pending holds the
-- undelivered alerts (JSON) of duplicate events, to be sent again.

local LOGIN, SPEND, COMPLAINT, USAGE, PLAN, PROFILE = 1, 0, 2, 3, 4, 5
local events = cmsgpack.unpack(ARGV[1])
local lateness = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local NAN = "nan"

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
    st = {d = {}, m = {}, e = {}, a = {}}
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

local function since(nowday, day)
  if day then return nowday - day end
  return NAN
end

local function features(st, nowday, nowmonth, out)
  local n = #out
  local m = st.m
  for k = 0, 5 do
    n = n + 1
    out[n] = m[nowmonth - k] or 0
  end
  local l7, l28, c, cn, cb, cs, co, sn, sc, d7, d28, v7, v28 = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
  local d = st.d
  for k = 0, 34 do
    local r = d[nowday - k]
    if r then
      if k < 7 then
        l7 = l7 + r[1]; d7 = d7 + r[8]; v7 = v7 + r[9]
      else
        l28 = l28 + r[1]; d28 = d28 + r[8]; v28 = v28 + r[9]
      end
      if k < 30 then
        sn = sn + r[2]; sc = sc + r[3]
        cn = cn + r[4]; cb = cb + r[5]; cs = cs + r[6]; co = co + r[7]
      end
    end
  end
  local recency = since(nowday, st.ls or st.fd)
  local fee, delta = NAN, 0
  if st.f1 then fee = st.f1 end
  if st.f0 then delta = st.f1 - st.f0 end
  local tenure = NAN
  -- the only fractional feature: %.17g keeps it exact (tostring's %.14g would round it)
  if st.ten then tenure = string.format("%.17g", st.ten + (nowmonth - st.tm)) end
  local plan_day = NAN
  if st.t1 then plan_day = nowday - math.floor(st.t1 / 86400000) end
  local row = {l7, l28, cn + cb + cs + co, cn, cb, cs, co, sn, sc, recency, d7, d28, v7, v28,
               fee, delta, plan_day, tenure,
               since(nowday, st.ll), since(nowday, st.lc), since(nowday, st.lu)}
  for _, v in ipairs(row) do
    n = n + 1
    out[n] = v
  end
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
      features(st, math.max(day, math.floor(st.mx / 86400000)), math.max(month, st.mm), out)
    else
      present[i] = "-"
    end
  end
  return {table.concat(present), table.concat(out, ","), attrs_out, ledgers, {}}
end

local statuses = {}
local pending = {}
for idx, ev in ipairs(events) do
  local st = states[ev[1]]
  local id, etype, ts, day, month = ev[2], ev[3], ev[4], ev[5], ev[6]
  if st.mx and ts < st.mx - lateness then
    statuses[idx] = "L"
  elseif st.e[id] then
    statuses[idx] = "D"
    local alert = redis.call("HGET", KEYS[3 * ev[1]], "p:" .. id)
    if alert then pending[#pending + 1] = alert end
  else
    statuses[idx] = "A"
    st.e[id] = ts
    if not st.mx or ts > st.mx then
      st.mx = ts
      st.mm = month
    end
    if not st.fd or day < st.fd then st.fd = day end
    local r = st.d[day]
    if not r then
      r = {0, 0, 0, 0, 0, 0, 0, 0, 0}
      st.d[day] = r
    end
    if etype == LOGIN then
      r[1] = r[1] + 1
      if not st.ll or day > st.ll then st.ll = day end
    elseif etype == SPEND then
      r[2] = r[2] + 1
      r[3] = r[3] + ev[7]
      st.m[month] = (st.m[month] or 0) + ev[7]
      if not st.ls or day > st.ls then st.ls = day end
    elseif etype == COMPLAINT then
      r[4 + ev[7]] = r[4 + ev[7]] + 1
      if not st.lc or day > st.lc then st.lc = day end
    elseif etype == USAGE then
      r[8] = r[8] + ev[7]
      r[9] = r[9] + ev[8]
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
    features(st, math.floor(st.mx / 86400000), st.mm, out)
  end
end

for i = 1, nsubs do
  local st = states[i]
  if st.mx then
    local oldest_day = math.floor(st.mx / 86400000) - 34
    for day in pairs(st.d) do
      if day < oldest_day then st.d[day] = nil end
    end
    for month in pairs(st.m) do
      if month < st.mm - 5 then st.m[month] = nil end
    end
    local horizon = st.mx - lateness
    for id, ts in pairs(st.e) do
      if ts < horizon then st.e[id] = nil end
    end
    redis.call("SET", KEYS[3 * i - 1], cmsgpack.pack(st), "EX", ttl)
  end
end
return {table.concat(statuses), table.concat(out, ","), attrs_out, ledgers, pending}
