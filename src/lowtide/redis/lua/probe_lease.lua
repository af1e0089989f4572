-- The breaker's probe lease, held by one hub (KEYS[1] holds the holder's instance name).
-- ARGV: holder, px. With px > 0 the lease is extended to px ms, with px = 0 it is released;
-- either only while ARGV[1] still holds it. Returns {1 if done else 0, inner}.
local inner = {'get'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, inner}
end
local px = tonumber(ARGV[2])
if px > 0 then
  redis.call('PEXPIRE', KEYS[1], px)
  inner[#inner + 1] = 'pexpire'
else
  redis.call('DEL', KEYS[1])
  inner[#inner + 1] = 'del'
end
return {1, inner}
