-- retry: failed or cancelled jobs back to available, attempts kept and max_attempts raised so
-- one more attempt is allowed. A job whose unique key another unfinished job holds now stays.
-- KEYS: every known queue. ARGV[4..]: ids. Returns {moved count, errors}
local good, errs = check_all()
local moved = 0
for a = 4, #ARGV do
  local id = ARGV[a]
  for _, qi in ipairs(good) do
    local base = KEYS[qi]
    local key = base .. 'job:' .. id
    local f = read(key, 'unique_key', 'attempts', 'max_attempts', 'priority')
    if f then
      local uk = f[2]
      local holder = uk and redis.call('HGET', base .. 'unique', uk)
      -- only another unfinished job holding the key blocks the retry (a stale entry does not)
      if holder == id or (holder and not ACTIVE[redis.call('HGET', base .. 'job:' .. holder, 'state') or '']) then
        holder = nil
      end
      if (f[1] == 'failed' or f[1] == 'cancelled') and not holder then
        local attempts = tonumber(f[3]) or 0
        redis.call('PERSIST', key)
        redis.call('HSET', key, 'cancel', 0, 'max_attempts', math.max(tonumber(f[4]) or 1, attempts + 1))
        redis.call('HDEL', key, 'finished_at')
        if uk then redis.call('HSET', base .. 'unique', uk, id) end
        make_available(base, key, id, f[1], f[5], NOW)
        wake(base, 1)
        moved = moved + 1
      end
      break
    end
  end
end
return {moved, errs}
