package policy

// The Redis scripts mirror decideAdmit and settleBucket (limit_decision.go)
// step by step, on the same integer bucket units, so the local and Redis
// backends give the same answers for the same inputs; TestLimiterSteps runs
// one table against both. Every number stays below 2^53, so Lua's doubles
// are exact. Levels are written with %d (never Lua's %.14g).
//
// Keys of one workspace share the hash tag {workspace}, so in Redis Cluster
// all of them live in one slot and one script may touch them together:
//
//	KEYS[1] <prefix>{<ws>}:w            hash rl rt tl tt: workspace buckets
//	KEYS[2] <prefix>{<ws>}:k:<cred>     hash rl rt tl tt: credential buckets
//	KEYS[3] <prefix>{<ws>}:q:<yyyymm>   hash usd tok: the month's spend
//	KEYS[4] <prefix>{<ws>}:kq:<yyyymm>:<cred>  hash usd tok: a managed
//	        key's own spend that month (only touched when it has a budget)
//
// rl/tl are the request/token levels, rt/tt the Unix ms of their last
// update. A bucket hash expires when all its buckets would have refilled
// (plus a second), since a missing bucket reads as full; a quota hash
// expires a day after its month. TTLs are relative (PEXPIRE, computed from
// the caller's now), never absolute: Redis's clock applies them, so a caller
// whose clock is off cannot make keys vanish at once.
//
// Time comes from the caller (ARGV[1], Unix ms), not from Redis's TIME, so
// the scripts are deterministic and replicate as scripts. The price is that
// replicas' clocks must agree: a replica whose clock runs ahead refills
// buckets early (by its skew, at most once per idle period), one running
// behind refills nothing until its clock passes the stored timestamp (the
// scripts never move a timestamp backwards). With NTP-synced hosts the skew
// is milliseconds, far below a minute-scale limit.

const luaRefill = `
local S = 60000
local now = tonumber(ARGV[1])
local function refill(key, lf, tf, rate, cap)
  local max = cap * S
  local v = redis.call('HMGET', key, lf, tf)
  if not v[1] then return max, now end
  local lvl = tonumber(v[1])
  local last = tonumber(v[2]) or now
  if lvl > max then lvl = max end
  local el = now - last
  if el <= 0 then return lvl, last end
  local deficit = max - lvl
  if deficit <= 0 or el >= math.ceil(deficit / rate) then return max, now end
  return lvl + el * rate, now
end
local function resetMs(lvl, rate, cap)
  local max = cap * S
  if lvl >= max then return 0 end
  return math.ceil((max - lvl) / rate)
end
local bkeys = {KEYS[1], KEYS[1], KEYS[2], KEYS[2]}
local lf = {'rl', 'tl', 'rl', 'tl'}
local tf = {'rt', 'tt', 'rt', 'tt'}
`

