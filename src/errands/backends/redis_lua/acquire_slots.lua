-- acquire_slots: concurrency limits. Each limit key's holders live in a sorted set
-- "<L>slot:<key>" (holder -> when its hold lapses, by the server's clock); "<L>slots" indexes
-- those keys by their latest lapse, for slot_usage. Both vanish on their own once every hold
-- lapsed (PEXPIREAT), so nothing needs purging.
-- KEYS[1]: L, the limits base "<prefix>:{:limits}:" (one hash tag: one script, one slot).
-- ARGV[4]: ttl seconds; ARGV[5..]: 3 per request: key, holder, limit.
-- Returns 1 (held) or 0 (every slot taken) per request, in order.
local L = KEYS[1]
local ttl = tonumber(ARGV[4]) or 0
local out, touched = {}, {}
for a = 5, #ARGV, 3 do
  local key, holder, limit = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]) or 0
  local zkey = L .. 'slot:' .. key
  if not touched[key] then
    touched[key] = true
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', NOW) -- holds not renewed in time
  end
  if redis.call('ZSCORE', zkey, holder) or redis.call('ZCARD', zkey) < limit then
    redis.call('ZADD', zkey, NOW + ttl, holder)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
for key in pairs(touched) do
  local zkey = L .. 'slot:' .. key
  local last = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('ZREM', L .. 'slots', key)
  else
    redis.call('ZADD', L .. 'slots', last[2], key)
    redis.call('PEXPIREAT', zkey, math.ceil(tonumber(last[2]) * 1000) + 1000)
  end
end
return out
