"""Lua scripts of the Redis store.

Every script that ends a session or revokes a token also publishes a revocation event in
the same atomic step, which keeps the servers' local revocation views current (see
`authsvc.revocation_view`): with PUBLISH on one Redis and Sentinel, with SPUBLISH to the
user's slot's channel on a Cluster (`authsvc.revocation_channels`); `with_publish` sets
which. Each script touches only the keys of one user (one hash tag), or of one login
failure budget (its own hash tag), so every script stays in one slot of a Redis Cluster.

Times are passed in from the caller's clock (milliseconds or seconds as named), never read
from Redis, so the logic follows the injected clock; Redis TTLs only collect garbage.
"""


def with_publish(script: str, command: str) -> str:
    """`script` publishing with `command` ('PUBLISH' or 'SPUBLISH')."""
    return f"local PUBLISH = '{command}'\n{script}"


# Login attempts are counted *before* the password is checked, so parallel guesses all count,
# and an attempt in flight is kept apart from a confirmed failure: a sorted set of attempt
# ids (score: the time its lease ends) beside each failure count. An attempt is admitted only
# while the attempts in flight could all fail without passing the limit; a right password
# gives its place back at once, a wrong one becomes a failure. So parallel wrong guesses
# reach the check at most `limit` times, and any number of parallel right ones get through
# (they wait for places, not for a throttle). An attempt whose lease ends unsettled (its
# instance died) counts as a failure. Each budget's keys share one hash tag: the per-name
# scripts stay in the user's slot, a source's or the global budget in their own.
_ATTEMPTS = """
local function lapsed_attempts(trying, now)
  local lost = redis.call('ZCOUNT', trying, '-inf', now)
  if lost > 0 then redis.call('ZREMRANGEBYSCORE', trying, '-inf', now) end
  return lost
end
"""

# The per-name count of failures in a row: after max_failures the name is throttled for
# base_ms, doubling with each further failure up to max_ms; a right password resets it.
_NAME_FAILURES = """
local function add_name_failures(fails, k, now, maxf, base, maxd, ttl)
  local n = redis.call('HINCRBY', fails, 'n', k)
  if n >= maxf then
    local delay = math.min(base * math.pow(2, n - maxf), maxd)
    redis.call('HSET', fails, 'until', tostring(math.floor(now + delay)))
  end
  redis.call('PEXPIRE', fails, ttl)
  return n
end
"""

# KEYS: user, fails, trying. ARGV: now_ms, max_failures, base_ms, max_ms, fails_ttl_ms,
# attempt id, lease_until_ms.
# Returns {'throttled', retry_after_ms} | {'busy'} (every place is held by an attempt in
# flight: wait for one to settle) | {'ok', pwhash, disabled, scopes, pwver, kind}.
LOGIN_BEGIN = (
    _ATTEMPTS
    + _NAME_FAILURES
    + """
local now, maxf = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = lapsed_attempts(KEYS[3], now)
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if lost > 0 then
  n = add_name_failures(KEYS[2], lost, now, maxf, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
end
local until_ms = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
if until_ms > now then
  return {'throttled', tostring(until_ms - now)}
end
-- Once a throttle has lapsed, one attempt at a time: its failure throttles again (longer).
if redis.call('ZCARD', KEYS[3]) >= math.max(maxf - n, 1) then
  return {'busy'}
end
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local u = redis.call('HMGET', KEYS[1], 'pwhash', 'disabled', 'scopes', 'pwver', 'kind', 'auds')
return {'ok', u[1] or '', u[2] or '', u[3] or '', u[4] or '', u[5] or '', u[6] or ''}
"""
)

# KEYS: fails, trying. ARGV: now_ms, attempt id, outcome ('passed' | 'failed' |
# 'abandoned'), max_failures, base_ms, max_ms, fails_ttl_ms.
# 'passed' resets the failure count; 'failed' adds one unless the lease had already lapsed
# (then it was counted then); 'abandoned' (never checked) only gives the place back.
LOGIN_SETTLE = (
    _NAME_FAILURES
    + """
local held = redis.call('ZREM', KEYS[2], ARGV[2])
if ARGV[3] == 'passed' then
  redis.call('DEL', KEYS[1])
elseif ARGV[3] == 'failed' and held == 1 then
  add_name_failures(KEYS[1], 1, tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]),
    tonumber(ARGV[6]), ARGV[7])
end
return held
"""
)

