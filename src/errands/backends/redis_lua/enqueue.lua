-- enqueue: store a batch of new jobs, all or none.
-- ARGV[4..]: 13 per job: queue index, id, name, queue, args, kwargs, max_attempts, priority,
--            run_at ("" or "=" .. epoch seconds), delay, unique_key ("" or "=" .. key), timeout,
--            meta ("" or "=" .. JSON object text)
-- Returns {1, {id, created, ...}} or {0, message} when a queue's keys are unusable.
local good, errs = check_all()
if #errs > 0 then return {0, errs[2]} end

local out, woken = {}, {}
for a = 4, #ARGV, 13 do
  local qi = tonumber(ARGV[a])
  local base = KEYS[qi]
  local id = ARGV[a + 1]
  local key = base .. 'job:' .. id
  local uk = opt(ARGV[a + 10])
  local holder = nil
  if uk then
    holder = redis.call('HGET', base .. 'unique', uk)
    -- a key whose holder is gone or finished (its record expired early) no longer blocks
    if holder and not ACTIVE[redis.call('HGET', base .. 'job:' .. holder, 'state') or ''] then
      holder = nil
    end
  end
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 0
  elseif holder then
    out[#out + 1] = holder
    out[#out + 1] = 0
  else
    local run_at = tonumber(opt(ARGV[a + 8]) or '') or (NOW + (tonumber(ARGV[a + 9]) or 0))
    local state = 'available'
    if run_at > NOW then state = 'scheduled' end
    redis.call('HSET', key, 'id', id, 'name', ARGV[a + 2], 'queue', ARGV[a + 3], 'args', ARGV[a + 4],
      'kwargs', ARGV[a + 5], 'state', state, 'attempts', 0, 'max_attempts', ARGV[a + 6],
      'priority', ARGV[a + 7], 'run_at', fmt(run_at), 'created_at', fmt(NOW))
    if ARGV[a + 11] ~= '' then redis.call('HSET', key, 'timeout', ARGV[a + 11]) end
    local meta = opt(ARGV[a + 12])
    if meta then redis.call('HSET', key, 'meta', meta) end
    if uk then
      redis.call('HSET', key, 'unique_key', uk)
      redis.call('HSET', base .. 'unique', uk, id)
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
