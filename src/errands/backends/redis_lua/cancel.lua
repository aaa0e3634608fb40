-- cancel: scheduled/available -> cancelled; running -> asked to stop (the heartbeat tells its
-- worker); finished -> nothing. KEYS: every known queue (a job is looked up in each).
-- ARGV[4..]: ids. Returns {results (one per id), errors}
local good, errs = check_all()
local results = {}
for a = 4, #ARGV do
  local id, result = ARGV[a], 'not_found'
  for _, qi in ipairs(good) do
    local base = KEYS[qi]
    local key = base .. 'job:' .. id
    local f = read(key)
    if f then
      if f[1] == 'scheduled' or f[1] == 'available' then
        finish(base, key, id, f[1], 'cancelled', nil)
        result = 'cancelled'
      elseif f[1] == 'running' then
        redis.call('HSET', key, 'cancel', 1)
        result = 'requested'
      else
        result = 'finished'
      end
      break
    end
  end
  results[#results + 1] = result
end
return {results, errs}
