-- release_slots: give back held slots (see acquire_slots.lua for the keys).
-- KEYS[1]: L. ARGV[4..]: 2 per hold: key, holder; unknown pairs are ignored. Returns 0.
local L = KEYS[1]
for a = 4, #ARGV, 2 do
  local key = ARGV[a]
  local zkey = L .. 'slot:' .. key
  if redis.call('ZREM', zkey, ARGV[a + 1]) == 1 and redis.call('ZCARD', zkey) == 0 then
    redis.call('DEL', zkey)
    redis.call('ZREM', L .. 'slots', key)
  end
end
return 0
