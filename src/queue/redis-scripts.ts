// The durable queue's multi-step operations, each atomic in one Lua script on ONE partition. Every
// key a script touches is passed in KEYS and all of them carry the partition's hash tag, so each
// call runs on one slot (one Redis or a Redis Cluster alike). Times come from the Redis clock
// (TIME) so instances with skewed clocks agree on leases, retries and ages.
//
// Demand (priority): a job's score is log2(Σ 2^(t_i / halfLife)) over the times t_i it was
// offered (ms, Redis clock). The decayed count at time t is 2^(score − t / halfLife): one stored
// number orders jobs correctly at every later time without rescoring the set, and the log keeps
// it finite. A new job scores t/halfLife; each repeat adds log2(1 + 2^(lo − hi)) to the larger of
// the two (log-sum-exp), the same formula as the in-process queue. Scores are written with
// %.17g: Lua's default %.14g would erase bumps older than ~20 half-lives of precision.
import { LuaScript } from './lua-script.ts'

/** Helpers shared by the scripts (Lua 5.1 has no modules); `now` is the Redis clock in ms. */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(x) return string.format('%.17g', x) end
local function bump(p, x)
  if not p then return x end
  local hi, lo = math.max(p, x), math.min(p, x)
  return hi + math.log(1 + 2 ^ (lo - hi)) / math.log(2)
end
-- A job record, or nil when absent or not written by this queue (malformed).
local function decode(raw)
  if type(raw) ~= 'string' then return nil end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.i) ~= 'string' or type(rec.a) ~= 'number'
    or type(rec.c) ~= 'number' or type(rec.t) ~= 'number' or tonumber(rec.p) == nil then return nil end
  return rec
end
-- Removes every trace of a job from the partition (KEYS[1..6] = wait, jobs, delayed, active, owner, born).
local function forget(key)
  redis.call('ZREM', KEYS[1], key)
  redis.call('HDEL', KEYS[2], key)
  redis.call('ZREM', KEYS[3], key)
  redis.call('ZREM', KEYS[4], key)
  redis.call('HDEL', KEYS[5], key)
  redis.call('ZREM', KEYS[6], key)
end
`

const PARTITION_KEYS = `KEYS[1]         wait ZSET (member = cache key, score = demand)
KEYS[2]         jobs HASH (cache key → record JSON {i, a, c, t, p})
KEYS[3]         delayed ZSET (score = due time, ms)
KEYS[4]         active ZSET (score = lease expiry, ms)
KEYS[5]         owner HASH (cache key → lease token)
KEYS[6]         born ZSET (score = first queued, ms)
KEYS[7]         done ZSET (score = finished, ms; only jobs finished within the done window)`

export const ENQUEUE = new LuaScript('enqueue', `
--[[ enqueue: admit jobs into one partition, deduplicated across instances; a job already there
(waiting, delayed or leased) has its demand raised instead.
${PARTITION_KEYS}
KEYS[7+i]       job i's negative marker (i = 1..n)
ARGV[1]         demand half-life, ms
ARGV[2]         most jobs in the partition (waiting + delayed + leased), 0 = unbounded
ARGV[3]         done window, ms
ARGV[1+3i]      job i's cache key
ARGV[2+3i]      job i's input (URL or title)
ARGV[3+3i]      '1' when this is a resend of a job an earlier, unanswered try may have queued
Returns: array, one code per job: 1 queued, {3, evicted key} queued in place of the least
         requested waiting job, 0 already there (demand raised), -1 negatively cached, -2 partition full of
         jobs at least as requested, 2 a resend of a job that has finished since (not queued again) ]]
${PRELUDE}
local x = now / tonumber(ARGV[1])
local maxJobs = tonumber(ARGV[2])
local doneSince = now - tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS - 7 do
  local key, input, resend = ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  local raw = redis.call('HGET', KEYS[2], key)
  local rec = decode(raw)
  if raw and not rec then forget(key) end -- a malformed record goes with all its traces
  if rec then
    local p = fmt(bump(tonumber(rec.p), x))
    rec.p = p
    redis.call('HSET', KEYS[2], key, cjson.encode(rec))
    redis.call('ZADD', KEYS[1], 'XX', p, key)
    out[i] = 0
  elseif redis.call('EXISTS', KEYS[7 + i]) == 1 then
    out[i] = -1
  elseif resend == '1' and (tonumber(redis.call('ZSCORE', KEYS[7], key)) or -1) >= doneSince then
    out[i] = 2
  else
    local code, victim = 1, nil
    if maxJobs > 0 and redis.call('HLEN', KEYS[2]) >= maxJobs then
      -- Full: the least requested waiting job makes room when a request now outranks it (its
      -- demand decayed below one request's); leased jobs and retries are never evicted.
      local low = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      if low[1] ~= nil and tonumber(low[2]) < x then victim = low[1]; forget(victim); code = 3 else code = -2 end
    end
    if code > 0 then
      redis.call('HSET', KEYS[2], key, cjson.encode({ i = input, a = 0, c = 0, t = now, p = fmt(x) }))
      redis.call('ZADD', KEYS[1], fmt(x), key)
      redis.call('ZADD', KEYS[6], now, key)
    end
    if victim then out[i] = { code, victim } else out[i] = code end
  end
end
return out`)

export const TAKE = new LuaScript('take', `
--[[ take: the partition's upkeep, then lease its highest-demand waiting jobs to one delivery.
Upkeep: due retries go back to waiting; jobs whose lease expired (their consumer crashed or hung)
go back to waiting with their lost-lease count + 1; jobs first queued longer ago than the maximum
age are dropped unless leased; records that do not decode are removed with every trace.
${PARTITION_KEYS}
ARGV[1]         most jobs to lease
ARGV[2]         lease time, ms
ARGV[3]         lease token of this delivery
ARGV[4]         maximum age, ms (0 = none)
ARGV[5]         most jobs each upkeep step handles in this call
Returns: { expired, reclaimed, malformed, { { key, input, failed attempts, lost leases }, ... } } ]]
${PRELUDE}
local limit = tonumber(ARGV[5])
local malformed = 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)) do
  local rec = decode(redis.call('HGET', KEYS[2], key))
  redis.call('ZREM', KEYS[3], key)
  if rec then redis.call('ZADD', KEYS[1], rec.p, key) else forget(key); malformed = malformed + 1 end
