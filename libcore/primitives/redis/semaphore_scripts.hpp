// The Lua of semaphores and locks on Redis (see redis_semaphores.hpp and docs/DECISIONS.md).
// Each script is the common prelude followed by its own body; every one runs atomically, reads
// the time from Redis (TIME) only, ends leases and forgets dead waiters first, and sets the idle
// expiry of the primitive's keys last.
//
// KEYS (every script):
//   1 meta     hash: permits, gen (an id of this incarnation: a waiter notices a delete and
//              re-create), seq (arrival counter of the line)
//   2 holders  zset: permit id -> lease end (ms, Redis time)
//   3 grants   hash: permit id -> "<token> <count> <holder>"
//   4 line     zset: waiter id -> arrival seq (FIFO order)
//   5 beats    zset: waiter id -> heartbeat end (ms): a waiter whose replica stopped refreshing
//              it is forgotten then
//   6 registry zset (global): "<kind>:<name>" -> when its keys expire (inf: never); its live
//              size is the number of primitives, for --max-primitives
//   7 fencing  string (global): the one counter every fencing token comes from (INCR)
// ARGV 1..3 (every script): registry member, wake channel, idle ms (0: never forget).
#pragma once

namespace gatherd::core::semaphore_lua {

inline constexpr const char* prelude = R"lua(
local meta, holders, grants, line, beats, registry, fencing =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local member, channel, idle_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function record(token, count, holder)
  return string.format('%d %d %s', token, count, holder)
end
local function parse(text)
  local token, count, holder = string.match(text, '^(%d+) (%d+) (.*)$')
  return tonumber(token), tonumber(count), holder
end

-- Ends the leases that ran out and forgets the waiters whose heartbeat did; true if either
-- happened (someone in line may be served now).
local function purge()
  local changed = false
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', holders, '-inf', now)) do
    redis.call('HDEL', grants, id)
    redis.call('ZREM', holders, id)
    changed = true
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', beats, '-inf', now)) do
    redis.call('ZREM', line, id)
    redis.call('ZREM', beats, id)
    changed = true
  end
  return changed
end

local function available()
  local n = tonumber(redis.call('HGET', meta, 'permits')) - redis.call('ZCARD', holders)
  if n < 0 then return 0 end
  return n
end

-- Tells every replica which waiters may take a permit now: the first `available` in line.
local function wake()
  local n = available()
  if n == 0 then return end
  local heads = redis.call('ZRANGE', line, 0, n - 1)
  if #heads > 0 then redis.call('PUBLISH', channel, table.concat(heads, ' ')) end
end

-- The keys live until idle_ms after the last lease or waiter heartbeat ends (any call restarts
-- that clock); the registry scores the primitive with the same instant.
local function touch()
  local horizon = now
  for _, zset in ipairs({holders, beats}) do
    local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) > horizon then horizon = tonumber(last[2]) end
  end
  if idle_ms > 0 then
    local at = horizon + idle_ms
    for _, key in ipairs({meta, holders, grants, line, beats}) do
      redis.call('PEXPIREAT', key, at)
    end
    redis.call('ZADD', registry, at, member)
  else
    for _, key in ipairs({meta, holders, grants, line, beats}) do redis.call('PERSIST', key) end
    redis.call('ZADD', registry, '+inf', member)
  end
end

-- Makes the primitive, unless --max-primitives are alive: then the refusal (with the ms until
-- the first of them expires, -1 if none will).
local function create(permits, gen, max_primitives)
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', now)
  if redis.call('ZCARD', registry) >= max_primitives then
    local first = redis.call('ZRANGE', registry, 0, 0, 'WITHSCORES')
    local retry = -1
    if first[2] and first[2] ~= 'inf' then retry = math.max(1, tonumber(first[2]) - now) end
    return {'too_many_primitives', retry}
  end
  redis.call('HSET', meta, 'permits', permits, 'gen', gen, 'seq', 0)
  return nil
end

local function info(tag)
  local out = {tag, now, tonumber(redis.call('HGET', meta, 'permits')),
               redis.call('ZCARD', line)}
  local all = redis.call('HGETALL', grants)
  for i = 1, #all, 2 do
    local token, count, holder = parse(all[i + 1])
    local ends = tonumber(redis.call('ZSCORE', holders, all[i]))
    table.insert(out, all[i])
    table.insert(out, holder)
    table.insert(out, token)
    table.insert(out, count)
    table.insert(out, ends)
  end
  return out
end
)lua";

// ARGV 4 create (1: a lock made on first use), 5 gen for a new one, 6 expected gen ('' on the
// first attempt; a retry fails as 'gone' if the primitive was deleted meanwhile),
// 7 max primitives, 8 permit id for a new grant, 9 holder, 10 ttl ms, 11 reentrant (1/0),
// 12 waiter id, 13 join (1: stay in line if not served), 14 heartbeat ms, 15 max waiters.
// Answers {'granted', id, token, count, ends, remaining ms, gen}, {'waiting', ms until the next
// lease ends or -1, gen}, {'busy'}, {'not_found'}, {'gone'}, {'too_many_primitives', retry ms},
// {'too_many_waiters', waiting}.
inline constexpr const char* acquire = R"lua(
local gen = redis.call('HGET', meta, 'gen')
if not gen then
  if ARGV[6] ~= '' then return {'gone'} end
  if ARGV[4] ~= '1' then return {'not_found'} end
  local refused = create(1, ARGV[5], tonumber(ARGV[7]))
  if refused then return refused end
  gen = ARGV[5]
