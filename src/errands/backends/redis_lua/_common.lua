-- errands: shared prelude, prepended to every script at load time.
--
-- Calling convention of every script:
--   KEYS[i]  the base of queue i: "<prefix>:{<escaped queue>}:" (declared so Redis Cluster can
--            route the call; every key of that queue is built from it and shares its hash tag)
--   ARGV[1..3]  seconds a succeeded / failed / cancelled record keeps its TTL (0: no TTL)
--   ARGV[4..]   the script's own arguments
-- Strings that may be absent travel as "" (absent) or "=" .. value, because Redis arguments
-- can't be nil.
--
-- The server's clock decides every time (leases, run_at, finished_at), so a worker whose own
-- clock is off can't steal a live lease. Redis >= 5 replicates script effects, so TIME is safe.

local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local TTL = {succeeded = tonumber(ARGV[1]), failed = tonumber(ARGV[2]), cancelled = tonumber(ARGV[3])}
local SPAN = 4398046511104 -- 2^42 ms of run_at under each priority level (score stays below 2^53)
local WAKE_CAP = 64 -- wake-up tokens kept per queue: enough to wake a crowd, never a growing list

local STATES = {scheduled = true, available = true, running = true,
                succeeded = true, failed = true, cancelled = true}
local TERMINAL = {succeeded = true, failed = true, cancelled = true}
local ACTIVE = {scheduled = true, available = true, running = true}

local function fmt(x)
  return string.format('%.6f', x)
end

local function opt(s)
  if s == nil or s == '' then return nil end
  return string.sub(s, 2)
end