end
local reclaimed = 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[4], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)) do
  local rec = decode(redis.call('HGET', KEYS[2], key))
  redis.call('ZREM', KEYS[4], key)
  redis.call('HDEL', KEYS[5], key)
  if rec then
    rec.c = rec.c + 1
    redis.call('HSET', KEYS[2], key, cjson.encode(rec))
    redis.call('ZADD', KEYS[1], rec.p, key)
    reclaimed = reclaimed + 1
  else
    forget(key)
    malformed = malformed + 1
  end
end
local expired = 0
local maxAge = tonumber(ARGV[4])
if maxAge > 0 then
  -- Leased jobs are skipped (they are running), so look past as many as there are.
  local span = limit + redis.call('ZCARD', KEYS[4])
  for _, key in ipairs(redis.call('ZRANGE', KEYS[6], '-inf', now - maxAge, 'BYSCORE', 'LIMIT', 0, span)) do
    if not redis.call('ZSCORE', KEYS[4], key) and expired < limit then
      forget(key)
      expired = expired + 1
    end
  end
end
local leased = {}
local expiry = now + tonumber(ARGV[2])
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, tonumber(ARGV[1]))) do
  local rec = decode(redis.call('HGET', KEYS[2], key))
  if rec then
    redis.call('ZREM', KEYS[1], key)
    redis.call('ZADD', KEYS[4], expiry, key)
    redis.call('HSET', KEYS[5], key, ARGV[3])
    leased[#leased + 1] = { key, rec.i, rec.a, rec.c }
  else
    forget(key)
    malformed = malformed + 1
  end
end
return { expired, reclaimed, malformed, leased }`)

export const RENEW = new LuaScript('renew', `
--[[ renew: extend the leases one delivery still holds (called every lease time / 3 while it runs).
KEYS[1]         active ZSET (score = lease expiry, ms)
KEYS[2]         owner HASH (cache key → lease token)
ARGV[1]         lease time, ms
ARGV[2]         lease token of the delivery
ARGV[2+i]       job i's cache key (i = 1..n)
Returns: array, one per job: 1 renewed, 0 no longer held by this delivery ]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[2] then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    out[i - 2] = 1
  else
    out[i - 2] = 0
  end
end
return out`)

export const SETTLE = new LuaScript('settle', `
--[[ settle: record what became of jobs one delivery held. ok: the job is gone (its vector is
stored); retry: failed attempts + 1, back after a delay; fail: gone, negative marker set with the
reason; release: back to waiting untouched (handed back at shutdown, no attempt counted).
${PARTITION_KEYS}
KEYS[7+i]       job i's negative marker (i = 1..n)
ARGV[1]         lease token of the delivery
ARGV[2]         negative marker TTL, ms
ARGV[3]         done window, ms: an 'ok' job is remembered in KEYS[7] this long
ARGV[1+3i]      job i's cache key
ARGV[2+3i]      job i's action: 'ok' | 'retry' | 'fail' | 'release'
ARGV[3+3i]      retry: delay, ms; fail: reason; otherwise ignored
Returns: array, one per job: 1 settled, 0 not held by this delivery any more (its lease expired
         and another delivery took it: nothing is changed, so nothing is counted twice) ]]
${PRELUDE}
local out = {}
local window = tonumber(ARGV[3])
local finished = 0
for i = 1, #KEYS - 7 do
  local key, action, arg = ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  if redis.call('HGET', KEYS[5], key) ~= ARGV[1] then
    out[i] = 0
  else
    redis.call('HDEL', KEYS[5], key)
    redis.call('ZREM', KEYS[4], key)
    local rec = decode(redis.call('HGET', KEYS[2], key))
    if action == 'ok' or action == 'fail' or not rec then
      forget(key)
      if action == 'fail' then redis.call('SET', KEYS[7 + i], arg, 'PX', ARGV[2]) end
      if action == 'ok' then redis.call('ZADD', KEYS[7], now, key); finished = finished + 1 end
    elseif action == 'retry' then
      rec.a = rec.a + 1
      redis.call('HSET', KEYS[2], key, cjson.encode(rec))
      redis.call('ZADD', KEYS[3], now + tonumber(arg), key)
    else
      redis.call('ZADD', KEYS[1], rec.p, key)
    end
    out[i] = 1
  end
end
if finished > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[7], window)
end
return out`)

/** The seven partition keys in the order every script's KEYS[1..6] expects. */
export function scriptKeys(p: { wait: string; jobs: string; delayed: string; active: string; owner: string; born: string; done: string }): string[] {
  return [p.wait, p.jobs, p.delayed, p.active, p.owner, p.born, p.done]
}
