-- claim_ids: move exactly the given jobs to running, each only if it is available, or scheduled
-- and due (claimed straight from the scheduled set: claim.lua would have promoted it first), and
-- its queue is not paused.
-- KEYS: every known queue (a job is looked up in each, as cancel.lua does).
-- ARGV[4..7]: lease seconds, worker id, nonce (fresh per call), Q (the number of queues)
-- ARGV[8..7+Q]: the queue names, in KEYS order (each claim's token names its queue)
-- ARGV[8+Q..]: the ids; a repeated id is claimed once
-- Returns {claims, missing, corrupt, errors}; claims is flat as in claim.lua (11 fields per
-- claim); missing lists the ids no queue holds (the caller may look in queues it hadn't seen).
local lease, worker, nonce, nq = tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local good, errs = check_all()
local claims, missing, broken, n = {}, {}, 0, 0
local seen, touched, paused = {}, {}, {}

local function is_paused(qi)
  if paused[qi] == nil then paused[qi] = redis.call('EXISTS', KEYS[qi] .. 'paused') == 1 end
  return paused[qi]
end

local function take(qi, base, key, id, f)
  local from = f[1]
  local bad = nil
  if not whole(f[2], 0) then
    bad = "attempts '" .. tostring(f[2]) .. "'"
  elseif not whole(f[3], 1) then
    bad = "max_attempts '" .. tostring(f[3]) .. "'"
  end
  if bad then
    corrupt(base, key, id, from, bad)
    broken = broken + 1
    return
  end
  local attempts = tonumber(f[2]) + 1
  n = n + 1
  local token = nonce .. '.' .. n .. '|' .. ARGV[7 + qi]
  redis.call('HSET', key, 'state', 'running', 'attempts', attempts, 'started_at', fmt(NOW),
    'worker_id', worker, 'cancel', 0, 'token', token)
  place(base, id, from, 'running', NOW + lease)
  if from == 'available' then touched[qi] = true end
  local c = {id, f[4] or '', f[5] or '', f[6] or '', attempts, tonumber(f[3]), token, f[7] or '',
             f[8] or '', qi, f[9] or ''}
  for _, v in ipairs(c) do claims[#claims + 1] = v end
end

for a = 8 + nq, #ARGV do
  local id = ARGV[a]
  if not seen[id] then
    seen[id] = true
    local found = false
    for _, qi in ipairs(good) do
      local base = KEYS[qi]
      local key = base .. 'job:' .. id
      local f = read(key, 'attempts', 'max_attempts', 'name', 'args', 'kwargs', 'timeout', 'priority', 'meta',
                     'run_at')
      if f then
        found = true
        if (f[1] == 'available' or (f[1] == 'scheduled' and (tonumber(f[10]) or math.huge) <= NOW))
            and not is_paused(qi) then
          take(qi, base, key, id, f)
        end
        break
      end
    end
    if not found then missing[#missing + 1] = id end
  end
end

-- Tokens left in an emptied queue's wake list would only cause empty claims later (claim.lua).
for qi in pairs(touched) do
  if redis.call('ZCARD', KEYS[qi] .. 'available') == 0 then redis.call('DEL', KEYS[qi] .. 'wake') end
end
return {claims, missing, broken, errs}
