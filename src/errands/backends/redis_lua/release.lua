-- release: graceful shutdown puts owned claims back to available, the attempt not counted.
-- ARGV[4..]: 3 per claim: queue index, id, token
-- Returns {released count, errors}
local good, errs = check_all()
local sound = {}
for _, qi in ipairs(good) do sound[qi] = true end
local released, woken = 0, {}
for a = 4, #ARGV, 3 do
  local qi, id, token = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  local base = KEYS[qi]
  local key = base .. 'job:' .. id
  local f = sound[qi] and read(key, 'token', 'priority', 'attempts')
  if f and f[1] == 'running' and f[2] == token then
    redis.call('HSET', key, 'attempts', math.max((tonumber(f[4]) or 1) - 1, 0))
    make_available(base, key, id, 'running', f[3], NOW)
    woken[qi] = (woken[qi] or 0) + 1
    released = released + 1
  end
end
for qi, count in pairs(woken) do wake(KEYS[qi], count) end
return {released, errs}
