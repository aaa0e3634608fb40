-- release: put owned claims back, the attempt not counted: available (graceful shutdown), or
-- scheduled `delay` seconds from now (a snooze: over a limit, waiting on a workflow).
-- ARGV[4]: delay seconds; ARGV[5..]: 3 per claim: queue index, id, token
-- Returns {released count, errors}
local delay = tonumber(ARGV[4]) or 0
local good, errs = check_all()
local sound = {}
for _, qi in ipairs(good) do sound[qi] = true end
local released, woken = 0, {}
for a = 5, #ARGV, 3 do
  local qi, id, token = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  local base = KEYS[qi]
  local key = base .. 'job:' .. id
  local f = sound[qi] and read(key, 'token', 'priority', 'attempts')
  if f and f[1] == 'running' and f[2] == token then
    redis.call('HSET', key, 'attempts', math.max((tonumber(f[4]) or 1) - 1, 0))
    if delay > 0 then
      schedule(base, key, id, 'running', NOW + delay)
    else
      make_available(base, key, id, 'running', f[3], NOW)
      woken[qi] = (woken[qi] or 0) + 1
    end
    released = released + 1
  end
end
for qi, count in pairs(woken) do wake(KEYS[qi], count) end
return {released, errs}
