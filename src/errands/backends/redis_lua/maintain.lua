-- maintain: what every worker does about once a second, safe to run concurrently because each
-- run is atomic: purge finished jobs past their retention, promote due scheduled jobs, and
-- reclaim expired leases (requeue, or fail once the attempts are used up).
-- ARGV[4]: limit per queue and step; ARGV[5..7]: retention seconds of succeeded, failed,
-- cancelled jobs (0: kept until purged by hand)
-- Returns {promoted, requeued, failed, skipped, purged, errors}
local limit = tonumber(ARGV[4])
local keep = {succeeded = tonumber(ARGV[5]), failed = tonumber(ARGV[6]), cancelled = tonumber(ARGV[7])}
local good, errs = check_all()
local promoted, requeued, failed, skipped, purged = 0, 0, 0, 0, 0

for _, qi in ipairs(good) do
  local base = KEYS[qi]
  -- purge first: it frees memory, which matters most when Redis is at maxmemory
  for state, age in pairs(keep) do
    if age > 0 then
      local old = redis.call('ZRANGEBYSCORE', base .. state, '-inf', '(' .. fmt(NOW - age), 'LIMIT', 0, limit)
      for _, id in ipairs(old) do drop(base, id, state) end
      purged = purged + #old
    end
  end

  local moved, gone = promote_due(base, limit)
  promoted, skipped = promoted + moved, skipped + gone
  local woken = moved

  local expired = redis.call('ZRANGEBYSCORE', base .. 'running', '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    local key = base .. 'job:' .. id
    local f = read(key, 'attempts', 'max_attempts', 'priority', 'cancel')
    if not f then
      unindex(base, id, 'running')
      skipped = skipped + 1
    elseif f[1] ~= 'running' then
      corrupt(base, key, id, 'running', misplaced(f[1], 'running'))
    else
      local attempts, most = tonumber(f[2]) or 0, tonumber(f[3]) or 0
      local err = 'worker lost while running (attempt ' .. attempts .. '/' .. most .. ')'
      if f[5] == '1' then
        -- a cancel request outlives the worker that was asked to stop: the job ends cancelled
        finish(base, key, id, 'running', 'cancelled', err)
      elseif attempts >= most then
        finish(base, key, id, 'running', 'failed', err)
        failed = failed + 1
      else
        redis.call('HSET', key, 'error', err)
        make_available(base, key, id, 'running', f[4], NOW)
        requeued = requeued + 1
        woken = woken + 1
      end
    end
  end
  wake(base, woken)
end
return {promoted, requeued, failed, skipped, purged, errs}