# A budget of failures that refills continuously (a leaky bucket): `limit` failures at
# once, then one more each window/limit. `level` is the failures not yet forgotten as of
# `at` (ms); a right password does not lower it (a caller holding one good account must not
# be able to reset the budget between guesses); it only gives its attempt's place back.
_BUDGET_LEVEL = """
local function budget_level(fails, now, rate)
  local b = redis.call('HMGET', fails, 'level', 'at')
  local level, at = tonumber(b[1]) or 0, tonumber(b[2]) or now
  if now > at then
    level = math.max(0, level - (now - at) * rate)
    at = now
  end
  return level, at
end
local function store_budget_level(fails, level, at, ttl)
  redis.call('HSET', fails, 'level', tostring(level), 'at', tostring(at))
  redis.call('PEXPIRE', fails, ttl)
end
"""

# KEYS: fails, trying. ARGV: now_ms, limit, window_ms, attempt id, lease_until_ms, ttl_ms.
# Returns {'throttled', retry_after_ms} | {'busy'} | {'ok'}.
BUDGET_BEGIN = (
    _ATTEMPTS
    + _BUDGET_LEVEL
    + """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate = limit / tonumber(ARGV[3])
local level, at = budget_level(KEYS[1], now, rate)
local lost = lapsed_attempts(KEYS[2], now)
if lost > 0 then
  level = level + lost
  store_budget_level(KEYS[1], level, at, ARGV[6])
end
if level + 1 > limit then
  return {'throttled', tostring(math.ceil((level + 1 - limit) / rate))}
end
if level + redis.call('ZCARD', KEYS[2]) + 1 > limit then
  return {'busy'}
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {'ok'}
"""
)

# KEYS: fails, trying. ARGV: now_ms, limit, window_ms, attempt id, outcome, ttl_ms.
# A 'failed' attempt adds one to the level (unless its lease had lapsed and it was counted
# then); 'passed' and 'abandoned' only give the place back.
BUDGET_SETTLE = (
    _BUDGET_LEVEL
    + """
local held = redis.call('ZREM', KEYS[2], ARGV[4])
if ARGV[5] == 'failed' and held == 1 then
  local now = tonumber(ARGV[1])
  local level, at = budget_level(KEYS[1], now, tonumber(ARGV[2]) / tonumber(ARGV[3]))
  store_budget_level(KEYS[1], level + 1, at, ARGV[6])
end
return held
"""
)

# KEYS: user, fails, sessions, session. ARGV: pwver, digest, exp_s, abs_s, scope, aud, cid,
# ttl_ms, sid, now_s (the session's `created`, for the admin API). Creates the session only
# if the account is still enabled and its password unchanged since it was checked; resets
# the failure count; prunes some ended sessions.
LOGIN_FINISH = """
redis.call('DEL', KEYS[2])
local u = redis.call('HMGET', KEYS[1], 'disabled', 'pwver')
if not u[2] or u[1] == '1' or u[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[4], 'cur', ARGV[2], 'exp', ARGV[3], 'abs', ARGV[4],
  'scope', ARGV[5], 'aud', ARGV[6], 'cid', ARGV[7], 'created', ARGV[10])
redis.call('PEXPIRE', KEYS[4], ARGV[8])
local prefix = string.sub(KEYS[4], 1, #KEYS[4] - #ARGV[9])
-- Prune a bounded random sample of ended sessions: O(1) per login however many piled up.
for _, sid in ipairs(redis.call('SRANDMEMBER', KEYS[3], 16)) do
  if redis.call('EXISTS', prefix .. sid) == 0 then redis.call('SREM', KEYS[3], sid) end
end
redis.call('SADD', KEYS[3], ARGV[9])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[8]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return 1
"""

