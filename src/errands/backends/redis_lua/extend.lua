-- extend: the heartbeat. Pushes the lease of every claim its token still owns.
-- ARGV[4]: lease seconds; ARGV[5..]: 3 per claim: queue index, id, token
-- Returns {lost ids, ids whose cancel was requested, errors}
local lease = tonumber(ARGV[4])
local good, errs = check_all()
local sound = {}
for _, qi in ipairs(good) do sound[qi] = true end
local lost, cancel = {}, {}
for a = 5, #ARGV, 3 do
  local qi, id, token = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  local base = KEYS[qi]
  local f = sound[qi] and read(base .. 'job:' .. id, 'token', 'cancel')
  if not f or f[1] ~= 'running' or f[2] ~= token then
    lost[#lost + 1] = id
  else
    redis.call('ZADD', base .. 'running', NOW + lease, id)
    if f[3] == '1' then cancel[#cancel + 1] = id end
  end
end
return {lost, cancel, errs}