// admitScript: ARGV[1] now ms, ARGV[2] tokens to reserve, ARGV[3..10] rate
// and capacity of the 4 buckets (ws req, ws tok, key req, key tok; rate 0 =
// unlimited), ARGV[11] USD budget, ARGV[12] token budget, ARGV[13] ms to the
// next month, ARGV[14] and ARGV[15] the credential's own USD and token
// budgets (checked after the workspace's). Returns {allowed, reason, retryMs, level1, reset1, ...
// level4, reset4}.
//
// Leases (redis_lease.go): with ARGV[16..28] present the call may also
// grant this replica a slice of each bucket, debited here at once.
// ARGV[16] is 0 for a lease-only call (nothing admitted: every need is 0),
// ARGV[17..20] the largest slice wanted per bucket (units; 0 = none),
// ARGV[21..24] the floor each bucket keeps out of leases (units), ARGV[25..28]
// the smallest slice worth taking. A slice is a quarter of what lies above
// the floor, at most the wanted size, and nothing when below the smallest:
// so slices shrink as a bucket drains, and near empty every decision is
// exact again. The reply then also carries the four slices granted and the
// month's spend (usd, tok, key usd, key tok). The levels reported are
// before the slices are taken: the replica holding them counts them as
// still in the bucket.
const admitScript = luaRefill + `
local reserve = tonumber(ARGV[2])
local leasing = ARGV[17] ~= nil
local admitting = ARGV[16] ~= '0'
local rate, cap, lvl, last, need = {}, {}, {}, {}, {}
for i = 1, 4 do
  rate[i] = tonumber(ARGV[1 + 2 * i])
  cap[i] = tonumber(ARGV[2 + 2 * i])
  lvl[i], last[i], need[i] = 0, now, 0
  if rate[i] > 0 then
    lvl[i], last[i] = refill(bkeys[i], lf[i], tf[i], rate[i], cap[i])
    if not admitting then
      need[i] = 0
    elseif i % 2 == 1 then
      need[i] = S
    else
      local r = reserve
      if r < 0 then r = 0 end
      if r > cap[i] then r = cap[i] end
      need[i] = r * S
    end
  end
end
local budgetUsd, budgetTok = tonumber(ARGV[11]), tonumber(ARGV[12])
local reason, retry = 0, 0
local spent = {0, 0, 0, 0}
if budgetUsd > 0 or budgetTok > 0 then
  local q = redis.call('HMGET', KEYS[3], 'usd', 'tok')
  local usd, tok = tonumber(q[1]) or 0, tonumber(q[2]) or 0
  spent[1], spent[2] = usd, tok
  if budgetUsd > 0 and usd >= budgetUsd then
    reason = 3
  elseif budgetTok > 0 and tok >= budgetTok then
    reason = 4
  end
end
local kUsd, kTok = tonumber(ARGV[14]), tonumber(ARGV[15])
if (reason == 0 or leasing) and (kUsd > 0 or kTok > 0) then
  local q = redis.call('HMGET', KEYS[4], 'usd', 'tok')
  local usd, tok = tonumber(q[1]) or 0, tonumber(q[2]) or 0
  spent[3], spent[4] = usd, tok
  if reason ~= 0 then
  elseif kUsd > 0 and usd >= kUsd then
    reason = 3
  elseif kTok > 0 and tok >= kTok then
    reason = 4
  end
end
if reason ~= 0 then retry = tonumber(ARGV[13]) end
if reason == 0 then
  for i = 1, 4 do
    if rate[i] > 0 and lvl[i] < need[i] then
      if reason == 0 then
        if i % 2 == 1 then reason = 1 else reason = 2 end
      end
      local w = math.ceil((need[i] - lvl[i]) / rate[i])
      if w > retry then retry = w end
    end
  end
end
local allowed = 0
if reason == 0 then allowed = 1 end
local out = {allowed, reason, retry}
local ttl = {0, 0}
local grant = {0, 0, 0, 0}
for i = 1, 4 do
  local reset = 0
  if rate[i] > 0 then
    if allowed == 1 then
      lvl[i] = lvl[i] - need[i]
      if leasing then
        local room = lvl[i] - tonumber(ARGV[20 + i])
        local g = math.floor(room / 4)
        if g > tonumber(ARGV[16 + i]) then g = tonumber(ARGV[16 + i]) end
        if g >= tonumber(ARGV[24 + i]) and g > 0 then grant[i] = g end
      end
      redis.call('HSET', bkeys[i], lf[i], string.format('%d', lvl[i] - grant[i]), tf[i], string.format('%d', last[i]))
    end
    reset = resetMs(lvl[i], rate[i], cap[i])
    local h = math.floor((i + 1) / 2)
    local r = resetMs(lvl[i] - grant[i], rate[i], cap[i])
    if r > ttl[h] then ttl[h] = r end
  end
  out[2 + 2 * i] = lvl[i]
  out[3 + 2 * i] = reset
end
if leasing then
  for i = 1, 4 do
    out[11 + i] = grant[i]
    out[15 + i] = spent[i]
  end
end
if allowed == 1 then
  for h = 1, 2 do
    if rate[2 * h - 1] > 0 or rate[2 * h] > 0 then
      redis.call('PEXPIRE', KEYS[h], string.format('%d', ttl[h] + 1000))
    end
  end
end
return out
`

