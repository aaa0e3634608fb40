-- slot_usage: live holders per limit key (see acquire_slots.lua), dropping lapsed holds and
-- keys on the way. KEYS[1]: L. Returns flat {key, holders, ...}, keys with none left out.
local L = KEYS[1]
redis.call('ZREMRANGEBYSCORE', L .. 'slots', '-inf', NOW)
local out = {}
for _, key in ipairs(redis.call('ZRANGE', L .. 'slots', 0, -1)) do
  local zkey = L .. 'slot:' .. key
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', NOW)
  local n = redis.call('ZCARD', zkey)
  if n > 0 then
    out[#out + 1] = key
    out[#out + 1] = n
  else
    redis.call('ZREM', L .. 'slots', key)
  end
end
return out
