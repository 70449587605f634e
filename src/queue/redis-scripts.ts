// The durable queue's multi-step operations, each atomic in one Lua script. Every key a script
// touches is passed in KEYS (none is built inside), so the scripts stay valid on Redis Cluster
// when the prefix carries a hash tag. Times come from the Redis clock (TIME) so instances with
// skewed clocks agree on when a retry is due.
import { LuaScript } from './lua-script.ts'

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

export const ENQUEUE = new LuaScript('enqueue', `
--[[ enqueue: admit jobs, deduplicated across instances; one call per request batch.
KEYS[1]         image stream
KEYS[2]         text stream
KEYS[1+2i]      job i's pending marker      (i = 1..n)
KEYS[2+2i]      job i's negative marker
ARGV[1]         pending marker TTL, ms (covers queue wait + retries; afterwards a duplicate may be admitted)
ARGV[2]         most entries per stream, 0 = unbounded
ARGV[3i]        job i's modality: 'image' | 'text'
ARGV[3i+1]      job i's cache key
ARGV[3i+2]      job i's input (URL or title)
Returns: array with one code per job: 1 accepted, 0 already pending (queued, delayed or in flight),
         -1 negatively cached, -2 stream full ]]
local ttl = ARGV[1]
local maxLen = tonumber(ARGV[2])
local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local pending, negative = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local modality, key, input = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local stream = KEYS[2]
  if modality == 'image' then stream = KEYS[1] end
  if redis.call('EXISTS', negative) == 1 then
    out[i] = -1
  elseif redis.call('EXISTS', pending) == 1 then
    out[i] = 0
  elseif maxLen > 0 and redis.call('XLEN', stream) >= maxLen then
    out[i] = -2
  else
    redis.call('SET', pending, '1', 'PX', ttl)
    redis.call('XADD', stream, '*', 'key', key, 'input', input, 'attempt', '1')
    out[i] = 1
  end
end
return out`)

export const SETTLE = new LuaScript('settle', `
--[[ settle: record a handled batch (one modality); per job ack + delete the entry and then
clear the pending marker (ok), schedule a retry (retry) or set the negative marker (fail).
KEYS[1]         stream
KEYS[2]         delayed-retry ZSET of the same modality
KEYS[1+2i]      job i's pending marker      (i = 1..n)
KEYS[2+2i]      job i's negative marker
ARGV[1]         consumer group
ARGV[2]         pending marker TTL, ms (renewed on retry)
ARGV[3]         negative marker TTL, ms
ARGV[4i]        job i's stream entry id
ARGV[4i+1]      job i's action: 'ok' | 'retry' | 'fail'
ARGV[4i+2]      retry: delay in ms; otherwise ignored
ARGV[4i+3]      retry: ZSET member (JSON {key,input,attempt}); fail: the reason; ok: ignored
Returns: array with one value per job: 1 settled here, 0 the entry was no longer pending (another
         consumer reclaimed and settled it; nothing is changed, so nothing is done twice) ]]
${NOW_MS}
local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local pending, negative = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local id, action, delay, data = ARGV[4 * i], ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3]
  out[i] = redis.call('XACK', KEYS[1], ARGV[1], id)
  if out[i] == 1 then
    redis.call('XDEL', KEYS[1], id)
    if action == 'retry' then
      redis.call('ZADD', KEYS[2], now + tonumber(delay), data)
      redis.call('SET', pending, '1', 'PX', ARGV[2])
    elseif action == 'fail' then
      redis.call('DEL', pending)
      redis.call('SET', negative, data, 'PX', ARGV[3])
    else
      redis.call('DEL', pending)
    end
  end
end
return out`)

export const PROMOTE = new LuaScript('promote', `
--[[ promote: move retries whose backoff has passed from the delayed ZSET back into the stream.
KEYS[1]         delayed-retry ZSET
KEYS[2]         stream of the same modality
ARGV[1]         most entries to move in this call
Returns: number of entries moved ]]
${NOW_MS}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local job = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'key', job.key, 'input', job.input, 'attempt', tostring(job.attempt))
  redis.call('ZREM', KEYS[1], member)
end
return #due`)

export const RECLAIM = new LuaScript('reclaim', `
--[[ reclaim: take over entries left idle in another consumer's pending list (a crashed or
stalled instance), with how often each was delivered so poison jobs run out of attempts.
KEYS[1]         stream
ARGV[1]         consumer group
ARGV[2]         this consumer's name
ARGV[3]         min idle time, ms
ARGV[4]         XAUTOCLAIM cursor ('0-0' to start over)
ARGV[5]         most entries to claim
Returns: { next cursor, { { id, times delivered (this claim included), { field, value, ... } }, ... } } ]]
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local claimed = {}
for _, entry in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  local deliveries = 1
  if p[1] then deliveries = p[1][4] end
  claimed[#claimed + 1] = { entry[1], deliveries, entry[2] }
end
return { r[1], claimed }`)

export const DEPTH = new LuaScript('depth', `
--[[ depth: jobs waiting (stream entries not yet delivered + retries waiting for backoff).
KEYS[1]         image stream
KEYS[2]         text stream
KEYS[3]         image delayed ZSET
KEYS[4]         text delayed ZSET
ARGV[1]         consumer group
Returns: integer count ]]
local n = redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])
for s = 1, 2 do
  n = n + redis.call('XLEN', KEYS[s])
  local p = redis.pcall('XPENDING', KEYS[s], ARGV[1])
  if type(p) == 'table' and not p.err then n = n - tonumber(p[1]) end
end
return n`)

export const PRUNE_CONSUMERS = new LuaScript('prune-consumers', `
--[[ prune-consumers: forget consumers that hold no entries and were idle long enough. Names are
unique per process, so each restart would otherwise leave one behind.
KEYS[1]         stream
ARGV[1]         consumer group
ARGV[2]         min idle time, ms
ARGV[3]         only this consumer ('' = any)
Returns: number of consumers deleted ]]
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) ~= 'table' or consumers.err then return 0 end
local deleted = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and (ARGV[3] == '' or ARGV[3] == info['name']) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted`)
