-- get_many: the records of many ids in one call, each looked up in every queue given (read only).
-- KEYS: the queues. ARGV[4..]: ids; a repeated id is read once.
-- Returns {found, missing ids}; found is flat, 3 per record: queue index, id, HGETALL reply.
-- A key that isn't a hash is passed over, as a missing record.
local found, missing, seen = {}, {}, {}
for a = 4, #ARGV do
  local id = ARGV[a]
  if not seen[id] then
    seen[id] = true
    local hit = false
    for qi, base in ipairs(KEYS) do
      local r = redis.pcall('HGETALL', base .. 'job:' .. id)
      if type(r) == 'table' and not r.err and #r > 0 then
        found[#found + 1] = qi
        found[#found + 1] = id
        found[#found + 1] = r
        hit = true
        break
      end
    end
    if not hit then missing[#missing + 1] = id end
  end
end
return {found, missing}