# Space-separated words of a stored list, single-spaced: how Python's str.split() and
# " ".join() see it, so a stored list compares equal to the one the caller read.
_WORDS = """
local function words(text)
  local t = {}
  for w in string.gmatch(text or '', '%S+') do t[#t + 1] = w end
  return table.concat(t, ' ')
end
"""

# KEYS: session, user, sessions. ARGV: now_ms, presented digest, new digest, grace_until_ms,
# grace blob, new exp_s, ttl_ms, sid, keep_retired, channel, session-ended event, the
# session's grant (scope, aud, cid) and the account's allowed scopes and audiences the new
# access token was minted from, and whether the session's audience is still allowed ('1').
# Returns {'rotated'} | {'grace', blob} | {'reuse'} (session ended) | {'ended'} (expired,
# disabled or audience no longer allowed: session ended) | {'invalid'} (not a token of this
# session: nothing changed) | {'regrant'} (the grant or the account's limits passed in are
# not the stored ones: nothing changed).
ROTATE = (
    _WORDS
    + """
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'gu', 'gb', 'old', 'exp', 'abs',
  'scope', 'aud', 'cid')
if not s[1] then return {'invalid'} end
local u = redis.call('HMGET', KEYS[2], 'disabled', 'scopes', 'auds')
-- The caller minted from what it believed the session and the account allow; privileges
-- taken away since must not be minted into a new token.
if s[8] ~= ARGV[12] or (s[9] or '') ~= ARGV[13] or (s[10] or '') ~= ARGV[14]
    or words(u[2]) ~= ARGV[15] or words(u[3]) ~= ARGV[16] then
  return {'regrant'}
end
local now = tonumber(ARGV[1])
local presented = ARGV[2]
local function revoke()
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], ARGV[8])
  redis.call(PUBLISH, ARGV[10], ARGV[11])
end
-- Only a token this session issued may change anything; any other secret ends nothing.
local which = nil
if s[1] == presented then
  which = 'cur'
elseif s[2] == presented then
  which = 'prev'
else
  local short = string.sub(presented, 1, 32)
  local old = s[5] or ''
  for i = 1, #old, 32 do
    if string.sub(old, i, i + 31) == short then which = 'old' end
  end
end
if not which then return {'invalid'} end
if u[1] ~= '0' or ARGV[17] ~= '1' or now >= tonumber(s[6]) * 1000
    or now >= tonumber(s[7]) * 1000 then
  revoke()
  return {'ended'}
end
if which == 'cur' then
  local old = s[5] or ''
  if s[2] then old = string.sub(s[2], 1, 32) .. old end
  old = string.sub(old, 1, 32 * tonumber(ARGV[9]))
  -- `refreshed` (epoch seconds) is what the admin API lists as "last refreshed".
  redis.call('HSET', KEYS[1], 'cur', ARGV[3], 'prev', presented, 'gu', ARGV[4],
    'gb', ARGV[5], 'old', old, 'exp', ARGV[6], 'refreshed', tostring(math.floor(now / 1000)))
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    -- rj:<jti> holds the time after which that token fails verification anyway.
    if string.sub(f, 1, 3) == 'rj:' and tonumber(redis.call('HGET', KEYS[1], f)) * 1000 < now then
      redis.call('HDEL', KEYS[1], f)
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  -- The user's session index must outlive every session it lists (log out everywhere).
  redis.call('SADD', KEYS[3], ARGV[8])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[7]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
  return {'rotated'}
end
if which == 'prev' and now < tonumber(s[3]) and s[4] and s[4] ~= '' then
  return {'grace', s[4]}
end
revoke()
return {'reuse'}
"""
)

# KEYS: session. ARGV: presented digest. 1 if it is the session's current refresh token.
IS_CURRENT = """
return redis.call('HGET', KEYS[1], 'cur') == ARGV[1] and 1 or 0
"""

# A Lua function shared by the scripts that end every session of a user: deletes each
# session listed in the index `sessions`, then the index; `probe` is any session key of
# the user and `probe_sid` its id (they name the key prefix). Returns how many ended.
_END_ALL_SESSIONS = """
local function end_all_sessions(sessions, probe, probe_sid)
  local prefix = string.sub(probe, 1, #probe - #probe_sid)
  local n = 0
  for _, sid in ipairs(redis.call('SMEMBERS', sessions)) do
    n = n + redis.call('DEL', prefix .. sid)
  end
  redis.call('DEL', sessions)
  return n
end
"""