-- A key of the wrong type must fail its own queue, never abort a script halfway (Redis keeps
-- the writes a failed script already made), so every script checks its queues before writing.
-- A script on a hot path names just the keys it writes (`only`), since each TYPE is a call.
local CHECKED = {{'unique', 'hash'}, {'unique_last', 'hash'}, {'wake', 'list'}}
for state in pairs(STATES) do
  CHECKED[#CHECKED + 1] = {state, 'zset'}
  CHECKED[#CHECKED + 1] = {'ids:' .. state, 'zset'}
end

local function check(base, only)
  for _, k in ipairs(only or CHECKED) do
    local t = redis.call('TYPE', base .. k[1])['ok']
    if t ~= 'none' and t ~= k[2] then
      return 'key ' .. base .. k[1] .. ' holds a ' .. t .. ', not a ' .. k[2]
    end
  end
  return nil
end

-- Check every queue: returns the bases that are sound and a flat {index, message, ...} list.
local function check_all(only)
  local good, errs = {}, {}
  for qi, base in ipairs(KEYS) do
    local e = check(base, only)
    if e then
      errs[#errs + 1] = qi
      errs[#errs + 1] = e
    else
      good[#good + 1] = qi
    end
  end
  return good, errs
end

-- Available jobs sort by priority (higher first), then run_at (ms), then id (the member).
local function available_score(priority, run_at)
  local p = math.floor(tonumber(priority) or 0)
  p = math.max(-1000, math.min(1000, p))
  local ms = math.floor((tonumber(run_at) or NOW) * 1000)
  ms = math.max(0, math.min(SPAN - 1, ms))
  return (1000 - p) * SPAN + ms
end

-- Every state has two sorted sets: "<state>" scored for its own work (run_at, lease deadline,
-- finished_at, claim order) and "ids:<state>" with all scores 0, so ids sort lexically
-- (UUIDv7: by creation) for list() and its paging.
local function unindex(base, id, from)
  if STATES[from] then
    redis.call('ZREM', base .. from, id)
    redis.call('ZREM', base .. 'ids:' .. from, id)
  end
end

local function place(base, id, from, to, score)
  unindex(base, id, from)
  redis.call('ZADD', base .. to, score, id)
  redis.call('ZADD', base .. 'ids:' .. to, 0, id)
end

-- A paused queue gets no tokens: a worker would only wake to find nothing it may claim (resuming
-- pushes them, see pause.lua).
local function wake(base, count)
  if count <= 0 or redis.call('EXISTS', base .. 'paused') == 1 then return end
  local tokens = {}
  for i = 1, math.min(count, WAKE_CAP) do tokens[i] = '1' end
  redis.call('LPUSH', base .. 'wake', unpack(tokens))
  redis.call('LTRIM', base .. 'wake', 0, WAKE_CAP - 1)
end

local function make_available(base, key, id, from, priority, run_at)
  redis.call('HSET', key, 'state', 'available', 'run_at', fmt(run_at))
  redis.call('HDEL', key, 'token')
  place(base, id, from, 'available', available_score(priority, run_at))
end

-- Back to waiting until run_at (a retry's backoff, a snooze, a debounce).
local function schedule(base, key, id, from, run_at)
  redis.call('HSET', key, 'state', 'scheduled', 'run_at', fmt(run_at))
  redis.call('HDEL', key, 'token')
  place(base, id, from, 'scheduled', run_at)
end

-- Deletes a finished record for good, and the unique_for entry naming it (so that hash shrinks
-- as jobs are purged).
local function drop(base, id, state)
  local key = base .. 'job:' .. id
  local uk = redis.pcall('HGET', key, 'unique_key')
  if type(uk) == 'string' and redis.call('HGET', base .. 'unique_last', uk) == id then
    redis.call('HDEL', base .. 'unique_last', uk)
  end
  redis.call('DEL', key)
  unindex(base, id, state)
end

-- Any move to a terminal state: frees the unique key, stamps finished_at, starts the TTL.
local function finish(base, key, id, from, to, err)
  local uk = redis.call('HGET', key, 'unique_key')
  if uk and redis.call('HGET', base .. 'unique', uk) == id then
    redis.call('HDEL', base .. 'unique', uk)
  end
  redis.call('HSET', key, 'state', to, 'finished_at', fmt(NOW))
  if err then redis.call('HSET', key, 'error', err) end
  redis.call('HDEL', key, 'token')
  place(base, id, from, to, NOW)
  local ttl = TTL[to]
  if ttl and ttl > 0 then redis.call('EXPIRE', key, math.ceil(ttl)) end
end

-- Reads a record's state and fields; nil when the record is gone or is not a hash (the caller
-- then drops the id from its index and counts it: a dangling id is skipped, never an error).
local function read(key, ...)
  local f = redis.pcall('HMGET', key, 'state', ...)
  if type(f) ~= 'table' or f.err then return nil end
  if not f[1] and redis.call('EXISTS', key) == 0 then return nil end
  return f -- f[1] may be false: a hash without a state, which the caller fails as corrupt
end

local function whole(x, low)
  local n = tonumber(x)
  return n and n == math.floor(n) and n >= low and n < 2^53
end

-- A record the scripts can't trust (state or counters not what its index says) fails in
-- place with a clear error, so the worker goes on and the job is never silently dropped.
local function corrupt(base, key, id, from, what)
  finish(base, key, id, from, 'failed', 'corrupt job record: ' .. what)
end

-- Why a record's state doesn't belong in the `set` that indexes it; a state errands never writes
-- is called unknown, as the SQL backends' maintain() calls it.
local function misplaced(state, set)
  if not state then return 'no state in the ' .. set .. ' set' end
  return (STATES[state] and '' or 'unknown ') .. "state '" .. state .. "' in the " .. set .. ' set'
end

-- Moves up to `limit` due scheduled jobs of one queue to available (claim and maintain both do).
-- Returns moved, skipped (index entries whose record is gone), broken (records failed as corrupt).
local function promote_due(base, limit)
  local moved, skipped, broken = 0, 0, 0
  local due = redis.call('ZRANGEBYSCORE', base .. 'scheduled', '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local key = base .. 'job:' .. id
    local f = read(key, 'priority', 'run_at')
    if not f then
      unindex(base, id, 'scheduled')
      skipped = skipped + 1
    elseif f[1] ~= 'scheduled' then
      corrupt(base, key, id, 'scheduled', misplaced(f[1], 'scheduled'))
      broken = broken + 1
    else
      make_available(base, key, id, 'scheduled', f[2], tonumber(f[3]) or NOW)
      moved = moved + 1
    end
  end
  return moved, skipped, broken
end