// settleScript: ARGV[1] now ms, ARGV[2] actual tokens, ARGV[3] cost USD
// micros, ARGV[4] tokens reserved from the workspace bucket, ARGV[5] from
// the credential bucket, ARGV[6..13] rate and capacity of the 4 buckets,
// ARGV[14] 1 to count the quota, ARGV[15] quota hash TTL (ms), ARGV[16] 1 to
// count the credential's own quota (KEYS[4]).
const settleScript = luaRefill + `
local actual = tonumber(ARGV[2])
if actual < 0 then actual = 0 end
if actual > 10000000000 then actual = 10000000000 end
local reserved = {0, tonumber(ARGV[4]), 0, tonumber(ARGV[5])}
local rate, cap = {}, {}
for i = 1, 4 do
  rate[i] = tonumber(ARGV[4 + 2 * i])
  cap[i] = tonumber(ARGV[5 + 2 * i])
end
for h = 1, 2 do
  local tk = 2 * h
  if rate[tk] > 0 then
    local lvl, last = refill(bkeys[tk], lf[tk], tf[tk], rate[tk], cap[tk])
    lvl = lvl + (reserved[tk] - actual) * S
    if lvl > cap[tk] * S then lvl = cap[tk] * S end
    if lvl < -10000000000 * S then lvl = -10000000000 * S end
    redis.call('HSET', bkeys[tk], lf[tk], string.format('%d', lvl), tf[tk], string.format('%d', last))
    local ttl = resetMs(lvl, rate[tk], cap[tk])
    local rq = tk - 1
    if rate[rq] > 0 then
      local rl = refill(bkeys[rq], lf[rq], tf[rq], rate[rq], cap[rq])
      local r = resetMs(rl, rate[rq], cap[rq])
      if r > ttl then ttl = r end
    end
    redis.call('PEXPIRE', bkeys[tk], string.format('%d', ttl + 1000))
  end
end
if ARGV[14] == '1' then
  redis.call('HINCRBY', KEYS[3], 'usd', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'tok', string.format('%d', actual))
  redis.call('PEXPIRE', KEYS[3], ARGV[15])
end
if ARGV[16] == '1' then
  redis.call('HINCRBY', KEYS[4], 'usd', ARGV[3])
  redis.call('HINCRBY', KEYS[4], 'tok', string.format('%d', actual))
  redis.call('PEXPIRE', KEYS[4], ARGV[15])
end
return 1
`

// returnScript gives a lease's unspent slices back: KEYS[1] the bucket
// hash (a workspace's or a credential's), ARGV[1] now ms, ARGV[2..5] rate
// and capacity of its request and token buckets, ARGV[6] and ARGV[7] the
// units returned to each, ARGV[8] and ARGV[9] the units of each the
// replica still holds. A bucket never rises above its capacity less what
// is still held, so the bucket and its leases together never hold more
// than the capacity.
const returnScript = luaRefill + `
local lf2, tf2 = {'rl', 'tl'}, {'rt', 'tt'}
local ttl = 0
for i = 1, 2 do
  local rate, cap, units = tonumber(ARGV[2 * i]), tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[5 + i])
  if rate > 0 then
    local lvl, last = refill(KEYS[1], lf2[i], tf2[i], rate, cap)
    local top = cap * S - tonumber(ARGV[7 + i])
    if lvl < top then lvl = math.min(lvl + units, top) end
    redis.call('HSET', KEYS[1], lf2[i], string.format('%d', lvl), tf2[i], string.format('%d', last))
    local r = resetMs(lvl, rate, cap)
    if r > ttl then ttl = r end
  end
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl + 1000))
return 1
`

// flushScript adds spend counted while Redis was unreachable: KEYS[1] the
// quota hash, ARGV[1] USD micros, ARGV[2] tokens, ARGV[3] TTL (ms).
const flushScript = `
redis.call('HINCRBY', KEYS[1], 'usd', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'tok', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`
