-- purge: delete jobs in one finished state that finished before a cutoff, in bounded batches
-- so no single call blocks Redis for long (the caller repeats while `more`).
-- ARGV[4..6]: state, cutoff (epoch seconds), batch. Returns {deleted, more, errors}
local state, cutoff, batch = ARGV[4], ARGV[5], tonumber(ARGV[6])
local good, errs = check_all()
local deleted, more = 0, 0
if TERMINAL[state] then
  for _, qi in ipairs(good) do
    local base = KEYS[qi]
    local old = redis.call('ZRANGEBYSCORE', base .. state, '-inf', '(' .. cutoff, 'LIMIT', 0, batch)
    for _, id in ipairs(old) do drop(base, id, state) end
    deleted = deleted + #old
    if #old == batch then more = 1 end
  end
end
return {deleted, more, errs}
