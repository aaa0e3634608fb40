-- pause: set (ARGV[4] = "1") or clear (ARGV[4] = "0") each queue's paused flag, "<base>paused".
-- Claims skip a flagged queue and enqueues push it no wake-up tokens, so a pause drops the
-- tokens it has and a resume pushes some for the jobs it held back.
-- KEYS: the queues. Returns {changed count, errors}
local pause = ARGV[4] == '1'
local changed, errs = 0, {}
for qi, base in ipairs(KEYS) do
  if pause then
    changed = changed + redis.call('SETNX', base .. 'paused', '1')
    local e = check(base)
    if e then
      errs[#errs + 1] = qi
      errs[#errs + 1] = e
    else
      redis.call('DEL', base .. 'wake')
    end
  elseif redis.call('DEL', base .. 'paused') == 1 then
    changed = changed + 1
    local e = check(base)
    if e then
      errs[#errs + 1] = qi
      errs[#errs + 1] = e
    else
      wake(base, redis.call('ZCARD', base .. 'available'))
    end
  end
end
return {changed, errs}