elseif ARGV[6] ~= '' and ARGV[6] ~= gen then
  return {'gone'}
end
local changed = purge()
local id, holder, ttl, waiter = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[12]

local function leave_line()
  redis.call('ZREM', line, waiter)
  redis.call('ZREM', beats, waiter)
end

if ARGV[11] == '1' then  -- the holder again: the same permit, one more count
  local all = redis.call('HGETALL', grants)
  for i = 1, #all, 2 do
    local token, count, who = parse(all[i + 1])
    if who == holder then
      local ends = math.max(tonumber(redis.call('ZSCORE', holders, all[i])), now + ttl)
      redis.call('ZADD', holders, ends, all[i])
      redis.call('HSET', grants, all[i], record(token, count + 1, who))
      leave_line()
      if changed then wake() end
      touch()
      return {'granted', all[i], token, count + 1, ends, ends - now, gen}
    end
  end
end

-- FIFO: served only if fewer waiters are ahead than permits are free (a newcomer is behind all).
local rank = redis.call('ZRANK', line, waiter)
local ahead = rank or redis.call('ZCARD', line)
if available() > ahead then
  local token = redis.call('INCR', fencing)
  redis.call('HSET', grants, id, record(token, 1, holder))
  redis.call('ZADD', holders, now + ttl, id)
  leave_line()
  if changed then wake() end
  touch()
  return {'granted', id, token, 1, now + ttl, ttl, gen}
end

local waiting = rank ~= nil
if not rank then
  if ahead >= tonumber(ARGV[15]) then
    if changed then wake() end
    touch()
    return {'too_many_waiters', ahead}
  end
  if ARGV[13] == '1' then
    redis.call('ZADD', line, redis.call('HINCRBY', meta, 'seq', 1), waiter)
    waiting = true
  end
end
if waiting then redis.call('ZADD', beats, now + tonumber(ARGV[14]), waiter) end
if changed then wake() end
touch()
if not waiting then return {'busy'} end
local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
local next_end = -1
if first[2] then next_end = tonumber(first[2]) - now end
return {'waiting', next_end, gen}
)lua";

// A waiter gives up (timeout, cancelled caller): ARGV 4 waiter id, 5 the permit id it would have
// been granted (given back if it was, in the instant the caller left). Answers 1.
inline constexpr const char* leave = R"lua(
if redis.call('EXISTS', meta) == 0 then return 0 end
purge()
redis.call('ZREM', line, ARGV[4])
redis.call('ZREM', beats, ARGV[4])
if redis.call('HDEL', grants, ARGV[5]) == 1 then redis.call('ZREM', holders, ARGV[5]) end
wake()  -- it may have been the head told to take a permit: the next one is now
touch()
return 1
)lua";

// ARGV 4 permit id. Answers the acquisitions it still holds (0: freed), -1 when not held.
inline constexpr const char* release = R"lua(
if redis.call('EXISTS', meta) == 0 then return -1 end
local changed = purge()
local text = redis.call('HGET', grants, ARGV[4])
if not text then
  if changed then wake() end
  touch()
  return -1
end
local token, count, holder = parse(text)
if count > 1 then
  redis.call('HSET', grants, ARGV[4], record(token, count - 1, holder))
  if changed then wake() end
  touch()
  return count - 1
end
redis.call('HDEL', grants, ARGV[4])
redis.call('ZREM', holders, ARGV[4])
wake()
touch()
return 0
)lua";

// ARGV 4 permit id, 5 ttl ms. Answers {'held', token, count, holder, ends, remaining ms} or
// {'not_held'} (an expired lease cannot be revived).
inline constexpr const char* keepalive = R"lua(
if redis.call('EXISTS', meta) == 0 then return {'not_held'} end
local changed = purge()
local text = redis.call('HGET', grants, ARGV[4])
if not text then
  if changed then wake() end
  touch()
  return {'not_held'}
end
local token, count, holder = parse(text)
local ttl = tonumber(ARGV[5])
redis.call('ZADD', holders, 'XX', now + ttl, ARGV[4])
if changed then wake() end
touch()
return {'held', token, count, holder, now + ttl, ttl}
)lua";

// PUT: ARGV 4 permits ('' for a lock: made if absent, else left as it is), 5 gen for a new one,
// 6 max primitives. Answers info (see `info`) or {'too_many_primitives', retry ms}.
inline constexpr const char* put = R"lua(
local permits = ARGV[4] == '' and 1 or tonumber(ARGV[4])
local changed = false
if redis.call('EXISTS', meta) == 0 then
  local refused = create(permits, ARGV[5], tonumber(ARGV[6]))
  if refused then return refused end
else
  changed = purge()
  if ARGV[4] ~= '' then
    redis.call('HSET', meta, 'permits', permits)
    changed = true  -- more permits may serve waiters
  end
end
if changed then wake() end
touch()
return info('info')
)lua";

// GET: answers info, or {'absent'} (nothing is made by a read).
inline constexpr const char* get = R"lua(
if redis.call('EXISTS', meta) == 0 then return {'absent'} end
if purge() then wake() end
touch()
return info('info')
)lua";

// DELETE: its waiters on every replica re-check, find it gone and give up. Answers 1, or 0 if
// it did not exist.
inline constexpr const char* remove = R"lua(
if redis.call('EXISTS', meta) == 0 then return 0 end
redis.call('DEL', meta, holders, grants, line, beats)
redis.call('ZREM', registry, member)
redis.call('PUBLISH', channel, '*')
return 1
)lua";

}  // namespace gatherd::core::semaphore_lua
