-- settle: apply the worker's outcomes, each only while its token still owns the job, so a
-- late or replayed answer changes nothing (it comes back as fenced).
-- ARGV[4..]: 7 per outcome: queue index, id, token, state, result (""/"="..), error (""/"="..),
--            retry_in seconds
-- Returns {fenced ids, errors}
local good, errs = check_all()
local sound = {}
for _, qi in ipairs(good) do sound[qi] = true end
local fenced, woken = {}, {}
for a = 4, #ARGV, 7 do
  local qi, id, token, state = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local base = KEYS[qi]
  local key = base .. 'job:' .. id
  local f = sound[qi] and read(key, 'token', 'priority')
  if not f or f[1] ~= 'running' or f[2] ~= token or not (TERMINAL[state] or state == 'scheduled') then
    fenced[#fenced + 1] = id
  else
    local result, err = opt(ARGV[a + 4]), opt(ARGV[a + 5])
    if err then redis.call('HSET', key, 'error', err) end
    if state == 'succeeded' then
      if result then redis.call('HSET', key, 'result', result) else redis.call('HDEL', key, 'result') end
    end
    if TERMINAL[state] then
      finish(base, key, id, 'running', state, nil)
    else
      local delay = tonumber(ARGV[a + 6]) or 0
      if delay <= 0 then
        make_available(base, key, id, 'running', f[3], NOW)
        woken[qi] = (woken[qi] or 0) + 1
      else
        schedule(base, key, id, 'running', NOW + delay)
      end
    end
  end
end
for qi, count in pairs(woken) do wake(KEYS[qi], count) end
return {fenced, errs}
