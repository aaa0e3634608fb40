-- wake: scheduled jobs become available now (a workflow's dependency finished), waking idle
-- workers as an enqueue does; jobs in any other state are left alone.
-- KEYS: the queues to look in (each id is looked up in each, as cancel.lua does).
-- ARGV[4..]: ids; a repeated id counts once. Returns {moved, missing ids, errors}
local good, errs = check_all()
local moved, missing, seen, woken = 0, {}, {}, {}
for a = 4, #ARGV do
  local id = ARGV[a]
  if not seen[id] then
    seen[id] = true
    local found = false
    for _, qi in ipairs(good) do
      local base = KEYS[qi]
      local key = base .. 'job:' .. id
      local f = read(key, 'priority')
      if f then
        found = true
        if f[1] == 'scheduled' then
          make_available(base, key, id, 'scheduled', f[2], NOW)
          woken[qi] = (woken[qi] or 0) + 1
          moved = moved + 1
        end
        break
      end
    end
    if not found then missing[#missing + 1] = id end
  end
end
for qi, count in pairs(woken) do wake(KEYS[qi], count) end
return {moved, missing, errs}
