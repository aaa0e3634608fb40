-- enqueue: store a batch of new jobs, all or none.
-- ARGV[4..]: 15 per job: queue index, id, name, queue, args, kwargs, max_attempts, priority,
--            run_at ("" or "=" .. epoch seconds), delay, unique_key ("" or "=" .. key), timeout,
--            meta ("" or "=" .. JSON object text), unique_for ("" or seconds), debounce ("" or seconds)
-- Returns {1, {id, created, ...}} or {0, message} when a queue's keys are unusable.
--
-- Two hashes per queue answer for unique keys: `unique` names the unfinished job holding a key
-- (finish() frees it), `unique_last` the job last created with it, whatever its state, for
-- unique_for; drop() forgets that entry when the job is purged.
-- The keys an enqueue may write: the state sets and wake-ups, and the unique hashes when a job
-- of the batch has a unique key.
local only = {{'available', 'zset'}, {'ids:available', 'zset'}, {'scheduled', 'zset'}, {'ids:scheduled', 'zset'},
              {'wake', 'list'}}
for a = 4, #ARGV, 15 do
  if ARGV[a + 10] ~= '' then
    only[#only + 1] = {'unique', 'hash'}
    only[#only + 1] = {'unique_last', 'hash'}
    break
  end
end
local good, errs = check_all(only)
if #errs > 0 then return {0, errs[2]} end

local out, woken = {}, {}

-- The job holding `uk` for a new job, or nil: the unfinished holder, else (with unique_for) the
-- last job created with the key if that was less than unique_for seconds ago.
local function holder_of(base, uk, unique_for)
  local holder = redis.call('HGET', base .. 'unique', uk)
  -- a key whose holder is gone or finished (its record expired early) no longer blocks
  if holder and ACTIVE[redis.call('HGET', base .. 'job:' .. holder, 'state') or ''] then
    return holder
  end
  if not unique_for then return nil end
  local last = redis.call('HGET', base .. 'unique_last', uk)
  if not last then return nil end
  local f = read(base .. 'job:' .. last, 'created_at')
  if not f then
    redis.call('HDEL', base .. 'unique_last', uk) -- its job expired without a purge
    return nil
  end
  if (tonumber(f[2]) or 0) > NOW - unique_for then return last end
  return nil
end

-- A debounce: a holder that has not started takes the new job's arguments and waits `debounce`
-- seconds more (the last enqueue wins); a running or finished one is left alone.
local function debounce_holder(qi, holder, a, debounce)
  local base = KEYS[qi]
  local key = base .. 'job:' .. holder
  local f = read(key, 'priority')
  if not f or not (f[1] == 'scheduled' or f[1] == 'available') then return end
  redis.call('HSET', key, 'args', ARGV[a + 4], 'kwargs', ARGV[a + 5])
  local meta = opt(ARGV[a + 12])
  if meta then redis.call('HSET', key, 'meta', meta) else redis.call('HDEL', key, 'meta') end
  local run_at = NOW + debounce
  if run_at > NOW then
    schedule(base, key, holder, f[1], run_at)
  else
    make_available(base, key, holder, f[1], f[2], run_at)
    woken[qi] = (woken[qi] or 0) + 1
  end
end

for a = 4, #ARGV, 15 do
  local qi = tonumber(ARGV[a])
  local base = KEYS[qi]
  local id = ARGV[a + 1]
  local key = base .. 'job:' .. id
  local uk = opt(ARGV[a + 10])
  local unique_for, debounce = tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14])
  local holder = nil
  if uk then holder = holder_of(base, uk, unique_for) end
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 0
  elseif holder then
    if debounce then debounce_holder(qi, holder, a, debounce) end
    out[#out + 1] = holder
    out[#out + 1] = 0
  else
    local run_at = tonumber(opt(ARGV[a + 8]) or '') or (NOW + (tonumber(ARGV[a + 9]) or 0))
    if debounce then run_at = NOW + debounce end
    local state = 'available'
    if run_at > NOW then state = 'scheduled' end
    local fields = {'id', id, 'name', ARGV[a + 2], 'queue', ARGV[a + 3], 'args', ARGV[a + 4],
      'kwargs', ARGV[a + 5], 'state', state, 'attempts', 0, 'max_attempts', ARGV[a + 6],
      'priority', ARGV[a + 7], 'run_at', fmt(run_at), 'created_at', fmt(NOW)}
    if ARGV[a + 11] ~= '' then fields[#fields + 1] = 'timeout'; fields[#fields + 1] = ARGV[a + 11] end
    local meta = opt(ARGV[a + 12])
    if meta then fields[#fields + 1] = 'meta'; fields[#fields + 1] = meta end
    if uk then fields[#fields + 1] = 'unique_key'; fields[#fields + 1] = uk end
    redis.call('HSET', key, unpack(fields))  -- one call: each redis.call costs more than its fields
    if uk then
      redis.call('HSET', base .. 'unique', uk, id)
      redis.call('HSET', base .. 'unique_last', uk, id)
    end
    if state == 'available' then
      place(base, id, nil, state, available_score(ARGV[a + 7], run_at))
      woken[qi] = (woken[qi] or 0) + 1
    else
      place(base, id, nil, state, run_at)
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
for qi, count in pairs(woken) do wake(KEYS[qi], count) end
return {1, out}