# KEYS: session, sessions, user. ARGV: digest, scope ('session' | 'user'), sid, channel,
# event, now_ms.
# Only the session's current refresh token, or the one just rotated while the grace window
# lasts, ends anything: its session, or (scope 'user', and only while it has not expired)
# every session of its user. A retired token has no power left: a stolen copy must not
# log anyone out. Returns 'revoked', 'stale' (a token this session issued, but retired,
# or expired for 'user': nothing changed) or 'unknown' (nothing changed).
REVOKE_BY_REFRESH = (
    _END_ALL_SESSIONS
    + """
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'gu', 'old', 'exp', 'abs')
if not s[1] then return 'unknown' end
local d = ARGV[1]
local now = tonumber(ARGV[6])
local live = (s[1] == d) or (s[2] == d and now < tonumber(s[3] or '0'))
if not live then
  local retired = (s[2] == d)
  local short = string.sub(d, 1, 32)
  local old = s[4] or ''
  for i = 1, #old, 32 do
    if string.sub(old, i, i + 31) == short then retired = true end
  end
  return retired and 'stale' or 'unknown'
end
if ARGV[2] == 'user' then
  if now >= tonumber(s[5]) * 1000 or now >= tonumber(s[6]) * 1000 then return 'stale' end
  end_all_sessions(KEYS[2], KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[3])
end
redis.call(PUBLISH, ARGV[4], ARGV[5])
return 'revoked'
"""
)

# KEYS: sessions, any session key of the user. ARGV: that sid, channel, event.
# Ends every session of a user ("log out everywhere").
REVOKE_USER = (
    _END_ALL_SESSIONS
    + """
local n = end_all_sessions(KEYS[1], KEYS[2], ARGV[1])
redis.call(PUBLISH, ARGV[2], ARGV[3])
return n
"""
)

# KEYS: session. ARGV: field ('rj:<jti>'), token exp_s, channel, event.
# Marks one access token revoked inside its session (gone with the session).
REVOKE_ACCESS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call(PUBLISH, ARGV[3], ARGV[4])
return 1
"""

# KEYS: user, sessions, any session key of the user. ARGV: field, value, that sid,
# bump_pwver, channel, event.
# Changes an account field (disabled / pwhash) and ends all its sessions atomically.
UPDATE_USER_AND_REVOKE = (
    _END_ALL_SESSIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'pwver', 1) end
local n = end_all_sessions(KEYS[2], KEYS[3], ARGV[3])
redis.call(PUBLISH, ARGV[5], ARGV[6])
return n
"""
)

# KEYS: the signing-key ring. ARGV: kid, record (JSON), condition, due_before_ms.
# condition 'always' adds; 'empty' adds only to an empty ring (first start: concurrent
# starters agree on one key); 'due' adds only if no key was published after due_before_ms
# (automatic rotation: of the instances that find it due, exactly one adds a key).
ADD_SIGNING_KEY = """
if ARGV[3] == 'empty' and redis.call('HLEN', KEYS[1]) > 0 then return 0 end
if ARGV[3] == 'due' then
  local due_before = tonumber(ARGV[4])
  for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
    local ok, rec = pcall(cjson.decode, raw)
    if ok and type(rec) == 'table' then
      local published = tonumber(rec['published_ms'])
      if published and published > due_before then return 0 end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: user. ARGV: field, value. Sets a field of an existing account; 0 if there is none.
SET_ACCOUNT_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: session, sessions. ARGV: sid, channel, event.
# Ends one session (whatever its state) and announces it; 1 if it still existed.
REVOKE_SESSION = """
local existed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call(PUBLISH, ARGV[2], ARGV[3])
return existed
"""

# KEYS: user. ARGV: old hash, new hash. Replaces a password hash only if still `old`.
REHASH = """
if redis.call('HGET', KEYS[1], 'pwhash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'pwhash', ARGV[2])
return 1
"""
