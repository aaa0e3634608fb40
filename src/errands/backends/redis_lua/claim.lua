-- claim: promote due scheduled jobs, then move up to `limit` available jobs to running, best
-- first across every queue given (priority, then run_at, then id). A paused queue's due jobs are
-- promoted, but none of its jobs is claimed.
-- ARGV[4..8]: limit, lease seconds, worker id, nonce (fresh per call), promotion limit
-- ARGV[9..]: the queue names, in KEYS order (each claim's token names its queue)
-- Returns {claims, skipped, corrupt, errors}; claims is flat, 11 fields per claim:
--   id, name, args, kwargs, attempts, max_attempts, token, timeout, priority, queue index, meta
local limit, lease, worker, nonce = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local promote_limit = tonumber(ARGV[8])
local good, errs = check_all()
local skipped, broken = 0, 0

local open, paused = {}, {}
for _, qi in ipairs(good) do
  local _, gone, bad = promote_due(KEYS[qi], promote_limit)
  skipped, broken = skipped + gone, broken + bad
  if redis.call('EXISTS', KEYS[qi] .. 'paused') == 1 then paused[qi] = true else open[#open + 1] = qi end
end

local claims, n = {}, 0
local function take(qi, id)
  local base = KEYS[qi]
  local key = base .. 'job:' .. id
  local f = read(key, 'attempts', 'max_attempts', 'name', 'args', 'kwargs', 'timeout', 'priority', 'meta')
  if not f then
    unindex(base, id, 'available')
    skipped = skipped + 1
    return
  end
  local bad = nil
  if f[1] ~= 'available' then
    bad = misplaced(f[1], 'available')
  elseif not whole(f[2], 0) then
    bad = "attempts '" .. tostring(f[2]) .. "'"
  elseif not whole(f[3], 1) then
    bad = "max_attempts '" .. tostring(f[3]) .. "'"
  end
  if bad then
    corrupt(base, key, id, 'available', bad)
    broken = broken + 1
    return
  end
  local attempts = tonumber(f[2]) + 1
  n = n + 1
  local token = nonce .. '.' .. n .. '|' .. ARGV[8 + qi]
  redis.call('HSET', key, 'state', 'running', 'attempts', attempts, 'started_at', fmt(NOW),
    'worker_id', worker, 'cancel', 0, 'token', token)
  place(base, id, 'available', 'running', NOW + lease)
  local c = {id, f[4] or '', f[5] or '', f[6] or '', attempts, tonumber(f[3]), token, f[7] or '',
             f[8] or '', qi, f[9] or ''}
  for _, v in ipairs(c) do claims[#claims + 1] = v end
end

-- Each round takes the best candidates of all queues; a round only falls short when records
-- were missing or corrupt, so a few rounds always fill the claim or empty the queues.
for _ = 1, 8 do
  local want = limit - n
  if want <= 0 then break end
  local cand = {}
  for _, qi in ipairs(open) do
    local r = redis.call('ZRANGE', KEYS[qi] .. 'available', 0, want - 1, 'WITHSCORES')
    for i = 1, #r, 2 do cand[#cand + 1] = {tonumber(r[i + 1]), r[i], qi} end
  end
  if #cand == 0 then break end
  if #open > 1 then
    table.sort(cand, function(x, y)
      if x[1] ~= y[1] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
  end
  for i = 1, math.min(want, #cand) do take(cand[i][3], cand[i][2]) end
end

-- Tokens left in an emptied (or paused) queue's wake list would only cause empty claims later.
for _, qi in ipairs(good) do
  if paused[qi] or redis.call('ZCARD', KEYS[qi] .. 'available') == 0 then redis.call('DEL', KEYS[qi] .. 'wake') end
end
return {claims, skipped, broken, errs}
