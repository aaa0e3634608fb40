-- take_rate: one step of GCRA (the generic cell rate algorithm; base.gcra in Python does the
-- same arithmetic) on "<L>rate:<key>", which holds the theoretical arrival time (TAT). It
-- expires at the TAT, since a TAT in the past means the same as none: the key purges itself.
-- KEYS[1]: L. ARGV[4..6]: key, limit, period seconds.
-- Returns {1, "0"} when a start is granted (the new TAT stored), else {0, seconds to wait} (as
-- text: Lua numbers reach Redis as integers); a refusal stores nothing.
local key = KEYS[1] .. 'rate:' .. ARGV[4]
local limit, period = tonumber(ARGV[5]), tonumber(ARGV[6])
local tat = redis.pcall('GET', key)
tat = type(tat) == 'string' and tonumber(tat) or nil -- none, or junk written by hand
local start = NOW
if tat and tat > NOW then start = tat end
local new_tat = start + period / limit
if new_tat - NOW <= period + 1e-9 then
  redis.call('SET', key, string.format('%.6f', new_tat))
  redis.call('PEXPIREAT', key, math.ceil(new_tat * 1000) + 1)
  return {1, '0'}
end
return {0, string.format('%.6f', new_tat - period - NOW)}
