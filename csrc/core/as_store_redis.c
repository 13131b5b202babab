/*
** The Redis store: sessions on a Redis server, shared by processes on many
** machines.
**
** Keys (P is the prefix, "agentsession:" unless told otherwise):
**
**   P{<id>}:meta     hash: the metadata (tags joined by "\n", which no tag
**                    holds) and `seq`, the session's last write number
**   P{<id>}:msgs     list: one JSON text per message
**   P{<id>}:state    string: the state's JSON text
**   P{<id>}:ops      sorted set: the op ids of the session's last appends
**                    that carried one, scored by the version they made
**   Pall             sorted set of every session
**   Ptag:<tag>       sorted set of the sessions carrying the tag
**   Pagent:<name>    sorted set of the sessions of an agent
**   Pparent:<id>     sorted set of the forks of a session
**   Pseq             the store's write counter
**   P{<id>}:mw       list, parallel to msgs: each message's search keys (see
**                    as_search.h), as " k1 k2 ... " with a space around each
**   P{<id>}:words    set of every key the session has been filed under
**   Pw:<key>         set of the ids of the sessions filed under the key
**
** The writes keep the search index in the same step as the messages: the
** append script, and a script queued in a write's MULTI after the other
** writes. Each trims mw to the messages kept and adds the keys of the new
** ones (which the client computes), and files the session under the keys of
** its new texts and label it was not filed under yet. A key that leaves the
** session (a rewind, a save that replaces messages) leaves it filed there: a
** search checks mw and the texts, so it only costs that search a candidate,
** and a write pays for no count of each key. A delete takes the session out
** of every set in words. A search intersects the sets of its keys, so it
** reads only the sessions filed under them all.
**
** A session's keys share the hash tag {<id>}. In every sorted set a session's
** score is its updated_at and its member is its write number (16 hex digits)
** followed by its id, so ZREVRANGE walks list order, ties to the latest write.
** Sorted sets left empty vanish; only Pseq outlives the sessions.
**
** Transactions are optimistic. A write transaction WATCHes the meta key of
** the session it reads (every write changes that key), reads through a
** script (atomic, and it leaves the WATCH in place), and sends its writes at
** commit as one MULTI ... EXEC; when EXEC finds the session changed, it fails
** with AS_ERETRY and the manager runs the operation again. A read is one
** MULTI ... EXEC of plain reads, a list one script call: one round trip each.
** Writes are two: the read, then the EXEC.
**
** The connection is made when the store opens and again by the first call
** after a failure. Requests are written with MSG_NOSIGNAL (a closed socket
** must not kill the host with SIGPIPE) and replies read by hiredis; every
** call ends within timeout_ms.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "as_alloc.h"
#include "as_store_redis.h"

#define STR(x) #x
#define XSTR(x) STR(x)

/* ---------------------------------------------------------------- scripts */

/* KEYS: meta, msgs, state. ARGV[1]: "m" (the metadata and the count), "s"
** (those and the state) or "r" (those and the messages LRANGE ARGV[2]
** ARGV[3] gives). Returns nil, {meta, count} or {meta, count, messages, state}. */
static const char load_script[] =
    "local m = redis.call('HGETALL', KEYS[1])\n"
    "if #m == 0 then return false end\n"
    "local len = redis.call('LLEN', KEYS[2])\n"
    "if ARGV[1] == 'm' then return {m, len} end\n"
    "local msgs = {}\n"
    "if ARGV[1] == 'r' then msgs = redis.call('LRANGE', KEYS[2], ARGV[2], ARGV[3]) end\n"
    "return {m, len, msgs, redis.call('GET', KEYS[3])}\n";

/* The fields of a meta hash the scripts read with HMGET, in the order
** parse_packed takes them: those every session has, then name and parent_id. */
#define META_FIELDS \
    "'id', 'agent_name', 'tags', 'created_at', 'updated_at', 'turn_count', 'total_tokens', " \
    "'version', 'seq', 'bytes', 'name', 'parent_id'"

/* pack(f): HMGET's META_FIELDS as one string (see parse_packed), which costs
** the server and the client less than a reply of a dozen values; HMGET's
** array itself when a field every session has is missing. */
#define PACK_LUA \
    "local function pack(f)\n" \
    "  if not (f[1] and f[2] and f[3] and f[4] and f[5] and f[6] and f[7] and f[8] and f[9]\n" \
    "          and f[10]) then\n" \
    "    return f\n" \
    "  end\n" \
    "  local name, parent = f[11], f[12]\n" \
    "  if name and parent then f[13] = 'b'; return table.concat(f, '\\0', 1, 13) end\n" \
    "  if name then f[12] = 'n'; return table.concat(f, '\\0', 1, 12) end\n" \
    "  if parent then f[11], f[12] = parent, 'p'; return table.concat(f, '\\0', 1, 12) end\n" \
    "  f[11] = '0'\n" \
    "  return table.concat(f, '\\0', 1, 11)\n" \
    "end\n"

/* KEYS: the indexes of the filter (each tag, the agent, the parent), or the
** index of every session; the script walks the smallest. ARGV: prefix, offset,
** limit (-1: none), exact ("1": the one index is the whole filter), agent flag
** and agent, parent flag and parent, before flag and before (updated_at below
** it only), without flag and the tag sessions must not carry, `full` (-1:
** all), then the tags every session must carry. Returns the metadata of each
** session, packed; past the first `full`, each session as its score and
** member ("<updated_at> <member>"), for a cluster's merge to order: the
** metadata of those that make its page is read after (fetch_script). */
static const char list_script[] = PACK_LUA
    "local prefix, skip, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local exact = ARGV[4] == '1'\n"
    "local index = KEYS[1]\n"
    "if #KEYS > 1 then\n"
    "  local least = redis.call('ZCARD', index)\n"
    "  for i = 2, #KEYS do\n"
    "    local n = redis.call('ZCARD', KEYS[i])\n"
    "    if n < least then index, least = KEYS[i], n end\n"
    "  end\n"
    "end\n"
    "local function matches(f)\n"
    "  if ARGV[5] == '1' and f[2] ~= ARGV[6] then return false end\n"
    "  if ARGV[7] == '1' and f[12] ~= ARGV[8] then return false end\n"
    "  local tags = '\\n' .. (f[3] or '') .. '\\n'\n"
    "  if ARGV[11] == '1' and string.find(tags, '\\n' .. ARGV[12] .. '\\n', 1, true) then\n"
    "    return false\n"
    "  end\n"
    "  for i = 14, #ARGV do\n"
    "    if not string.find(tags, '\\n' .. ARGV[i] .. '\\n', 1, true) then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local full = tonumber(ARGV[13])\n"
    "local out, pos, step = {}, 0, 256\n"
    "if ARGV[9] == '1' then\n"
    "  pos = redis.call('ZCOUNT', index, ARGV[10], '+inf')\n"
    "end\n"
    "if exact then\n"
    "  pos, skip = pos + skip, 0\n"
    "  if limit >= 0 then step = limit end\n"
    "end\n"
    "while step > 0 and (limit < 0 or #out < limit) do\n"
    "  local ms, w\n"
    "  if full >= 0 then ms, w = redis.call('ZREVRANGE', index, pos, pos + step - 1, 'WITHSCORES'), 2\n"
    "  else ms, w = redis.call('ZREVRANGE', index, pos, pos + step - 1), 1 end\n"
    "  for j = 1, #ms, w do\n"
    "    local member = ms[j]\n"
    "    if exact and skip == 0 and full >= 0 and #out >= full then\n"
    "      out[#out + 1] = ms[j + 1] .. ' ' .. member\n"
    "      if #out == limit then break end\n"
    "    else\n"
    "      local id = string.sub(member, 17)\n"
    "      local key = prefix .. '{' .. id .. '}:meta'\n"
    "      local f = redis.call('HMGET', key, " META_FIELDS ")\n"
    "      if not f[1] and redis.call('EXISTS', key) == 0 then\n"
    "        return redis.error_reply('DAMAGED ' .. index .. ' names session \\\"' ..\n"
    "                                 string.sub(id, 1, 64) .. '\\\", which has no metadata')\n"
    "      end\n"
    "      if exact or matches(f) then\n"
    "        if skip > 0 then skip = skip - 1\n"
    "        else\n"
    "          if full >= 0 and #out >= full then out[#out + 1] = ms[j + 1] .. ' ' .. member\n"
    "          else out[#out + 1] = pack(f) end\n"
    "          if #out == limit then break end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if #ms < w * step then break end\n"
    "  pos = pos + step\n"
    "end\n"
    "return out\n";

/* A cluster's list: the metadata of sessions of one shard that make the page
** but came as score and member (see list_script). KEYS: their meta keys, then
** the indexes the list walked there. ARGV: their members. Returns each one's
** metadata, packed, or false for one deleted since: a member an index still
** holds without its metadata is damage. */
static const char fetch_script[] = PACK_LUA
    "local n, out = #ARGV, {}\n"
    "for i = 1, n do\n"
    "  local f = redis.call('HMGET', KEYS[i], " META_FIELDS ")\n"
    "  if f[1] or redis.call('EXISTS', KEYS[i]) == 1 then out[i] = pack(f)\n"
    "  else\n"
    "    for k = n + 1, #KEYS do\n"
    "      if redis.call('ZSCORE', KEYS[k], ARGV[i]) then\n"
    "        return redis.error_reply('DAMAGED ' .. KEYS[k] .. ' names session \\\"' ..\n"
    "                                 string.sub(ARGV[i], 17, 80) .. '\\\", which has no metadata')\n"
    "      end\n"
    "    end\n"
    "    out[i] = false\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Lua the scripts that write messages share: they keep the search index.
** index_new gives the keys of ARGV[from..to] that the session's words set
** (keys[1]) lacks, by SMISMEMBER, or on a server before 6.2 by SDIFF against
** a temporary set (keys[2], of the session's hash tag); it writes nothing
** that stays, so a script calls it before its first write, and a words set of
** another kind (damage) fails it there. index_file files the session under
** those keys (a key set of another kind is passed over). index_messages
** makes mw, of `have` entries, keep its first `kept` (empty ones stand for
** messages written before the index), then appends ARGV[first..last]. */
#define INDEX_LUA \
    "local function index_new(keys, from, to)\n" \
    "  local new = {}\n" \
    "  for i = from, to, 1000 do\n" \
    "    local last = math.min(i + 999, to)\n" \
    "    local has = redis.pcall('SMISMEMBER', keys[1], unpack(ARGV, i, last))\n" \
    "    if has.err and not string.find(string.lower(has.err), 'unknown', 1, true) then error(has) end\n" \
    "    if has.err then\n" \
    "      redis.call('SADD', keys[2], unpack(ARGV, i, last))\n" \
    "      local diff = redis.pcall('SDIFF', keys[2], keys[1])\n" \
    "      redis.call('DEL', keys[2])\n" \
    "      if diff.err then error(diff) end\n" \
    "      for _, k in ipairs(diff) do new[#new + 1] = k end\n" \
    "    else\n" \
    "      for j = 1, #has do if has[j] == 0 then new[#new + 1] = ARGV[i + j - 1] end end\n" \
    "    end\n" \
    "  end\n" \
    "  return new\n" \
    "end\n" \
    "local function index_file(prefix, id, words, new)\n" \
    "  for _, k in ipairs(new) do redis.pcall('SADD', prefix .. 'w:' .. k, id) end\n" \
    "  for i = 1, #new, 1000 do\n" \
    "    redis.call('SADD', words, unpack(new, i, math.min(i + 999, #new)))\n" \
    "  end\n" \
    "end\n" \
    "local function index_messages(mw, have, kept, first, last)\n" \
    "  if have > kept then\n" \
    "    if kept == 0 then redis.call('DEL', mw) else redis.call('LTRIM', mw, 0, kept - 1) end\n" \
    "  end\n" \
    "  for i = have + 1, kept, 1000 do\n" \
    "    local pad = {}\n" \
    "    for j = i, math.min(i + 999, kept) do pad[#pad + 1] = '' end\n" \
    "    redis.call('RPUSH', mw, unpack(pad))\n" \
    "  end\n" \
    "  for i = first, last, 1000 do\n" \
    "    redis.call('RPUSH', mw, unpack(ARGV, i, math.min(i + 999, last)))\n" \
    "  end\n" \
    "end\n"

/* append: one atomic step. KEYS: meta, msgs, the counter, state, ops, words,
** mw, and the temporary set of index_file. ARGV: prefix, id, number of
** messages, tokens, expected version (-1: any), now, bytes added, size limit,
** "1" and the new state or "0" and "", the limit of total_tokens, the op_id
** ("": none), the least write number to give (see index_script), then the
** messages, then the search keys of each message (mw's entries), then their
** distinct keys. On a cluster, KEYS go on with the sets of those keys, which
** the script files the session under: declared, so that a slot on the move
** refuses the call before it runs. Checks first: the metadata, the kinds of
** the keys it will write and the counter (only the HINCRBY of the tokens
** writes before the size check, and is undone when it fails), so no error
** can stop it half-way; the meta JSON length (`metalen`) follows the
** counters' digits. An op_id the session's op ids hold ends it before any
** other check than the metadata's and the keys' (ZSCORE, the first command on
** that key, refuses one of another kind). Returns {"OK", metadata} (packed,
** as it now is), {"APPLIED", metadata} (the op_id was) or {"NOTFOUND"},
** {"CONFLICT", version}, {"TURNS"}, {"TOKENS"}, {"TOOLARGE", size}. */
static const char append_script[] = INDEX_LUA PACK_LUA
    "local meta, msgs, seqkey, statekey, opskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    "local new_state = ARGV[9] == '1' and ARGV[10] or nil\n"
    "local prefix, id, n, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
    "local expect, now, add, max = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local max_tokens, op = ARGV[11], ARGV[12]\n"
    "local function damaged(what)\n"
    "  return redis.error_reply('DAMAGED session \"' .. string.sub(id, 1, 64) .. '\": ' .. what)\n"
    "end\n"
    "local f = redis.call('HMGET', meta, " META_FIELDS ", 'metalen')\n"
    "if not f[8] then\n"
    "  if redis.call('EXISTS', meta) == 0 then return {'NOTFOUND'} end\n"
    "  return damaged('its metadata has no version')\n"
    "end\n"
    "local version, turns = tonumber(f[8]), tonumber(f[6])\n"
    "if not (version and turns and f[1] == id and f[2] and f[3] and f[4] and f[5] and f[7]\n"
    "        and tonumber(f[9]) and tonumber(f[10]) and tonumber(f[13])) then\n"
    "  return damaged('its metadata is not what this store writes')\n"
    "end\n"
    "local idx = {prefix .. 'all', prefix .. 'agent:' .. f[2]}\n"
    "if f[12] then idx[#idx + 1] = prefix .. 'parent:' .. f[12] end\n"
    "for t in string.gmatch(f[3], '[^\\n]+') do idx[#idx + 1] = prefix .. 'tag:' .. t end\n"
    "local function kind(k, want)\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  return t == want or t == 'none'\n"
    "end\n"
    "local sound = kind(msgs, 'list') and (not new_state or kind(statekey, 'string'))\n"
    "for _, k in ipairs(idx) do sound = sound and kind(k, 'zset') end\n"
    "local seq = redis.pcall('GET', seqkey)\n"
    "if type(seq) == 'table' then sound = false end\n"
    "if not sound then\n"
    "  return damaged('one of its keys or indexes holds another kind of value')\n"
    "end\n"
    "if seq and not string.match(seq, '^%-?%d+$') then\n"
    "  return redis.error_reply('DAMAGED the counter ' .. seqkey .. ' is not a number')\n"
    "end\n"
    "if op ~= '' and redis.call('ZSCORE', opskey, op) then return {'APPLIED', pack(f)} end\n"
    "if expect >= 0 and version ~= expect then return {'CONFLICT', f[8]} end\n"
    "if turns + n > 4294967295 then return {'TURNS'} end\n"
    "local have = redis.pcall('LLEN', KEYS[7])\n"
    "if type(have) == 'table' then return damaged('its search keys are not a list') end\n"
    "local new = index_new({KEYS[6], KEYS[8]}, 14 + 2 * n, #ARGV)\n"
    /* no tokens: no HINCRBY, but the same check of what it would have read */
    "local new_tokens, added = f[7], false\n"
    "if tokens ~= '0' then\n"
    "  local r = redis.pcall('HINCRBY', meta, 'total_tokens', tokens)\n"
    "  if type(r) == 'table' and r.err then\n"
    "    if string.find(r.err, 'overflow', 1, true) then return {'TOKENS'} end\n"
    "    return redis.error_reply(r.err)\n"
    "  end\n"
    "  added = true\n"
    "  if r >= 0 and r < 9007199254740992 then new_tokens = string.format('%d', r)\n"
    "  else new_tokens = redis.call('HGET', meta, 'total_tokens') end\n"
    "elseif not (new_tokens == '0' or string.match(new_tokens, '^[1-9]%d*$') and (#new_tokens < 19\n"
    "             or #new_tokens == 19 and new_tokens <= '9223372036854775807')) then\n"
    "  return damaged('total_tokens is not an integer in range')\n"
    "end\n"
    "if #new_tokens > #max_tokens or (#new_tokens == #max_tokens and new_tokens > max_tokens) then\n"
    "  if added then redis.call('HSET', meta, 'total_tokens', f[7]) end\n"
    "  return {'TOKENS'}\n"
    "end\n"
    "local new_turns = string.format('%d', turns + n)\n"
    "local new_version = string.format('%d', version + 1)\n"
    "local metalen = tonumber(f[13]) + #new_turns - #f[6] + #new_tokens - #f[7] + #now - #f[5]\n"
    "  + #new_version - #f[8]\n"
    "local bytes = tonumber(f[10]) + add\n"
    "if new_state then\n"
    "  bytes = math.max(bytes - redis.call('STRLEN', statekey), 0) + #new_state\n"
    "end\n"
    "if metalen + 38 + bytes > max then\n"
    "  if added then redis.call('HSET', meta, 'total_tokens', f[7]) end\n"
    "  return {'TOOLARGE', string.format('%d', metalen + 38 + bytes)}\n"
    "end\n"
    "local total = 0\n"
    "for i = 14, 13 + n, 1000 do\n"
    "  total = redis.call('RPUSH', msgs, unpack(ARGV, i, math.min(i + 999, 13 + n)))\n"
    "end\n"
    "if op ~= '' then\n"
    "  redis.call('ZADD', opskey, new_version, op)\n"
    "  redis.call('ZREMRANGEBYRANK', opskey, 0, -" XSTR(AS_OP_IDS_KEPT) " - 1)\n"
    "end\n"
    "if n > 0 then index_messages(KEYS[7], have, total - n, 14 + n, 13 + 2 * n) end\n"
    "index_file(prefix, id, KEYS[6], new)\n"
    "if new_state then redis.call('SET', statekey, new_state) end\n"
    "local old = string.format('%016x', tonumber(f[9])) .. id\n"
    "for _, k in ipairs(idx) do redis.call('ZREM', k, old) end\n"
    "local s = redis.call('INCR', seqkey)\n"
    "if s <= tonumber(ARGV[13]) then\n"
    "  s = tonumber(ARGV[13]) + 1\n"
    "  redis.call('SET', seqkey, string.format('%d', s))\n"
    "end\n"
    "local m = string.format('%016x', s) .. id\n"
    "for _, k in ipairs(idx) do redis.call('ZADD', k, now, m) end\n"
    "f[5], f[6], f[7], f[8] = now, new_turns, new_tokens, new_version\n"
    "f[9], f[10] = string.format('%d', s), string.format('%d', bytes)\n"
    "redis.call('HSET', meta, 'turn_count', f[6], 'updated_at', now, 'version', f[8],\n"
    "  'bytes', f[10], 'metalen', string.format('%d', metalen), 'seq', f[9])\n"
    "return {'OK', pack(f)}\n";

/* Run inside a write's MULTI, after the other writes. KEYS: the counter, the
** meta key, then the indexes the session belongs to. ARGV: score (updated_at),
** id, and the least number to give: one more than the highest this manager
** has seen, so that on a cluster, whose shards count apart, a manager's
** writes still number in the order it made them. Numbers the write and
** files the session under that number. */
static const char index_script[] =
    "local s = redis.call('INCR', KEYS[1])\n"
    "if s <= tonumber(ARGV[3]) then\n"
    "  s = tonumber(ARGV[3]) + 1\n"
    "  redis.call('SET', KEYS[1], string.format('%d', s))\n"
    "end\n"
    "local m = string.format('%016x', s) .. ARGV[2]\n"
    "for i = 3, #KEYS do redis.call('ZADD', KEYS[i], ARGV[1], m) end\n"
    "redis.call('HSET', KEYS[2], 'seq', string.format('%d', s))\n"
    "return s\n";

/* Run inside a write's MULTI, after the messages are written. KEYS: msgs,
** words, mw, the temporary set of index_file (on a cluster, then the sets of
** the distinct keys, declared only). ARGV: prefix, id, the number m
** of messages appended, their search keys (mw's entries), then the distinct
** keys of them and of the label. The messages kept are those msgs holds but
** the m appended. */
static const char words_script[] = INDEX_LUA
    "local m = tonumber(ARGV[3])\n"
    "local new = index_new({KEYS[2], KEYS[4]}, 4 + m, #ARGV)\n"
    "index_messages(KEYS[3], redis.call('LLEN', KEYS[3]), redis.call('LLEN', KEYS[1]) - m, 4, 3 + m)\n"
    "index_file(ARGV[1], ARGV[2], KEYS[2], new)\n"
    "return 0\n";

/* A delete, alone in its MULTI. KEYS: meta, msgs, state, ops, words, mw, then
** the indexes the session is in. ARGV: prefix, the session's member in the
** indexes, id, "1" to look at every key it will write first. Takes the
** session out of the set of every key it was filed under. On a cluster those
** sets cannot be declared: a slot on the move then fails the script at that
** first look, before it writes anything. */
static const char delete_script[] =
    "local words = redis.call('SMEMBERS', KEYS[5])\n"
    "if ARGV[4] == '1' then\n"
    "  for _, k in ipairs(words) do redis.call('TYPE', ARGV[1] .. 'w:' .. k) end\n"
    "end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])\n"
    "local bad\n"
    "for i = 7, #KEYS do\n"
    "  local r = redis.pcall('ZREM', KEYS[i], ARGV[2])\n"
    "  if type(r) == 'table' and r.err and not bad then bad = r end\n"
    "end\n"
    "for _, k in ipairs(words) do redis.pcall('SREM', ARGV[1] .. 'w:' .. k, ARGV[3]) end\n"
    "if bad then return bad end\n"
    "return 0\n";

/* A search. KEYS: the sets of the query's keys. ARGV: prefix, offset, limit
** (-1: none), agent flag and agent, parent flag and parent, the number of
** tags t, the t tags every session must carry, then the keys. The sessions
** in every set, that the filter keeps, in list order; for each of the page:
** its meta hash, the positions (0-based, highest first) of the messages
** whose keys hold them all, and the text of the first of those (or false). */
static const char search_script[] =
    "local prefix, skip, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local ntags = tonumber(ARGV[8])\n"
    "local rows = {}\n"
    "for _, id in ipairs(redis.call('SINTER', unpack(KEYS))) do\n"
    "  local f = redis.call('HMGET', prefix .. '{' .. id .. '}:meta', 'updated_at', 'seq',\n"
    "    'agent_name', 'parent_id', 'tags')\n"
    "  if not (tonumber(f[1]) and tonumber(f[2])) then\n"
    "    return redis.error_reply('DAMAGED the search index names session \\\"' ..\n"
    "                             string.sub(id, 1, 64) .. '\\\", which has no metadata')\n"
    "  end\n"
    "  local ok = (ARGV[4] ~= '1' or f[3] == ARGV[5]) and (ARGV[6] ~= '1' or f[4] == ARGV[7])\n"
    "  local tags = '\\n' .. (f[5] or '') .. '\\n'\n"
    "  for i = 9, 8 + ntags do\n"
    "    ok = ok and string.find(tags, '\\n' .. ARGV[i] .. '\\n', 1, true) ~= nil\n"
    "  end\n"
    "  if ok then rows[#rows + 1] = {tonumber(f[1]), tonumber(f[2]), id} end\n"
    "end\n"
    "table.sort(rows, function(a, b)\n"
    "  if a[1] ~= b[1] then return a[1] > b[1] end\n"
    "  return a[2] > b[2]\n"
    "end)\n"
    "local out = {}\n"
    "local last = limit < 0 and #rows or math.min(#rows, skip + limit)\n"
    "for i = skip + 1, last do\n"
    "  local id = rows[i][3]\n"
    "  local key = prefix .. '{' .. id .. '}:'\n"
    "  local entries = redis.call('LRANGE', key .. 'mw', 0, -1)\n"
    "  local pos = {}\n"
    "  for j = #entries, 1, -1 do\n"
    "    local e, all = entries[j], true\n"
    "    for k = 9 + ntags, #ARGV do\n"
    "      if not string.find(e, ' ' .. ARGV[k] .. ' ', 1, true) then all = false; break end\n"
    "    end\n"
    "    if all then pos[#pos + 1] = j - 1 end\n"
    "  end\n"
    "  local text = false\n"
    "  if #pos > 0 then text = redis.call('LINDEX', key .. 'msgs', pos[1]) end\n"
    "  out[#out + 1] = {redis.call('HGETALL', key .. 'meta'), pos, text}\n"
    "end\n"
    "return out\n";

/* ---------------------------------------------------------------- the store */

/* A connection to one server: the server of a single-server store, or one
** master of a cluster, connected when first needed. */
typedef struct rconn {
    redisContext *c;
    char *host;
    int port;
    char where[300];      /* "redis at host:port", for messages */
    uint64_t generation;  /* connections made to it so far */
    int sock_ms;          /* the socket timeout now set; -1: none yet */
    int watching;         /* keys are watched on the connection */
    uint64_t watch_gen;   /* the connection that watches them */
} rconn;

#define SLOTS 16384

typedef struct redis_store {
    as_store base;
    rconn *cur;           /* the connection of the request under way */
    rconn **nodes;        /* the server, or every node of the cluster known so far */
    size_t nnodes, capnodes;
    int cluster;
    uint16_t *slots;      /* cluster: the node (index + 1) that serves each slot; 0: none known */
    int stale_map;        /* cluster: learn the slot map before the next request */
    size_t ask_from;      /* cluster: where the next map refresh asks first */
    char *shard_prefix[AS_REDIS_SHARDS]; /* cluster: P{tag} of each shard */
    unsigned shard_slot[AS_REDIS_SHARDS];
    const char *sp;       /* the key prefix of the session at hand: P, or its shard's */
    size_t splen;
    char *username, *password, *prefix;
    size_t plen;
    int db, timeout_ms;
    char where[600];      /* base.location */
    char load_sha[41], list_sha[41], append_sha[41];
    as_store_stats stats;
    int sent;             /* the last request reached the socket whole */
    int64_t deadline;     /* monotonic microseconds by which the call ends */
    int retries;          /* AS_ERETRY answers in a row */
    int again;            /* the next begin runs the same operation again */
    int64_t backoff_us;   /* cluster: how long the next begin waits first */
    char why[AS_ERROR_MESSAGE_MAX]; /* cluster: what made the operation run again */
    uint32_t jitter;      /* xorshift state for the waits between attempts */
    int write;            /* the transaction under way writes */
    rconn *watched;       /* the connection that watches the session a write read */
    uint64_t hi_seq;      /* the highest write number seen: ties of this manager's writes */
    size_t index_at;      /* the index script's reply in a commit's EXEC (0: none) */
    as_buf req;           /* the request being built */
    size_t req_skip;      /* replies to skip before the request's own */
    int req_unwatch;      /* the request begins with an UNWATCH */
    as_buf q;             /* writes queued for commit, after a MULTI */
    size_t nq;            /* commands in q */
    char qid[AS_ID_MAX + 1]; /* the session the queued writes are for, for errors */
} redis_store;

/* Request buffers larger than this are freed when an operation begins. */
#define RELEASE_ABOVE ((size_t)1 << 20)

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static as_status rd_fail(redis_store *rs, as_status st, as_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static as_status rd_fail(redis_store *rs, as_status st, as_error *err, const char *fmt, ...) {
    char what[AS_ERROR_MESSAGE_MAX - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return as_error_set(err, st, "%s: %s", rs->cur ? rs->cur->where : rs->where, what);
}

static as_status rd_damaged(redis_store *rs, const char *id, const char *what, as_error *err) {
    as_error_set(err, AS_ESTORAGE, "%s: damaged store: session \"%.64s\": %s",
                 rs->cur ? rs->cur->where : rs->where, id, what);
    as_error_set_id(err, id);
    return AS_ESTORAGE;
}

static void conn_drop(rconn *k) {
    if (k->c) redisFree(k->c);
    k->c = NULL;
    k->watching = 0;
}

static void rd_drop(redis_store *rs) {
    if (rs->cur) conn_drop(rs->cur);
}

/* ---------------------------------------------------------------- slots and shards */

/* CRC16-CCITT (XModem), as Redis Cluster hashes keys. */
static unsigned crc16(const char *p, size_t n) {
    unsigned crc = 0;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)p[i] << 8;
        for (b = 0; b < 8; b++) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

unsigned as_redis_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len), *close;
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) return crc16(open + 1, (size_t)(close - open - 1)) % SLOTS;
    }
    return crc16(key, len) % SLOTS;
}

/* The shard of a session on a cluster. */
static unsigned shard_of(const char *id) {
    return crc16(id, strlen(id)) % AS_REDIS_SHARDS;
}

/* The hash tags of the shards: shard k's is "s<j>" for the least j whose
** slot lies in the k-th of AS_REDIS_SHARDS equal parts of the slots, so the
** shards spread evenly over masters that hold equal ranges of slots. */
static int make_shards(redis_store *rs) {
    unsigned k, j = 0;
    for (k = 0; k < AS_REDIS_SHARDS; k++) {
        char tag[16];
        int n;
        unsigned slot;
        for (;; j++) {
            n = snprintf(tag, sizeof tag, "s%u", j);
            slot = crc16(tag, (size_t)n) % SLOTS;
            if (slot * AS_REDIS_SHARDS / SLOTS == k) break;
        }
        j = 0;
        rs->shard_slot[k] = slot;
        if ((rs->shard_prefix[k] = as_malloc(rs->plen + (size_t)n + 3)) == NULL) return -1;
        memcpy(rs->shard_prefix[k], rs->prefix, rs->plen);
        rs->shard_prefix[k][rs->plen] = '{';
        memcpy(rs->shard_prefix[k] + rs->plen + 1, tag, (size_t)n);
        memcpy(rs->shard_prefix[k] + rs->plen + 1 + n, "}", 2);
    }
    return 0;
}

/* Makes the keys built next those of shard k. */
static void use_shard(redis_store *rs, unsigned k) {
    if (!rs->cluster) return;
    rs->sp = rs->shard_prefix[k];
    rs->splen = strlen(rs->sp);
}

/* ---------------------------------------------------------------- requests */

/* Commands in the unified protocol, written straight into a buffer. Each
** returns non-zero when memory runs out; callers chain them with ||, which
** also keeps them in order. */
/* "<mark><n>\r\n": a request's headers, written without printf (a request of
** an append carries one per word of its messages). */
static int put_count(as_buf *b, char mark, size_t n) {
    char head[32], *p = head + sizeof head;
    *--p = '\n';
    *--p = '\r';
    do *--p = (char)('0' + n % 10); while ((n /= 10) != 0);
    *--p = mark;
    return as_buf_put(b, p, (size_t)(head + sizeof head - p));
}

static int put_head(as_buf *b, size_t nargs) {
    return put_count(b, '*', nargs);
}

static int put_bulk_head(as_buf *b, size_t len) {
    return put_count(b, '$', len);
}

static int put_bulk(as_buf *b, const char *s, size_t len) {
    return put_bulk_head(b, len) || as_buf_put(b, s, len) || as_buf_puts(b, "\r\n");
}

static int put_str(as_buf *b, const char *s) {
    return put_bulk(b, s, strlen(s));
}

static int put_int(as_buf *b, int64_t v) {
    char num[24];
    int k = snprintf(num, sizeof num, "%" PRId64, v);
    return put_bulk(b, num, (size_t)k);
}

/* P{id}:suffix */
static int put_skey(redis_store *rs, as_buf *b, const char *id, const char *suffix) {
    size_t idlen = strlen(id), slen = strlen(suffix);
    return put_bulk_head(b, rs->splen + idlen + slen + 3) || as_buf_put(b, rs->sp, rs->splen)
           || as_buf_putc(b, '{') || as_buf_put(b, id, idlen) || as_buf_puts(b, "}:")
           || as_buf_put(b, suffix, slen) || as_buf_puts(b, "\r\n");
}

/* P<name><value> */
static int put_ikey(redis_store *rs, as_buf *b, const char *name, const char *value) {
    size_t nlen = strlen(name), vlen = value ? strlen(value) : 0;
    return put_bulk_head(b, rs->splen + nlen + vlen) || as_buf_put(b, rs->sp, rs->splen)
           || as_buf_put(b, name, nlen) || as_buf_put(b, value, vlen) || as_buf_puts(b, "\r\n");
}

/* A session's member in the sorted sets. */
static int put_member(as_buf *b, int64_t seq, const char *id) {
    char num[20];
    size_t idlen = strlen(id);
    snprintf(num, sizeof num, "%016" PRIx64, (uint64_t)seq);
    return put_bulk_head(b, 16 + idlen) || as_buf_put(b, num, 16) || as_buf_put(b, id, idlen)
           || as_buf_puts(b, "\r\n");
}

/* UNWATCH in the unified protocol: put in front of a request on a connection
** that still watches keys, and taken off again when that connection is new. */
static const char unwatch_cmd[] = "*1\r\n$7\r\nUNWATCH\r\n";
#define UNWATCH_LEN (sizeof unwatch_cmd - 1)

/* Starts a request on rs->cur: an UNWATCH first when keys are still watched
** from an operation that did not commit. */
static int req_start(redis_store *rs) {
    rs->req.len = 0;
    rs->req_skip = 0;
    rs->req_unwatch = 0;
    if (!rs->cur->watching) return 0;
    rs->req_skip = 1;
    rs->req_unwatch = 1;
    return as_buf_put(&rs->req, unwatch_cmd, UNWATCH_LEN);
}

/* The prefix of the keys of the session at hand, as a script's argument. */
static int put_sp(redis_store *rs, as_buf *b) {
    return put_bulk(b, rs->sp, rs->splen);
}

/* ---------------------------------------------------------------- the connection */
/* ---------------------------------------------------------------- the connection */

static as_status rd_lost(redis_store *rs, int e, as_error *err) {
    char why[200];
    redisContext *c = rs->cur->c;
    int ioerr = c && c->err;
    if (ioerr && c->err == REDIS_ERR_OOM) {
        rd_drop(rs);
        return as_error_nomem(err);
    }
    if (ioerr && c->err == REDIS_ERR_EOF)
        snprintf(why, sizeof why, "the server closed the connection");
    else if (ioerr && c->err == REDIS_ERR_PROTOCOL)
        snprintf(why, sizeof why, "the server did not answer as Redis does: is it a Redis "
                 "server? (%.100s)", c->errstr);
    else if (e == EAGAIN || e == EWOULDBLOCK)
        snprintf(why, sizeof why, "no reply within %d ms", rs->timeout_ms);
    else if (ioerr)
        snprintf(why, sizeof why, "%s", c->errstr);
    else
        snprintf(why, sizeof why, "%s", strerror(e));
    rd_drop(rs);
    return rd_fail(rs, AS_EUNAVAILABLE, err, "%s", why);
}

/* Sets the socket timeout to what is left of the call's time. */
static as_status set_timeout(redis_store *rs, as_error *err) {
    rconn *k = rs->cur;
    int64_t left = rs->deadline - mono_us();
    int ms;
    if (left <= 0) {
        rd_drop(rs);
        return rd_fail(rs, AS_EUNAVAILABLE, err, "no reply within %d ms", rs->timeout_ms);
    }
    ms = (int)((left + 999) / 1000);
    if (ms != k->sock_ms) {
        struct timeval tv;
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        if (redisSetTimeout(k->c, tv) != REDIS_OK) return rd_lost(rs, errno, err);
        k->sock_ms = ms;
    }
    return AS_OK;
}

static as_status send_all(redis_store *rs, const char *p, size_t n, as_error *err) {
    while (n > 0) {
        ssize_t k;
        as_status st;
        if ((st = set_timeout(rs, err)) != AS_OK) return st;
        k = send(rs->cur->c->fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return rd_lost(rs, errno, err);
        }
        p += k;
        n -= (size_t)k;
    }
    return AS_OK;
}

static void free_replies(redisReply **r, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (r[i]) freeReplyObject(r[i]);
        r[i] = NULL;
    }
}

/* Reads one reply. Each read of the socket may wait only for what is left of
** the call's time, so a server that answers a byte at a time cannot stretch
** the call past timeout_ms. */
static as_status read_reply(redis_store *rs, void **reply, as_error *err) {
    as_status st;
    for (;;) {
        if (redisGetReplyFromReader(rs->cur->c, reply) != REDIS_OK) return rd_lost(rs, errno, err);
        if (*reply != NULL) return AS_OK;
        if ((st = set_timeout(rs, err)) != AS_OK) return st;
        if (redisBufferRead(rs->cur->c) != REDIS_OK) return rd_lost(rs, errno, err);
    }
}

/* Sends `n` commands and reads their replies into r[0..n-1], skipping `skip`
** replies first (to commands sent before them). rs->sent tells whether the
** whole request reached the socket: until it has, the server ran none of it. */
static as_status rd_exchange(redis_store *rs, const as_buf *req, size_t skip, size_t n,
                             redisReply **r, as_error *err) {
    size_t i;
    as_status st;
    rs->sent = 0;
    if ((st = send_all(rs, req->data, req->len, err)) != AS_OK) return st;
    rs->sent = 1;
    rs->stats.round_trips++;
    for (i = 0; i < skip + n; i++) {
        void *reply = NULL;
        if ((st = read_reply(rs, &reply, err)) != AS_OK) {
            free_replies(r, i > skip ? i - skip : 0);
            return st;
        }
        if (i < skip) freeReplyObject(reply);
        else r[i - skip] = reply;
    }
    return AS_OK;
}

/* Says in the message of a write that failed after it was sent whole that
** the server may have applied it: whole, since it is one transaction. */
static void note_whole(as_error *err) {
    static const char note[] = " (the write was sent: the server made it whole or not at all)";
    size_t have = strlen(err->message);
    if (have + sizeof note <= sizeof err->message) memcpy(err->message + have, note, sizeof note);
}

static int has_prefix(const redisReply *r, const char *p) {
    size_t n = strlen(p);
    return r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, p, n) == 0;
}

/* Cluster: the operation runs again, after waiting backoff_us, because of
** `why` (a message); when the call's time is up it fails with that instead. */
static as_status rd_again(redis_store *rs, int64_t backoff_us, const char *why, as_error *err) {
    if (why != rs->why) snprintf(rs->why, sizeof rs->why, "%s", why);
    if (mono_us() >= rs->deadline) return as_error_set(err, AS_EUNAVAILABLE, "%s", rs->why);
    as_error_clear(err);
    rs->backoff_us = backoff_us;
    rs->again = 1;
    rs->nq = 0;
    return AS_ERETRY;
}

/* Cluster: a connection failed or the map is out of date; try again once the
** map is learnt anew. */
static as_status rd_again_lost(redis_store *rs, as_error *err) {
    char why[AS_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "%s", err->message);
    rs->stale_map = 1;
    return rd_again(rs, 50000, why, err);
}

static as_status again_fmt(redis_store *rs, int64_t backoff_us, as_error *err, const char *fmt,
                           const redisReply *r) {
    char why[AS_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "%.250s: %s%.200s", rs->cur ? rs->cur->where : rs->where, fmt, r->str);
    return rd_again(rs, backoff_us, why, err);
}

static rconn *node_get(redis_store *rs, const char *host, size_t hlen, int port, as_error *err);

static size_t node_index(redis_store *rs, const rconn *k);

/* The node a redirection names: "<slot> <host>:<port>" from r->str + skip
** (an empty host: the node that answered). NULL with *slot -1 when the text
** is not that, -2 when memory ran out (err set). */
static rconn *redirect_target(redis_store *rs, const redisReply *r, size_t skip, long *slot,
                              as_error *err) {
    char *end;
    const char *host, *colon;
    size_t hlen;
    rconn *to;
    *slot = strtol(r->str + skip, &end, 10);
    host = end;
    while (*host == ' ') host++;
    colon = strrchr(host, ':');
    if (end == r->str + skip || *slot < 0 || *slot >= SLOTS || colon == NULL) {
        *slot = -1;
        return NULL;
    }
    hlen = (size_t)(colon - host);
    if (hlen == 0) {
        host = rs->cur->host;
        hlen = strlen(host);
    } else if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if ((to = node_get(rs, host, hlen, atoi(colon + 1), err)) == NULL) *slot = -2;
    return to;
}

/* Cluster: what a redirection or a cluster's error means; AS_OK when `r` is
** none of them. */
static as_status cluster_error(redis_store *rs, const redisReply *r, as_error *err) {
    if (has_prefix(r, "MOVED ")) {
        /* the slot's master from now on */
        long slot;
        rconn *to = redirect_target(rs, r, 6, &slot, err);
        rs->stats.redirections++;
        if (to) rs->slots[slot] = (uint16_t)(node_index(rs, to) + 1);
        else if (slot == -2) return err->status;
        else rs->stale_map = 1;
        return again_fmt(rs, 0, err, "", r);
    }
    if (has_prefix(r, "ASK ")) {
        /* a slot on its way to another master: what is moving waits for it to arrive */
        rs->stats.redirections++;
        return again_fmt(rs, 2000, err, "a slot is moving: ", r);
    }
    if (has_prefix(r, "TRYAGAIN") || (r->type == REDIS_REPLY_ERROR && strstr(r->str, "non local key")))
        return again_fmt(rs, 2000, err, "a slot is moving: ", r);
    if (has_prefix(r, "CLUSTERDOWN") || has_prefix(r, "READONLY") || has_prefix(r, "MASTERDOWN")
        || has_prefix(r, "LOADING")) {
        rs->stale_map = 1;
        return again_fmt(rs, 50000, err, "", r);
    }
    return AS_OK;
}

/* What an error reply means for the caller. */
static as_status reply_error(redis_store *rs, const redisReply *r, const char *id,
                             as_error *err) {
    static const char *const not_ready[] = { "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN",
                                             "CLUSTERDOWN", NULL };
    int i;
    as_status st;
    if (rs->cluster && (st = cluster_error(rs, r, err)) != AS_OK) return st;
    for (i = 0; not_ready[i]; i++)
        if (has_prefix(r, not_ready[i]))
            return rd_fail(rs, AS_EUNAVAILABLE, err, "the server is not ready: %.300s", r->str);
    if (has_prefix(r, "NOAUTH") || has_prefix(r, "WRONGPASS")) {
        rd_fail(rs, AS_EINVALID, err, "the server refuses the password: %.300s", r->str);
        as_error_prefix(err, "password");
        return AS_EINVALID;
    }
    if (has_prefix(r, "WRONGTYPE") && id)
        return rd_damaged(rs, id, "one of its keys holds another kind of value", err);
    if (has_prefix(r, "DAMAGED "))
        return rd_fail(rs, AS_ESTORAGE, err, "damaged store: %.300s", r->str + 8);
    if (has_prefix(r, "MOVED") || has_prefix(r, "ASK"))
        return rd_fail(rs, AS_ESTORAGE, err, "the server is a Redis Cluster node that does not hold "
                    "these keys (%.200s): open the store with `cluster` (see README)", r->str);
    if (has_prefix(r, "READONLY"))
        return rd_fail(rs, AS_ESTORAGE, err, "the server is a read-only replica: %.300s", r->str);
    if (has_prefix(r, "OOM"))
        return rd_fail(rs, AS_ESTORAGE, err, "the server is out of memory: %.300s", r->str);
    return rd_fail(rs, AS_ESTORAGE, err, "the server answers: %.300s",
                r->type == REDIS_REPLY_ERROR ? r->str : "(an unexpected reply)");
}

static int is_sha(const redisReply *r) {
    return r->type == REDIS_REPLY_STRING && r->len == 40;
}

/* Connects rs->cur, authenticates, selects the db and loads the scripts: one
** round trip after the TCP connect. */
static as_status rd_connect(redis_store *rs, as_error *err) {
    rconn *k = rs->cur;
    int64_t left = rs->deadline - mono_us();
    struct timeval tv;
    redisReply *r[5] = { NULL, NULL, NULL, NULL, NULL };
    size_t n = 0, i, select_at = SIZE_MAX;
    as_buf b = AS_BUF_INIT;
    as_status st;
    int bad = 0;
    if (left <= 0) return rd_fail(rs, AS_EUNAVAILABLE, err, "no reply within %d ms", rs->timeout_ms);
    tv.tv_sec = (time_t)(left / 1000000);
    tv.tv_usec = (suseconds_t)(left % 1000000);
    k->c = redisConnectWithTimeout(k->host, k->port, tv);
    if (k->c == NULL) return as_error_nomem(err);
    if (k->c->err) {
        st = rd_fail(rs, AS_EUNAVAILABLE, err, "cannot connect: %s", k->c->errstr);
        rd_drop(rs);
        return st;
    }
    k->generation++;
    rs->stats.connects++;
    k->sock_ms = -1;
    k->watching = 0;
    if (rs->password) {
        bad |= put_head(&b, rs->username ? 3 : 2) || put_str(&b, "AUTH");
        if (rs->username) bad |= put_str(&b, rs->username);
        bad |= put_str(&b, rs->password);
        n++;
    }
    if (!rs->cluster) { /* a cluster has db 0 only */
        bad |= put_head(&b, 2) || put_str(&b, "SELECT") || put_int(&b, rs->db);
        select_at = n++;
    }
    bad |= put_head(&b, 3) || put_str(&b, "SCRIPT") || put_str(&b, "LOAD") || put_str(&b, load_script);
    bad |= put_head(&b, 3) || put_str(&b, "SCRIPT") || put_str(&b, "LOAD") || put_str(&b, list_script);
    bad |= put_head(&b, 3) || put_str(&b, "SCRIPT") || put_str(&b, "LOAD") || put_str(&b, append_script);
    n += 3;
    if (bad) {
        as_buf_free(&b);
        rd_drop(rs);
        return as_error_nomem(err);
    }
    st = rd_exchange(rs, &b, 0, n, r, err);
    as_buf_free(&b);
    if (st != AS_OK) return st;
    for (i = 0; i < n && st == AS_OK; i++) {
        if (r[i]->type != REDIS_REPLY_ERROR) continue;
        if (rs->password && i == 0) {
            rd_fail(rs, AS_EINVALID, err, "the server refuses it: %.300s", r[i]->str);
            as_error_prefix(err, "password");
            st = AS_EINVALID;
        } else if (has_prefix(r[i], "NOAUTH")) {
            rd_fail(rs, AS_EINVALID, err, "the server requires one: %.300s", r[i]->str);
            as_error_prefix(err, "password");
            st = AS_EINVALID;
        } else if (i == select_at) {
            rd_fail(rs, AS_EINVALID, err, "the server refuses db %d: %.300s", rs->db, r[i]->str);
            as_error_prefix(err, "db");
            st = AS_EINVALID;
        } else st = reply_error(rs, r[i], NULL, err);
    }
    if (st == AS_OK && (!is_sha(r[n - 3]) || !is_sha(r[n - 2]) || !is_sha(r[n - 1])))
        st = rd_fail(rs, AS_ESTORAGE, err, "SCRIPT LOAD gave no script hash");
    if (st == AS_OK) {
        memcpy(rs->load_sha, r[n - 3]->str, 40);
        memcpy(rs->list_sha, r[n - 2]->str, 40);
        memcpy(rs->append_sha, r[n - 1]->str, 40);
    } else rd_drop(rs);
    free_replies(r, n);
    return st;
}

/* Whether the server closed the connection while it was idle: the socket
** then reads as ended (or holds bytes nobody asked for) without waiting. */
static int rd_stale(redis_store *rs) {
    char c;
    ssize_t k;
    if (rs->cur->c == NULL) return 0;
    k = recv(rs->cur->c->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* One round trip on rs->cur: the request in rs->req (its `n` commands, after
** what req_start put first). A request that changes nothing (`reads`) is sent
** again once on a new connection when the connection an earlier call left
** turns out to be broken (a restarted server, a dropped idle client). On a
** cluster, a request that failed before it was sent whole, or that only
** reads, runs again (AS_ERETRY) once the slot map is learnt anew. */
static as_status rd_roundtrip(redis_store *rs, size_t n, redisReply **r, int reads, as_error *err) {
    int again = 0;
    if (rd_stale(rs)) rd_drop(rs); /* reconnect now rather than fail after sending */
    for (;;) {
        int fresh = rs->cur->c == NULL;
        as_status st;
        if (fresh) {
            st = rd_connect(rs, err);
            rs->sent = 0; /* what it sent was its own request, not this one */
            if (st == AS_EUNAVAILABLE && rs->cluster) return rd_again_lost(rs, err);
            if (st != AS_OK) return st;
        }
        if (fresh && rs->req_unwatch) {
            /* the new connection watches nothing: drop the UNWATCH in front */
            memmove(rs->req.data, rs->req.data + UNWATCH_LEN, rs->req.len - UNWATCH_LEN);
            rs->req.len -= UNWATCH_LEN;
            rs->req_skip--;
            rs->req_unwatch = 0;
        }
        st = rd_exchange(rs, &rs->req, rs->req_skip, n, r, err);
        if (st == AS_OK) rs->cur->watching = 0;
        if (st == AS_EUNAVAILABLE && rs->cluster && (reads || !rs->sent))
            return rd_again_lost(rs, err);
        if (st != AS_EUNAVAILABLE || !reads || fresh || again) return st;
        again = 1;
    }
}

/* ---------------------------------------------------------------- the cluster's map */

/* The node at host:port, added to those known when it is new. */
static rconn *node_get(redis_store *rs, const char *host, size_t hlen, int port, as_error *err) {
    size_t i;
    rconn *k;
    for (i = 0; i < rs->nnodes; i++)
        if (rs->nodes[i]->port == port && strlen(rs->nodes[i]->host) == hlen
            && memcmp(rs->nodes[i]->host, host, hlen) == 0)
            return rs->nodes[i];
    if (rs->nnodes >= 65535 || hlen > 255) {
        as_error_set(err, AS_ESTORAGE, "%s: the cluster names too many nodes or too long a host",
                     rs->where);
        return NULL;
    }
    if (rs->nnodes == rs->capnodes) {
        size_t cap = rs->capnodes ? rs->capnodes * 2 : 8;
        rconn **grown = as_realloc(rs->nodes, cap * sizeof *grown);
        if (grown == NULL) {
            as_error_nomem(err);
            return NULL;
        }
        rs->nodes = grown;
        rs->capnodes = cap;
    }
    if ((k = as_calloc(1, sizeof *k)) == NULL || (k->host = as_strndup(host, hlen)) == NULL) {
        as_free(k);
        as_error_nomem(err);
        return NULL;
    }
    k->port = port;
    k->sock_ms = -1;
    snprintf(k->where, sizeof k->where, memchr(host, ':', hlen) ? "redis at [%s]:%d" : "redis at %s:%d",
             k->host, port);
    rs->nodes[rs->nnodes++] = k;
    return k;
}

static size_t node_index(redis_store *rs, const rconn *k) {
    size_t i;
    for (i = 0; i < rs->nnodes; i++)
        if (rs->nodes[i] == k) return i;
    return 0;
}

/* Asks rs->cur for the slot map (CLUSTER SLOTS) and takes it. */
static as_status ask_slots(redis_store *rs, as_error *err) {
    static const char req[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    as_buf b = AS_BUF_INIT;
    redisReply *r[1] = { NULL };
    uint16_t *map = NULL;
    size_t i;
    as_status st;
    if (rd_stale(rs)) rd_drop(rs);
    if (rs->cur->c == NULL && (st = rd_connect(rs, err)) != AS_OK) return st;
    if (as_buf_put(&b, req, sizeof req - 1)) return as_error_nomem(err);
    st = rd_exchange(rs, &b, 0, 1, r, err);
    as_buf_free(&b);
    if (st != AS_OK) return st;
    if (r[0]->type == REDIS_REPLY_ERROR) {
        if (strstr(r[0]->str, "cluster support disabled")) {
            rd_fail(rs, AS_EINVALID, err, "not a Redis Cluster node (cluster-enabled is off): "
                    "open it without `cluster`");
            as_error_prefix(err, "cluster");
            st = AS_EINVALID;
        } else st = reply_error(rs, r[0], NULL, err);
        if (st == AS_ERETRY) st = as_error_set(err, AS_EUNAVAILABLE, "%s", rs->why);
        goto done;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY
        || (map = as_calloc(SLOTS, sizeof *map)) == NULL) {
        st = r[0]->type != REDIS_REPLY_ARRAY
                 ? rd_fail(rs, AS_ESTORAGE, err, "CLUSTER SLOTS gave an unexpected reply")
                 : as_error_nomem(err);
        goto done;
    }
    for (i = 0; i < r[0]->elements; i++) {
        const redisReply *e = r[0]->element[i], *m;
        const char *host;
        size_t hlen;
        long long s;
        rconn *k;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY
            || (m = e->element[2])->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING
            || m->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0
            || e->element[1]->integer >= SLOTS || e->element[0]->integer > e->element[1]->integer
            || m->element[1]->integer < 1 || m->element[1]->integer > 65535) {
            st = rd_fail(rs, AS_ESTORAGE, err, "CLUSTER SLOTS gave an unexpected reply");
            goto done;
        }
        host = m->element[0]->str;
        hlen = m->element[0]->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) { /* "the node you asked" */
            host = rs->cur->host;
            hlen = strlen(host);
        }
        if ((k = node_get(rs, host, hlen, (int)m->element[1]->integer, err)) == NULL) {
            st = err->status;
            goto done;
        }
        for (s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            map[s] = (uint16_t)(node_index(rs, k) + 1);
    }
    if (r[0]->elements == 0) {
        /* a node not yet joined to the cluster, or one that lost its configuration */
        st = rd_fail(rs, AS_EUNAVAILABLE, err, "the node knows no slot of the cluster");
        goto done;
    }
    memcpy(rs->slots, map, SLOTS * sizeof *map);
    st = AS_OK;
done:
    as_free(map);
    free_replies(r, 1);
    return st;
}

/* Learns the slot map from the first node that answers, beginning with the
** last one that did. */
static as_status refresh_map(redis_store *rs, as_error *err) {
    size_t n = rs->nnodes, t;
    as_status st = AS_EUNAVAILABLE;
    for (t = 0; t < n; t++) {
        size_t i = (rs->ask_from + t) % n;
        rs->cur = rs->nodes[i];
        st = ask_slots(rs, err);
        if (st == AS_OK) {
            rs->ask_from = i;
            rs->stale_map = 0;
            rs->stats.refreshes++;
            return AS_OK;
        }
        if (st != AS_EUNAVAILABLE && st != AS_ESTORAGE) return st;
    }
    return st;
}

/* Makes rs->cur the connection to the master of `slot`. */
static as_status route_slot(redis_store *rs, unsigned slot, as_error *err) {
    as_status st;
    if (!rs->cluster) {
        rs->cur = rs->nodes[0];
        return AS_OK;
    }
    if (rs->stale_map || rs->slots[slot] == 0) {
        if ((st = refresh_map(rs, err)) == AS_EUNAVAILABLE || st == AS_ESTORAGE)
            return rd_again_lost(rs, err);
        if (st != AS_OK) return st;
        if (rs->slots[slot] == 0) {
            char why[AS_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%.300s: no master serves slot %u", rs->where, slot);
            rs->stale_map = 1;
            return rd_again(rs, 50000, why, err);
        }
    }
    rs->cur = rs->nodes[rs->slots[slot] - 1];
    return AS_OK;
}

/* Routes to the master of the session's shard, whose keys are built next. */
static as_status route_id(redis_store *rs, const char *id, as_error *err) {
    unsigned k = rs->cluster ? shard_of(id) : 0;
    use_shard(rs, k);
    return route_slot(rs, rs->shard_slot[k], err);
}

/* ---------------------------------------------------------------- reading */

/* A field of a meta hash as read: its bytes, or absent (s NULL). `text` is
** 0 for a value that is not a string (a damaged reply). */
typedef struct field {
    const char *s;
    size_t len;
    int text;
} field;

static field field_of(const redisReply *v) {
    field f = { NULL, 0, 0 };
    if (v == NULL || v->type == REDIS_REPLY_NIL) return f;
    f.text = v->type == REDIS_REPLY_STRING;
    f.s = f.text ? v->str : "";
    f.len = f.text ? v->len : 0;
    return f;
}

/* A decimal integer as this store writes it (an optional '-', then digits),
** in [lo, hi]. */
static as_status parse_int(redis_store *rs, const char *id, const field *v, const char *name,
                           int64_t lo, int64_t hi, int64_t *out, as_error *err) {
    char what[96];
    if (v->text && v->len > 0 && v->len <= 20) {
        const char *p = v->s, *e = v->s + v->len;
        int neg = *p == '-';
        uint64_t x = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        p += neg;
        if (p < e) {
            for (; p < e && *p >= '0' && *p <= '9'; p++) {
                unsigned d = (unsigned)(*p - '0');
                if (x > (limit - d) / 10) break;
                x = x * 10 + d;
            }
        } else p = NULL;
        if (p == e) {
            int64_t n = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) : (int64_t)x;
            if (n >= lo && n <= hi) {
                *out = n;
                return AS_OK;
            }
        }
    }
    snprintf(what, sizeof what, "%s is not an integer in range", name);
    return rd_damaged(rs, id, what, err);
}

static as_status parse_text(redis_store *rs, const char *id, const field *v, const char *name,
                            char **out, as_error *err) {
    char what[96];
    if (!v->text || memchr(v->s, '\0', v->len) != NULL) {
        snprintf(what, sizeof what, "%s is not text", name);
        return rd_damaged(rs, id, what, err);
    }
    if ((*out = as_strndup(v->s, v->len)) == NULL) return as_error_nomem(err);
    return AS_OK;
}

static as_status parse_tags(redis_store *rs, const char *id, const field *v, as_meta *m,
                            as_error *err) {
    size_t i, n = 1, start = 0;
    if (!v->text || memchr(v->s, '\0', v->len) != NULL)
        return rd_damaged(rs, id, "tags is not text", err);
    if (v->len == 0) return AS_OK;
    for (i = 0; i < v->len; i++) n += v->s[i] == '\n';
    if ((m->tags = as_calloc(n, sizeof(char *))) == NULL) return as_error_nomem(err);
    for (i = 0; i <= v->len; i++) {
        if (i < v->len && v->s[i] != '\n') continue;
        if ((m->tags[m->ntags] = as_strndup(v->s + start, i - start)) == NULL)
            return as_error_nomem(err);
        m->ntags++;
        start = i + 1;
    }
    return AS_OK;
}

enum { F_ID, F_NAME, F_AGENT, F_PARENT, F_TAGS, F_CREATED, F_UPDATED, F_TURNS, F_TOKENS,
       F_VERSION, F_SEQ, F_BYTES, F_COUNT };

static const char *const field_names[F_COUNT] = {
    "id", "name", "agent_name", "parent_id", "tags", "created_at", "updated_at", "turn_count",
    "total_tokens", "version", "seq", "bytes"
};

/* The metadata from its fields. `id`: the id it must have (NULL: any). */
static as_status meta_of_fields(redis_store *rs, const char *id, const field *f, as_meta *m,
                                int64_t *seq, int64_t *bytes, as_error *err) {
    const char *who = id ? id : "?";
    size_t ntags;
    int k;
    int64_t v;
    as_status st;
    memset(m, 0, sizeof *m);
    for (k = 0; k < F_COUNT; k++) {
        char what[AS_ERROR_MESSAGE_MAX], idbuf[72];
        if (f[k].s || k == F_NAME || k == F_PARENT) continue;
        if (f[F_ID].text && id == NULL) {
            snprintf(idbuf, sizeof idbuf, "%.*s", (int)(f[F_ID].len > 64 ? 64 : f[F_ID].len),
                     f[F_ID].s);
            who = idbuf;
        }
        snprintf(what, sizeof what, "its metadata has no %s", field_names[k]);
        return rd_damaged(rs, who, what, err);
    }
    if ((st = parse_text(rs, who, &f[F_ID], "id", &m->id, err)) != AS_OK) goto fail;
    who = m->id;
    if (id && strcmp(m->id, id) != 0) {
        st = rd_damaged(rs, id, "its metadata names another id", err);
        goto fail;
    }
    if ((f[F_NAME].s && (st = parse_text(rs, who, &f[F_NAME], "name", &m->name, err)) != AS_OK)
        || (st = parse_text(rs, who, &f[F_AGENT], "agent_name", &m->agent_name, err)) != AS_OK
        || (f[F_PARENT].s
            && (st = parse_text(rs, who, &f[F_PARENT], "parent_id", &m->parent_id, err)) != AS_OK)
        || (st = parse_tags(rs, who, &f[F_TAGS], m, err)) != AS_OK
        || (st = parse_int(rs, who, &f[F_CREATED], "created_at", INT64_MIN, INT64_MAX,
                           &m->created_at, err)) != AS_OK
        || (st = parse_int(rs, who, &f[F_UPDATED], "updated_at", INT64_MIN, INT64_MAX,
                           &m->updated_at, err)) != AS_OK)
        goto fail;
    if ((st = parse_int(rs, who, &f[F_TURNS], "turn_count", 0, UINT32_MAX, &v, err)) != AS_OK)
        goto fail;
    m->turn_count = (uint32_t)v;
    if ((st = parse_int(rs, who, &f[F_TOKENS], "total_tokens", 0, INT64_MAX, &v, err)) != AS_OK)
        goto fail;
    m->total_tokens = (uint64_t)v;
    if ((st = parse_int(rs, who, &f[F_VERSION], "version", 1, INT64_MAX, &m->version, err))
            != AS_OK
        || (st = parse_int(rs, who, &f[F_SEQ], "seq", 1, INT64_MAX, seq, err)) != AS_OK
        || (st = parse_int(rs, who, &f[F_BYTES], "bytes", 0, INT64_MAX, bytes, err)) != AS_OK)
        goto fail;
    ntags = m->ntags;
    st = as_meta_check(m, err);
    if (st == AS_EINVALID || (st == AS_OK && m->ntags != ntags)) {
        char why[320];
        if (st == AS_OK) snprintf(why, sizeof why, "it repeats a tag");
        else snprintf(why, sizeof why, "%.100s: %.200s", err->path, err->message);
        st = rd_damaged(rs, who, why, err);
    }
    if (st == AS_OK) return AS_OK;
fail:
    as_meta_clear(m);
    return st;
}

/* The field a name of the meta hash stands for; F_COUNT for another. */
static int field_index(const char *s, size_t len) {
    int k;
    switch (len) {
    case 2: k = F_ID; break;
    case 3: k = F_SEQ; break;
    case 4: k = s[0] == 'n' ? F_NAME : F_TAGS; break;
    case 5: k = F_BYTES; break;
    case 7: k = F_VERSION; break;
    case 9: k = F_PARENT; break;
    case 10: k = s[0] == 'a' ? F_AGENT : s[0] == 'c' ? F_CREATED : s[0] == 'u' ? F_UPDATED
                                                                            : F_TURNS;
        break;
    case 12: k = F_TOKENS; break;
    default: return F_COUNT;
    }
    return memcmp(field_names[k], s, len) == 0 ? k : F_COUNT;
}

/* The metadata from a meta hash (HGETALL's flat array). `id`: the id it must
** have (NULL: any). */
static as_status parse_meta(redis_store *rs, const char *id, const redisReply *h, as_meta *m,
                            int64_t *seq, int64_t *bytes, as_error *err) {
    field f[F_COUNT];
    size_t i;
    memset(f, 0, sizeof f);
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0) {
        memset(m, 0, sizeof *m);
        return rd_damaged(rs, id ? id : "?", "its metadata is not a hash", err);
    }
    for (i = 0; i < h->elements; i += 2) {
        const redisReply *name = h->element[i];
        int k;
        if (name->type != REDIS_REPLY_STRING) continue;
        if ((k = field_index(name->str, name->len)) < F_COUNT) f[k] = field_of(h->element[i + 1]);
    }
    return meta_of_fields(rs, id, f, m, seq, bytes, err);
}

/* The fields in the order the scripts read them (META_FIELDS): those every
** session has, then name and parent_id. */
static const int packed_order[F_COUNT] = {
    F_ID, F_AGENT, F_TAGS, F_CREATED, F_UPDATED, F_TURNS, F_TOKENS, F_VERSION, F_SEQ, F_BYTES,
    F_NAME, F_PARENT
};

/* The metadata from a script's `pack`: one string, the fields every session
** has joined by NULs (which no field of a sound store holds), then name
** and parent_id when present, then a mark saying which are ("0", "n", "p" or
** "b"); or, when one of the fields every session has is missing, HMGET's
** array of the fields (nil for absent). */
static as_status parse_packed(redis_store *rs, const char *id, const redisReply *v, as_meta *m,
                              int64_t *seq, int64_t *bytes, as_error *err) {
    field f[F_COUNT];
    size_t i;
    memset(f, 0, sizeof f);
    if (v->type == REDIS_REPLY_ARRAY && v->elements == F_COUNT) {
        for (i = 0; i < F_COUNT; i++) f[packed_order[i]] = field_of(v->element[i]);
    } else if (v->type == REDIS_REPLY_STRING && v->len >= 2 && v->str[v->len - 2] == '\0') {
        char mark = v->str[v->len - 1];
        size_t want = mark == '0' ? 10 : mark == 'n' || mark == 'p' ? 11 : mark == 'b' ? 12 : 0, n;
        const char *p = v->str, *end = v->str + v->len - 2;
        for (n = 0;; n++) {
            const char *nul = memchr(p, '\0', (size_t)(end - p)), *stop = nul ? nul : end;
            if (n < want) {
                int k = n < 10 ? packed_order[n] : n == 10 && mark != 'p' ? F_NAME : F_PARENT;
                f[k].s = p;
                f[k].len = (size_t)(stop - p);
                f[k].text = 1;
            }
            if (nul == NULL) break;
            p = nul + 1;
        }
        if (n + 1 != want) {
            char who[72];
            /* the id comes first */
            const char *nul = memchr(v->str, '\0', v->len);
            size_t idlen = (size_t)(nul - v->str);
            snprintf(who, sizeof who, "%.*s", (int)(idlen > 64 ? 64 : idlen), v->str);
            memset(m, 0, sizeof *m);
            return rd_damaged(rs, id ? id : who, "its metadata is not what this store writes",
                              err);
        }
    } else {
        memset(m, 0, sizeof *m);
        return rd_damaged(rs, id ? id : "?", "its metadata is not a hash", err);
    }
    return meta_of_fields(rs, id, f, m, seq, bytes, err);
}

static int put_script_call(as_buf *b, const char *sha, const char *text,
                           size_t nargs) {
    if (sha[0]) return put_head(b, nargs + 2) || put_str(b, "EVALSHA") || put_str(b, sha);
    return put_head(b, nargs + 2) || put_str(b, "EVAL") || put_str(b, text);
}

/* The LRANGE start and stop of a span's messages; 0 when it needs none. */
static int span_range(const as_span *span, int64_t *start, int64_t *stop) {
    if (span == NULL || span->count == 0) return 0;
    if (span->first == AS_SPAN_TAIL) {
        *start = span->count > (size_t)INT64_MAX ? 0 : -(int64_t)span->count;
        *stop = -1;
        return 1;
    }
    if (span->first > (size_t)INT64_MAX) return 0; /* past any end */
    *start = (int64_t)span->first;
    *stop = span->count > (size_t)INT64_MAX - span->first ? -1
                                                          : (int64_t)(span->first + span->count) - 1;
    return 1;
}

/* A read-only load: MULTI, the reads, EXEC. Atomic, and the texts go from the
** server's keys to the reply without passing through a script. Fills r[]
** (up to 6 replies) and points the parts at the EXEC reply's elements. On a
** cluster, a slot on its way to another master is read there (ASKING) once
** its keys have left: the node answers TRYAGAIN while only some have come. */
static as_status load_read(redis_store *rs, const char *id, const as_span *span, redisReply **r,
                           size_t *n, const redisReply **parts, as_error *err) {
    as_buf *b = &rs->req;
    int64_t start, stop;
    int range = span_range(span, &start, &stop), state = span != NULL;
    size_t k = 4 + (size_t)range + (size_t)state, i;
    const redisReply *exec;
    rconn *ask = NULL;
    as_status status;
    *n = k;
    for (;;) {
        int bad;
        if (ask) rs->cur = ask;
        bad = req_start(rs);
        if (ask) {
            bad |= put_head(b, 1) || put_str(b, "ASKING");
            rs->req_skip++;
        }
        bad |= put_head(b, 1) || put_str(b, "MULTI") || put_head(b, 2)
               || put_str(b, "HGETALL") || put_skey(rs, b, id, "meta") || put_head(b, 2)
               || put_str(b, "LLEN") || put_skey(rs, b, id, "msgs");
        if (range)
            bad |= put_head(b, 4) || put_str(b, "LRANGE") || put_skey(rs, b, id, "msgs")
                   || put_int(b, start) || put_int(b, stop);
        if (state) bad |= put_head(b, 2) || put_str(b, "GET") || put_skey(rs, b, id, "state");
        bad |= put_head(b, 1) || put_str(b, "EXEC");
        if (bad) return as_error_nomem(err);
        if ((status = rd_roundtrip(rs, k, r, 1, err)) != AS_OK) return status;
        exec = r[k - 1];
        if (exec->type == REDIS_REPLY_ERROR && rs->cluster && ask == NULL) {
            long slot = -1;
            for (i = 1; i + 1 < k && ask == NULL; i++)
                if (has_prefix(r[i], "ASK ")) ask = redirect_target(rs, r[i], 4, &slot, err);
            if (slot == -2) return err->status;
            if (ask) {
                rs->stats.redirections++;
                free_replies(r, k);
                continue;
            }
        }
        break;
    }
    if (exec->type == REDIS_REPLY_ERROR) {
        /* EXECABORT: the first command refused as it was queued says why */
        for (i = 1; i + 1 < k && r[i]->type != REDIS_REPLY_ERROR; i++) continue;
        return reply_error(rs, i + 1 < k ? r[i] : exec, id, err);
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != k - 2)
        return rd_damaged(rs, id, "EXEC gave an unexpected reply", err);
    for (i = 0; i < exec->elements; i++)
        if (exec->element[i]->type == REDIS_REPLY_ERROR)
            return reply_error(rs, exec->element[i], id, err);
    parts[0] = exec->element[0];
    parts[1] = exec->element[1];
    parts[2] = range ? exec->element[2] : NULL;
    parts[3] = state ? exec->element[2 + range] : NULL;
    if (parts[0]->type == REDIS_REPLY_ARRAY && parts[0]->elements == 0) return AS_ENOTFOUND;
    return AS_OK;
}

/* A load in a write transaction: WATCH the metadata key, then read through
** the load script (atomic, and it leaves the WATCH in place). */
static as_status load_watched(redis_store *rs, const char *id, const as_span *span,
                              redisReply **r, size_t *n, const redisReply **parts,
                              as_error *err) {
    int64_t start = 0, stop = -1;
    const char *want = span == NULL ? "m" : span_range(span, &start, &stop) ? "r" : "s";
    const redisReply *res;
    int by_text = 0;
    as_status status;
    *n = 2;
    for (;;) {
        int bad = req_start(rs) || put_head(&rs->req, 2) || put_str(&rs->req, "WATCH")
                  || put_skey(rs, &rs->req, id, "meta")
                  || put_script_call(&rs->req, by_text ? "" : rs->load_sha, load_script, 7)
                  || put_str(&rs->req, "3") || put_skey(rs, &rs->req, id, "meta")
                  || put_skey(rs, &rs->req, id, "msgs") || put_skey(rs, &rs->req, id, "state")
                  || put_str(&rs->req, want) || put_int(&rs->req, start)
                  || put_int(&rs->req, stop);
        if (bad) return as_error_nomem(err);
        if ((status = rd_roundtrip(rs, 2, r, 1, err)) != AS_OK) return status;
        if (r[0]->type == REDIS_REPLY_ERROR) return reply_error(rs, r[0], id, err);
        rs->cur->watching = 1;
        rs->cur->watch_gen = rs->cur->generation;
        rs->watched = rs->cur;
        if (by_text || !has_prefix(r[1], "NOSCRIPT")) break;
        free_replies(r, 2);
        by_text = 1; /* the server lost its scripts (SCRIPT FLUSH): send the text */
    }
    res = r[1];
    if (res->type == REDIS_REPLY_NIL) return AS_ENOTFOUND;
    if (res->type == REDIS_REPLY_ERROR) return reply_error(rs, res, id, err);
    if (res->type != REDIS_REPLY_ARRAY || (res->elements != 2 && res->elements != 4))
        return rd_damaged(rs, id, "the load script gave an unexpected reply", err);
    parts[0] = res->element[0];
    parts[1] = res->element[1];
    parts[2] = res->elements == 4 ? res->element[2] : NULL;
    parts[3] = res->elements == 4 ? res->element[3] : NULL;
    return AS_OK;
}

static as_status rd_load(as_store *st, const char *id, const as_span *span, as_session *out,
                         as_stored *info, as_error *err) {
    redis_store *rs = (redis_store *)st;
    redisReply *r[6] = { NULL, NULL, NULL, NULL, NULL, NULL };
    const redisReply *parts[4] = { NULL, NULL, NULL, NULL };
    size_t n = 0, i, first = 0, count = 0;
    int64_t seq, len, bytes;
    as_status status;
    memset(out, 0, sizeof *out);
    if ((status = route_id(rs, id, err)) != AS_OK) return status;
    if (rs->write) status = load_watched(rs, id, span, r, &n, parts, err);
    else status = load_read(rs, id, span, r, &n, parts, err);
    if (status != AS_OK) goto done;
    if (parts[1]->type != REDIS_REPLY_INTEGER || parts[1]->integer < 0) {
        status = rd_damaged(rs, id, "its message count is not a number", err);
        goto done;
    }
    if ((status = parse_meta(rs, id, parts[0], &out->meta, &seq, &bytes, err)) != AS_OK)
        goto done;
    len = parts[1]->integer;
    if (parts[3]) {
        const redisReply *state = parts[3];
        if (state->type != REDIS_REPLY_STRING) {
            status = rd_damaged(rs, id, state->type == REDIS_REPLY_NIL ? "its state is missing"
                                                                     : "its state is not text",
                             err);
            goto done;
        }
        if ((out->state = as_blob_new(state->str, state->len)) == NULL) {
            status = as_error_nomem(err);
            goto done;
        }
    }
    if (span) as_span_clip(span, (size_t)len, &first, &count);
    if (parts[2]) {
        const redisReply *msgs = parts[2];
        if (msgs->type != REDIS_REPLY_ARRAY || msgs->elements != (uint64_t)count) {
            status = rd_damaged(rs, id, "its messages are not a list of texts", err);
            goto done;
        }
        if (msgs->elements > 0
            && (out->msgs = as_calloc(msgs->elements, sizeof(as_blob *))) == NULL) {
            status = as_error_nomem(err);
            goto done;
        }
        for (i = 0; i < msgs->elements; i++) {
            const redisReply *t = msgs->element[i];
            if (t->type != REDIS_REPLY_STRING) {
                status = rd_damaged(rs, id, "a message is not text", err);
                goto done;
            }
            if ((out->msgs[i] = as_blob_new(t->str, t->len)) == NULL) {
                status = as_error_nomem(err);
                goto done;
            }
            out->nmsgs++;
        }
    }
    info->bytes = (size_t)bytes;
    info->total = (size_t)len;
    info->first = first;
    info->note = seq; /* its members in the indexes, which a write replaces */
done:
    free_replies(r, n);
    if (status != AS_OK) as_session_clear(out);
    return status;
}

/* ---------------------------------------------------------------- the search index */

/* The search keys of each message, " k1 k2 ... " (a space around each, ""
** without any), appended to keys: message i's at [at[i], at[i + 1]); then
** the distinct keys of them all and of `label` (NULL: none), each followed
** by a space, from at[n] to the end, *ndistinct of them. *at is allocated
** here (freed by the caller, also on failure). */
static int index_keys(as_blob *const *msgs, size_t n, const as_meta *label, as_buf *keys,
                      size_t **at, size_t *ndistinct) {
    as_buf text = AS_BUF_INIT, all = AS_BUF_INIT;
    size_t i;
    int bad = 0;
    *ndistinct = 0;
    if (n >= SIZE_MAX / sizeof **at || (*at = as_malloc((n + 1) * sizeof **at)) == NULL) return -1;
    if (label) bad = as_search_label(label, &all) != 0 || as_buf_putc(&all, '\n') != 0;
    for (i = 0; i < n && !bad; i++) {
        size_t start = keys->len;
        (*at)[i] = start;
        text.len = 0;
        bad = as_search_text(msgs[i]->text, msgs[i]->len, &text) != 0 || as_buf_putc(keys, ' ') != 0
              || as_search_keys(text.data ? text.data : "", text.len, ' ', keys) != 0
              || as_buf_put(&all, text.data, text.len) != 0 || as_buf_putc(&all, '\n') != 0;
        if (!bad && keys->len == start + 1) keys->len = start;
    }
    (*at)[n] = keys->len;
    /* one message's keys are distinct already (" k1 k2 ": all but the first space) */
    if (!bad && n == 1 && label == NULL) {
        size_t len = (*at)[1] > (*at)[0] ? (*at)[1] - (*at)[0] - 1 : 0;
        if (len > 0 && !(bad = as_buf_reserve(keys, len) != 0)) {
            memcpy(keys->data + keys->len, keys->data + (*at)[0] + 1, len);
            keys->len += len;
        }
    } else if (!bad) bad = as_search_keys(all.data ? all.data : "", all.len, ' ', keys) != 0;
    for (i = (*at)[n]; !bad && i < keys->len; i++) *ndistinct += keys->data[i] == ' ';
    as_buf_free(&text);
    as_buf_free(&all);
    return bad ? -1 : 0;
}

/* Puts the keys (each followed by a space) of keys[from, end) as bulk strings. */
static int put_keys(as_buf *b, const as_buf *keys, size_t from) {
    size_t i = from, start = from;
    int bad = 0;
    for (; i < keys->len && !bad; i++) {
        if (keys->data[i] != ' ') continue;
        bad = put_bulk(b, keys->data + start, i - start);
        start = i + 1;
    }
    return bad;
}

/* Puts the sets of the keys (each followed by a space) of keys[from, end):
** P w: key. */
static int put_sets(redis_store *rs, as_buf *b, const as_buf *keys, size_t from) {
    size_t i = from, start = from;
    int bad = 0;
    for (; i < keys->len && !bad; i++) {
        if (keys->data[i] != ' ') continue;
        bad = put_bulk_head(b, rs->splen + 2 + (i - start)) || as_buf_put(b, rs->sp, rs->splen)
              || as_buf_puts(b, "w:") || as_buf_put(b, keys->data + start, i - start)
              || as_buf_puts(b, "\r\n");
        start = i + 1;
    }
    return bad;
}

/* The words script, after a write's other commands: the keys of the
** messages appended, and those of them and of the label to file it under. */
static int queue_words(redis_store *rs, const as_write *w) {
    as_buf *q = &rs->q, keys = AS_BUF_INIT;
    size_t *at = NULL, i, distinct = 0;
    char num[24];
    int bad = index_keys(w->append, w->nappend, w->meta, &keys, &at, &distinct) != 0;
    size_t sets = rs->cluster ? distinct : 0;
    snprintf(num, sizeof num, "%zu", w->nappend);
    bad = bad || put_head(q, 10 + w->nappend + distinct + sets) || put_str(q, "EVAL")
          || put_str(q, words_script) || put_int(q, (int64_t)(4 + sets))
          || put_skey(rs, q, w->meta->id, "msgs")
          || put_skey(rs, q, w->meta->id, "words") || put_skey(rs, q, w->meta->id, "mw")
          || put_skey(rs, q, w->meta->id, "tmp");
    if (sets && !bad) bad = put_sets(rs, q, &keys, at[w->nappend]);
    bad = bad || put_sp(rs, q) || put_str(q, w->meta->id) || put_str(q, num);
    for (i = 0; i < w->nappend && !bad; i++)
        bad = put_bulk(q, keys.data ? keys.data + at[i] : "", at[i + 1] - at[i]);
    bad = bad || put_keys(q, &keys, at ? at[w->nappend] : 0);
    rs->nq++;
    as_free(at);
    as_buf_free(&keys);
    return bad;
}

/* ---------------------------------------------------------------- writing */

/* Starts the queue of the writes to the session `id`, sent at commit. */
static int queue_start(redis_store *rs, const char *id) {
    if (rs->nq > 0) return 0;
    snprintf(rs->qid, sizeof rs->qid, "%s", id);
    rs->q.len = 0;
    rs->nq = 1;
    return put_head(&rs->q, 1) || put_str(&rs->q, "MULTI");
}

/* ZREM of the member `seq` of the stored session `m` from every index it is in. */
static int queue_unindex(redis_store *rs, const as_meta *m, int64_t seq) {
    as_buf *q = &rs->q;
    int bad = 0;
    size_t i;
    bad |= put_head(q, 3) || put_str(q, "ZREM") || put_ikey(rs, q, "all", NULL)
           || put_member(q, seq, m->id);
    bad |= put_head(q, 3) || put_str(q, "ZREM") || put_ikey(rs, q, "agent:", m->agent_name)
           || put_member(q, seq, m->id);
    rs->nq += 2;
    if (m->parent_id) {
        bad |= put_head(q, 3) || put_str(q, "ZREM") || put_ikey(rs, q, "parent:", m->parent_id)
               || put_member(q, seq, m->id);
        rs->nq++;
    }
    for (i = 0; i < m->ntags; i++) {
        bad |= put_head(q, 3) || put_str(q, "ZREM") || put_ikey(rs, q, "tag:", m->tags[i])
               || put_member(q, seq, m->id);
        rs->nq++;
    }
    return bad;
}

/* The metadata, its size (`bytes`) and the length of its JSON (`metalen`,
** which the append script keeps up to date as the counters grow). */
static int queue_meta(redis_store *rs, const as_meta *m, size_t bytes) {
    as_buf *q = &rs->q;
    as_buf json = AS_BUF_INIT;
    size_t i, tlen = 0, pairs = 10 + (m->name != NULL) + (m->parent_id != NULL), metalen;
    int bad = as_meta_write_json(&json, m);
    metalen = json.len;
    as_buf_free(&json);
    bad = bad || put_head(q, 2) || put_str(q, "DEL") || put_skey(rs, q, m->id, "meta");
    bad |= put_head(q, 2 + 2 * pairs) || put_str(q, "HSET") || put_skey(rs, q, m->id, "meta");
    bad |= put_str(q, "id") || put_str(q, m->id) || put_str(q, "agent_name")
           || put_str(q, m->agent_name);
    if (m->name) bad |= put_str(q, "name") || put_str(q, m->name);
    if (m->parent_id) bad |= put_str(q, "parent_id") || put_str(q, m->parent_id);
    for (i = 0; i < m->ntags; i++) tlen += strlen(m->tags[i]) + (i > 0);
    bad |= put_str(q, "tags") || put_bulk_head(q, tlen);
    for (i = 0; i < m->ntags; i++)
        bad |= (i > 0 ? as_buf_putc(q, '\n') : 0) || as_buf_put(q, m->tags[i], strlen(m->tags[i]));
    bad |= as_buf_puts(q, "\r\n");
    bad |= put_str(q, "created_at") || put_int(q, m->created_at) || put_str(q, "updated_at")
           || put_int(q, m->updated_at) || put_str(q, "turn_count") || put_int(q, m->turn_count)
           || put_str(q, "total_tokens") || put_int(q, (int64_t)m->total_tokens)
           || put_str(q, "version") || put_int(q, m->version)
           || put_str(q, "bytes") || put_int(q, (int64_t)bytes)
           || put_str(q, "metalen") || put_int(q, (int64_t)metalen);
    rs->nq += 2;
    return bad;
}

/* The index script: numbers the write and files the session in its indexes. */
static int queue_index(redis_store *rs, const as_meta *m) {
    as_buf *q = &rs->q;
    size_t i, nkeys = 4 + (m->parent_id != NULL) + m->ntags;
    int bad;
    rs->index_at = rs->nq; /* its reply's place in EXEC's (MULTI is q's first) */
    bad = put_head(q, 3 + nkeys + 3) || put_str(q, "EVAL") || put_str(q, index_script)
              || put_int(q, (int64_t)nkeys) || put_ikey(rs, q, "seq", NULL)
              || put_skey(rs, q, m->id, "meta") || put_ikey(rs, q, "all", NULL)
              || put_ikey(rs, q, "agent:", m->agent_name);
    if (m->parent_id) bad |= put_ikey(rs, q, "parent:", m->parent_id);
    for (i = 0; i < m->ntags; i++) bad |= put_ikey(rs, q, "tag:", m->tags[i]);
    bad |= put_int(q, m->updated_at) || put_str(q, m->id) || put_int(q, (int64_t)rs->hi_seq);
    rs->nq++;
    return bad;
}

static as_status rd_write(as_store *st, const as_write *w, as_error *err) {
    redis_store *rs = (redis_store *)st;
    const as_meta *m = w->meta;
    as_buf *q = &rs->q;
    size_t i;
    int bad;
    as_status status;
    if ((status = route_id(rs, m->id, err)) != AS_OK) return status;
    bad = queue_start(rs, m->id) || queue_meta(rs, m, w->bytes);
    if (w->create) {
        /* a new session starts with no op ids, whatever a damaged store left */
        bad |= put_head(q, 2) || put_str(q, "DEL") || put_skey(rs, q, m->id, "ops");
        rs->nq++;
    }
    if (w->keep == 0) {
        bad |= put_head(q, 2) || put_str(q, "DEL") || put_skey(rs, q, m->id, "msgs");
        rs->nq++;
    } else if (w->keep != AS_KEEP_ALL && w->found && w->keep < w->found->total) {
        bad |= put_head(q, 4) || put_str(q, "LTRIM") || put_skey(rs, q, m->id, "msgs")
               || put_str(q, "0") || put_int(q, (int64_t)w->keep - 1);
        rs->nq++;
    }
    if (w->nappend > 0) {
        bad |= put_head(q, 2 + w->nappend) || put_str(q, "RPUSH") || put_skey(rs, q, m->id, "msgs");
        for (i = 0; i < w->nappend; i++) bad |= put_bulk(q, w->append[i]->text, w->append[i]->len);
        rs->nq++;
    }
    if (w->state) {
        bad |= put_head(q, 3) || put_str(q, "SET") || put_skey(rs, q, m->id, "state")
               || put_bulk(q, w->state->text, w->state->len);
        rs->nq++;
    }
    if (w->old) bad |= queue_unindex(rs, w->old, w->found->note);
    bad |= queue_index(rs, m);
    bad = bad || queue_words(rs, w);
    return bad ? as_error_nomem(err) : AS_OK;
}

static as_status rd_remove(as_store *st, const as_meta *old, const as_stored *found,
                           as_error *err) {
    redis_store *rs = (redis_store *)st;
    as_buf *q = &rs->q;
    size_t i, nkeys = 8 + (old->parent_id != NULL) + old->ntags;
    int bad;
    as_status status;
    if ((status = route_id(rs, old->id, err)) != AS_OK) return status;
    bad = queue_start(rs, old->id) || put_head(q, 3 + nkeys + 4) || put_str(q, "EVAL")
          || put_str(q, delete_script) || put_int(q, (int64_t)nkeys)
          || put_skey(rs, q, old->id, "meta") || put_skey(rs, q, old->id, "msgs")
          || put_skey(rs, q, old->id, "state") || put_skey(rs, q, old->id, "ops")
          || put_skey(rs, q, old->id, "words") || put_skey(rs, q, old->id, "mw")
          || put_ikey(rs, q, "all", NULL) || put_ikey(rs, q, "agent:", old->agent_name);
    if (old->parent_id) bad = bad || put_ikey(rs, q, "parent:", old->parent_id);
    for (i = 0; i < old->ntags; i++) bad = bad || put_ikey(rs, q, "tag:", old->tags[i]);
    bad = bad || put_sp(rs, q) || put_member(q, found->note, old->id) || put_str(q, old->id)
          || put_str(q, rs->cluster ? "1" : "0");
    rs->nq++;
    return bad ? as_error_nomem(err) : AS_OK;
}

/* ---------------------------------------------------------------- transactions */

static as_status rd_begin(as_store *st, int write, as_error *err) {
    redis_store *rs = (redis_store *)st;
    int64_t now = mono_us();
    if (!rs->again) {
        rs->retries = 0;
        rs->why[0] = '\0';
        rs->deadline = now + (int64_t)rs->timeout_ms * 1000;
    } else if (rs->again = 0, now >= rs->deadline) {
        if (rs->why[0]) return as_error_set(err, AS_EUNAVAILABLE, "%s", rs->why);
        return rd_fail(rs, AS_EUNAVAILABLE, err, "other clients kept changing the session for "
                    "%d ms", rs->timeout_ms);
    } else if (rs->backoff_us > 0) {
        /* a cluster's slot on the move or without a master: wait, within the call's time */
        int64_t wait = rs->backoff_us < rs->deadline - now ? rs->backoff_us : rs->deadline - now;
        struct timespec ts;
        ts.tv_sec = (time_t)(wait / 1000000);
        ts.tv_nsec = (long)(wait % 1000000) * 1000L;
        nanosleep(&ts, NULL);
        rs->backoff_us = 0;
    } else if (rs->retries > 2) {
        /* contention: wait up to a millisecond, at random, before the next attempt */
        struct timespec ts = { 0, 0 };
        rs->jitter ^= rs->jitter << 13;
        rs->jitter ^= rs->jitter >> 17;
        rs->jitter ^= rs->jitter << 5;
        ts.tv_nsec = (long)(rs->jitter % 1000) * 1000L;
        nanosleep(&ts, NULL);
    }
    rs->write = write;
    rs->nq = 0;
    rs->index_at = 0;
    rs->watched = NULL;
    /* a large session's request is not kept for the manager's lifetime */
    if (rs->req.cap > RELEASE_ABOVE) as_buf_free(&rs->req);
    if (rs->q.cap > RELEASE_ABOVE) as_buf_free(&rs->q);
    return AS_OK;
}

static void rd_rollback(as_store *st) {
    redis_store *rs = (redis_store *)st;
    rs->nq = 0;
    /* the watched keys stay watched until the next request's UNWATCH */
}

static as_status rd_retry(redis_store *rs) {
    rs->retries++;
    rs->stats.retries++;
    rs->again = 1;
    rs->nq = 0;
    return AS_ERETRY;
}

/* Sends the queued writes as MULTI ... EXEC on the master of their session.
** They go where the session they write was read and watched, except for a
** fork's copy on a cluster, which may lie on another master: a new session,
** which no one else can have changed since the source was read. */
static as_status rd_commit(as_store *st, as_error *err) {
    redis_store *rs = (redis_store *)st;
    redisReply **r = NULL, *exec;
    const char *id = rs->qid;
    size_t n = rs->nq + 1, i, skip = 0;
    as_status status = AS_OK;
    if (rs->nq == 0) return AS_OK;
    if ((status = route_id(rs, id, err)) != AS_OK) return status;
    /* the session was read on a connection since lost: what it watched is gone */
    if (rd_stale(rs)) rd_drop(rs);
    if (rs->watched == rs->cur || !rs->cluster) {
        if (rs->cur->c == NULL || !rs->cur->watching || rs->cur->watch_gen != rs->cur->generation)
            return rd_retry(rs);
    } else if (rs->cur->c == NULL) {
        rs->req.len = 0;
        rs->req_skip = 0;
        rs->req_unwatch = 0;
        if ((status = rd_connect(rs, err)) != AS_OK) {
            rs->nq = 0;
            return status == AS_EUNAVAILABLE ? rd_again_lost(rs, err) : status;
        }
    } else if (rs->cur->watching) {
        /* keys an operation that did not commit left watched there */
        if (as_buf_reserve(&rs->q, UNWATCH_LEN)) {
            rd_rollback(st);
            return as_error_nomem(err);
        }
        memmove(rs->q.data + UNWATCH_LEN, rs->q.data, rs->q.len);
        memcpy(rs->q.data, unwatch_cmd, UNWATCH_LEN);
        rs->q.len += UNWATCH_LEN;
        skip = 1;
    }
    if (put_head(&rs->q, 1) || put_str(&rs->q, "EXEC")
        || (r = as_calloc(n, sizeof *r)) == NULL) {
        rd_rollback(st);
        return as_error_nomem(err);
    }
    rs->req_skip = 0;
    status = rd_exchange(rs, &rs->q, skip, n, r, err);
    rs->cur->watching = 0;
    rs->nq = 0;
    if (status == AS_EUNAVAILABLE) {
        /* an EXEC that never left whole ran nothing: run the operation again
        ** (on a new connection, within the call's time); one that left may
        ** have run */
        if (rs->cluster) rs->stale_map = 1;
        if (rs->sent) note_whole(err);
        else if (mono_us() < rs->deadline) {
            as_error_clear(err);
            status = rs->cluster ? rd_again_lost(rs, err) : rd_retry(rs);
        }
    }
    if (status != AS_OK) goto done;
    exec = r[n - 1];
    if (exec->type == REDIS_REPLY_NIL) {
        status = rd_retry(rs);
        goto done;
    }
    if (exec->type == REDIS_REPLY_ERROR) {
        /* EXECABORT: a command was refused as it was queued; nothing ran */
        for (i = 1; i < n - 1 && r[i]->type != REDIS_REPLY_ERROR; i++) continue;
        status = reply_error(rs, i < n - 1 ? r[i] : exec, id, err);
        goto done;
    }
    for (i = 0; exec->type == REDIS_REPLY_ARRAY && i < exec->elements; i++)
        if (exec->element[i]->type == REDIS_REPLY_ERROR) {
            status = reply_error(rs, exec->element[i], id, err);
            break;
        }
    /* the write's number: this manager's next writes number after it */
    if (status == AS_OK && rs->index_at > 0 && exec->type == REDIS_REPLY_ARRAY
        && rs->index_at <= exec->elements
        && exec->element[rs->index_at - 1]->type == REDIS_REPLY_INTEGER
        && (uint64_t)exec->element[rs->index_at - 1]->integer > rs->hi_seq)
        rs->hi_seq = (uint64_t)exec->element[rs->index_at - 1]->integer;
done:
    if (r) {
        free_replies(r, n);
        as_free(r);
    }
    return status;
}

/* ---------------------------------------------------------------- append */

static as_status append_run(redis_store *rs, const as_append *a, const as_buf *keys,
                            const size_t *at, size_t distinct, as_meta *out, as_error *err);

static as_status rd_append(as_store *st, const as_append *a, as_meta *out, as_error *err) {
    redis_store *rs = (redis_store *)st;
    size_t *at = NULL, distinct;
    as_buf keys = AS_BUF_INIT;
    as_status status;
    if (index_keys(a->msgs, a->nmsgs, NULL, &keys, &at, &distinct) != 0) {
        as_free(at);
        as_buf_free(&keys);
        return as_error_nomem(err);
    }
    status = append_run(rs, a, &keys, at, distinct, out, err);
    as_free(at);
    as_buf_free(&keys);
    return status;
}

/* The append script, given the search keys of each message and the distinct ones. */
static as_status append_run(redis_store *rs, const as_append *a, const as_buf *keys,
                            const size_t *at, size_t distinct, as_meta *out, as_error *err) {
    redisReply *r[1] = { NULL }, *res;
    const char *tag;
    char num[24];
    size_t i;
    int by_text = 0;
    size_t sets = rs->cluster ? distinct : 0;
    as_status status;
    if ((status = route_id(rs, a->id, err)) != AS_OK) return status;
    for (;;) {
        as_buf *b = &rs->req;
        int bad = req_start(rs)
                  || put_script_call(b, by_text ? "" : rs->append_sha, append_script,
                                     22 + 2 * a->nmsgs + distinct + sets)
                  || put_int(b, (int64_t)(8 + sets)) || put_skey(rs, b, a->id, "meta")
                  || put_skey(rs, b, a->id, "msgs") || put_ikey(rs, b, "seq", NULL)
                  || put_skey(rs, b, a->id, "state") || put_skey(rs, b, a->id, "ops")
                  || put_skey(rs, b, a->id, "words")
                  || put_skey(rs, b, a->id, "mw") || put_skey(rs, b, a->id, "tmp");
        if (sets && !bad) bad = put_sets(rs, b, keys, at[a->nmsgs]);
        bad = bad || put_sp(rs, b) || put_str(b, a->id)
                  || put_int(b, (int64_t)a->nmsgs);
        snprintf(num, sizeof num, "%llu", (unsigned long long)a->tokens);
        bad = bad || put_str(b, num) || put_int(b, a->expect_version) || put_int(b, a->now)
              || put_int(b, (int64_t)a->bytes) || put_int(b, (int64_t)a->max_bytes)
              || put_str(b, a->state ? "1" : "0")
              || (a->state ? put_bulk(b, a->state->text, a->state->len) : put_str(b, ""));
        snprintf(num, sizeof num, "%llu", (unsigned long long)a->max_tokens);
        bad = bad || put_str(b, num) || put_str(b, a->op_id ? a->op_id : "")
              || put_int(b, (int64_t)rs->hi_seq);
        for (i = 0; i < a->nmsgs && !bad; i++) bad = put_bulk(b, a->msgs[i]->text, a->msgs[i]->len);
        for (i = 0; i < a->nmsgs && !bad; i++) bad = put_bulk(b, keys->data ? keys->data + at[i] : "", at[i + 1] - at[i]);
        bad = bad || put_keys(b, keys, at[a->nmsgs]);
        if (bad) return as_error_nomem(err);
        /* NOSCRIPT means the script did not run: sending its text is safe */
        if ((status = rd_roundtrip(rs, 1, r, 0, err)) != AS_OK) {
            if (status == AS_EUNAVAILABLE && rs->sent) note_whole(err);
            return status;
        }
        res = r[0];
        if (by_text || !has_prefix(res, "NOSCRIPT")) break;
        free_replies(r, 1);
        by_text = 1;
    }
    if (res->type == REDIS_REPLY_ERROR) status = reply_error(rs, res, a->id, err);
    else if (res->type != REDIS_REPLY_ARRAY || res->elements < 1
             || res->element[0]->type != REDIS_REPLY_STRING)
        status = rd_damaged(rs, a->id, "the append script gave an unexpected reply", err);
    else if ((strcmp(tag = res->element[0]->str, "OK") == 0 || strcmp(tag, "APPLIED") == 0)
             && res->elements == 2) {
        int64_t seq, bytes;
        *a->applied = tag[0] == 'O';
        status = parse_packed(rs, a->id, res->element[1], out, &seq, &bytes, err);
        if (status == AS_OK && (uint64_t)seq > rs->hi_seq) rs->hi_seq = (uint64_t)seq;
        /* the script has run: say so rather than report a failed call */
        if (status == AS_ENOMEM) as_error_nomem_applied(err, a->id);
    } else if (strcmp(tag, "NOTFOUND") == 0) status = AS_ENOTFOUND;
    else if (strcmp(tag, "CONFLICT") == 0 && res->elements == 2
             && res->element[1]->type == REDIS_REPLY_STRING) {
        if (a->expect_version == 0)
            as_error_set(err, AS_ECONFLICT, "session \"%.64s\" exists (version %.20s; none was "
                         "expected)", a->id, res->element[1]->str);
        else as_error_set(err, AS_ECONFLICT, "session \"%.64s\" is at version %.20s, not %lld",
                          a->id, res->element[1]->str, (long long)a->expect_version);
        as_error_set_id(err, a->id);
        status = AS_ECONFLICT;
    } else if (strcmp(tag, "TURNS") == 0)
        status = as_error_set(err, AS_EINVALID, "turn_count would pass %lu",
                              (unsigned long)AS_TURN_COUNT_MAX);
    else if (strcmp(tag, "TOKENS") == 0)
        status = as_error_set(err, AS_EINVALID, "total_tokens would pass %llu",
                              (unsigned long long)a->max_tokens);
    else if (strcmp(tag, "TOOLARGE") == 0 && res->elements == 2
             && res->element[1]->type == REDIS_REPLY_STRING) {
        as_error_set(err, AS_ETOOLARGE, "session of %.20s bytes is over the limit of %zu bytes",
                     res->element[1]->str, a->max_bytes);
        as_error_set_id(err, a->id);
        status = AS_ETOOLARGE;
    } else status = rd_damaged(rs, a->id, "the append script gave an unexpected reply", err);
    free_replies(r, 1);
    return status;
}

/* ---------------------------------------------------------------- shards in order */

/* What the shards of a cluster answered a list or a search, with the write
** numbers that order ties, before they are merged. */
typedef struct ranked {
    as_candidate c;
    int64_t seq;
    unsigned shard;
    int need; /* came as score and member: its metadata is read if it makes the page */
} ranked;

typedef struct ranked_list {
    ranked *items;
    size_t n, cap;
} ranked_list;

static as_status ranked_push(ranked_list *l, as_candidate *c, int64_t seq, unsigned shard,
                              as_error *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        ranked *grown = cap > SIZE_MAX / sizeof *grown ? NULL : as_realloc(l->items, cap * sizeof *grown);
        if (grown == NULL) {
            as_candidate_clear(c);
            return as_error_nomem(err);
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n].c = *c;
    l->items[l->n].seq = seq;
    l->items[l->n].shard = shard;
    l->items[l->n].need = 0;
    l->n++;
    memset(c, 0, sizeof *c);
    return AS_OK;
}

static void ranked_clear(ranked_list *l) {
    size_t i;
    for (i = 0; i < l->n; i++) as_candidate_clear(&l->items[i].c);
    as_free(l->items);
    memset(l, 0, sizeof *l);
}

/* List order: updated_at, then the write number, latest first (then the id,
** for ties between managers). */
static int ranked_cmp(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->c.meta.updated_at != b->c.meta.updated_at)
        return a->c.meta.updated_at > b->c.meta.updated_at ? -1 : 1;
    if (a->seq != b->seq) return a->seq > b->seq ? -1 : 1;
    return -strcmp(a->c.meta.id, b->c.meta.id);
}

/* The rows a filter's page takes from each shard: its offset and limit together. */
static size_t page_end(const as_filter *f) {
    return f->limit == SIZE_MAX || f->offset > SIZE_MAX - f->limit ? SIZE_MAX : f->offset + f->limit;
}

typedef int (*put_call_fn)(redis_store *rs, const as_filter *f, const void *ctx, size_t offset,
                           size_t limit, int by_text);
typedef as_status (*take_reply_fn)(redis_store *rs, const redisReply *res, unsigned shard,
                                   ranked_list *out, as_error *err);

/* Asks every shard of a cluster for the first page_end(f) rows, one request
** per master with a call per shard it holds, and gathers them. */
static as_status ask_shards(redis_store *rs, const as_filter *f, const void *ctx,
                            put_call_fn put_call, take_reply_fn take, ranked_list *out,
                            as_error *err) {
    redisReply *r[AS_REDIS_SHARDS];
    size_t node[AS_REDIS_SHARDS], end = page_end(f), i, j, n;
    unsigned asked[AS_REDIS_SHARDS];
    unsigned k;
    as_status st;
    for (k = 0; k < AS_REDIS_SHARDS; k++)
        if ((st = route_slot(rs, rs->shard_slot[k], err)) != AS_OK) return st;
    for (k = 0; k < AS_REDIS_SHARDS; k++) {
        if (rs->slots[rs->shard_slot[k]] == 0) return route_slot(rs, rs->shard_slot[k], err);
        node[k] = rs->slots[rs->shard_slot[k]] - 1u;
    }
    for (i = 0; i < rs->nnodes; i++) {
        int by_text = 0;
        for (;;) {
            int bad, noscript = 0;
            rs->cur = rs->nodes[i];
            bad = req_start(rs);
            for (n = 0, k = 0; k < AS_REDIS_SHARDS && !bad; k++) {
                if (node[k] != i) continue;
                use_shard(rs, k);
                bad = put_call(rs, f, ctx, 0, end, by_text);
                asked[n++] = k;
            }
            if (bad) return as_error_nomem(err);
            if (n == 0) break;
            memset(r, 0, sizeof r);
            if ((st = rd_roundtrip(rs, n, r, 1, err)) != AS_OK) return st;
            for (j = 0; j < n; j++) noscript |= has_prefix(r[j], "NOSCRIPT");
            if (noscript && !by_text) {
                free_replies(r, n);
                by_text = 1;
                continue;
            }
            for (j = 0, st = AS_OK; j < n && st == AS_OK; j++) st = take(rs, r[j], asked[j], out, err);
            free_replies(r, n);
            if (st != AS_OK) return st;
            break;
        }
    }
    return AS_OK;
}

/* ---------------------------------------------------------------- listing */

/* A call of the list script on the shard at hand. */
static int put_list_call(redis_store *rs, const as_filter *f, const void *ctx, size_t offset,
                         size_t limit, int by_text) {
    as_buf *b = &rs->req;
    int tagged = f->ntags > 0, agent = f->agent_name != NULL, parent = f->parent_id != NULL;
    int exact = tagged + agent + parent <= 1 && f->ntags <= 1 && !f->without_tag;
    size_t nkeys = f->ntags + (size_t)agent + (size_t)parent, i;
    char num[24];
    int bad;
    if (nkeys == 0) nkeys = 1; /* the index of every session */
    if (nkeys > SIZE_MAX / 2 - 9) return -1;
    bad = put_script_call(b, by_text ? "" : rs->list_sha, list_script, 14 + nkeys + f->ntags);
    snprintf(num, sizeof num, "%zu", nkeys);
    bad |= put_str(b, num);
    for (i = 0; i < f->ntags; i++) bad |= put_ikey(rs, b, "tag:", f->tags[i]);
    if (agent) bad |= put_ikey(rs, b, "agent:", f->agent_name);
    if (parent) bad |= put_ikey(rs, b, "parent:", f->parent_id);
    if (!tagged && !agent && !parent) bad |= put_ikey(rs, b, "all", NULL);
    snprintf(num, sizeof num, "%zu", offset);
    bad |= put_sp(rs, b) || put_str(b, num);
    if (limit == SIZE_MAX) bad |= put_str(b, "-1");
    else {
        snprintf(num, sizeof num, "%zu", limit);
        bad |= put_str(b, num);
    }
    bad |= put_str(b, exact ? "1" : "0") || put_str(b, agent ? "1" : "0")
           || put_str(b, agent ? f->agent_name : "") || put_str(b, parent ? "1" : "0")
           || put_str(b, parent ? f->parent_id : "");
    /* ZCOUNT's min: the scores from `before` on are skipped */
    bad |= put_str(b, f->has_before ? "1" : "0") || put_int(b, f->has_before ? f->before : 0)
           || put_str(b, f->without_tag ? "1" : "0")
           || put_str(b, f->without_tag ? f->without_tag : "")
           || put_int(b, ctx ? (int64_t)*(const size_t *)ctx : -1);
    for (i = 0; i < f->ntags; i++) bad |= put_str(b, f->tags[i]);
    return bad;
}

/* The keys of the indexes a list with filter f walks in the shard at hand,
** as list_script's KEYS; *n receives their number. */
static int put_list_keys(redis_store *rs, as_buf *b, const as_filter *f) {
    size_t i;
    int bad = 0;
    for (i = 0; i < f->ntags; i++) bad |= put_ikey(rs, b, "tag:", f->tags[i]);
    if (f->agent_name) bad |= put_ikey(rs, b, "agent:", f->agent_name);
    if (f->parent_id) bad |= put_ikey(rs, b, "parent:", f->parent_id);
    return bad || put_ikey(rs, b, "all", NULL);
}

/* An entry of the list script's reply that came as score and member: a
** string without the NULs that separate a packed session's fields. */
static int is_rank(const redisReply *e) {
    return e->type == REDIS_REPLY_STRING && memchr(e->str, '\0', e->len) == NULL;
}

/* "<updated_at> <member>" as a candidate of the merge: its id, updated_at and
** write number; the rest of its metadata is read if it makes the page. */
static as_status take_rank(redis_store *rs, const redisReply *e, unsigned shard, ranked_list *into,
                           as_error *err) {
    const char *sp = memchr(e->str, ' ', e->len), *member;
    size_t mlen;
    char hex[17], *end;
    double score;
    as_candidate c;
    as_status st;
    if (sp == NULL || (mlen = e->len - (size_t)(sp + 1 - e->str)) <= 16 || mlen - 16 > AS_ID_MAX)
        return rd_fail(rs, AS_ESTORAGE, err, "the list script gave an unexpected reply");
    member = sp + 1;
    score = strtod(e->str, &end);
    memcpy(hex, member, 16);
    hex[16] = '\0';
    memset(&c, 0, sizeof c);
    if (end != sp || (c.meta.id = as_strndup(member + 16, mlen - 16)) == NULL)
        return end != sp ? rd_fail(rs, AS_ESTORAGE, err, "the list script gave an unexpected reply")
                         : as_error_nomem(err);
    c.meta.updated_at = score >= 9.2e18 ? INT64_MAX : score <= -9.2e18 ? INT64_MIN : (int64_t)score;
    if ((st = ranked_push(into, &c, (int64_t)strtoull(hex, NULL, 16), shard, err)) == AS_OK)
        into->items[into->n - 1].need = 1;
    return st;
}

/* The metadata of the list script's reply, to `out` or (out NULL) to `into`. */
static as_status take_list(redis_store *rs, const redisReply *res, as_meta_list *out,
                           unsigned shard, ranked_list *into, as_error *err) {
    as_status status = AS_OK;
    size_t i;
    if (res->type == REDIS_REPLY_ERROR) return reply_error(rs, res, NULL, err);
    if (res->type != REDIS_REPLY_ARRAY)
        return rd_fail(rs, AS_ESTORAGE, err, "the list script gave an unexpected reply");
    if (out && (status = as_meta_list_reserve(out, out->n + res->elements, err)) != AS_OK)
        return status;
    for (i = 0; status == AS_OK && i < res->elements; i++) {
        as_candidate c;
        int64_t seq, bytes;
        if (out) {
            /* parsed in place: the list has room for them all */
            if ((status = parse_packed(rs, NULL, res->element[i], &out->items[out->n], &seq, &bytes,
                                       err)) == AS_OK)
                out->n++;
            continue;
        }
        if (is_rank(res->element[i])) {
            status = take_rank(rs, res->element[i], shard, into, err);
            continue;
        }
        memset(&c, 0, sizeof c);
        if ((status = parse_packed(rs, NULL, res->element[i], &c.meta, &seq, &bytes, err)) == AS_OK)
            status = ranked_push(into, &c, seq, shard, err);
    }
    return status;
}

static as_status take_list_ranked(redis_store *rs, const redisReply *res, unsigned shard,
                                  ranked_list *out, as_error *err) {
    return take_list(rs, res, NULL, shard, out, err);
}

/* Reads the metadata of the page's sessions [from, end) that came as score and
** member, one request per master, and puts it in their place; the operation
** runs again when one was deleted since. */
static as_status fetch_needed(redis_store *rs, const as_filter *f, ranked_list *all, size_t from,
                              size_t end, as_error *err) {
    size_t nidx = f->ntags + (f->agent_name != NULL) + (f->parent_id != NULL) + 1, node, i, j;
    as_status st = AS_OK;
    for (node = 0; node < rs->nnodes && st == AS_OK; node++) {
        redisReply *r[AS_REDIS_SHARDS];
        unsigned asked[AS_REDIS_SHARDS], k;
        size_t n = 0;
        int bad;
        rs->cur = rs->nodes[node];
        bad = req_start(rs);
        for (k = 0; k < AS_REDIS_SHARDS && !bad; k++) {
            size_t count = 0;
            if (rs->slots[rs->shard_slot[k]] != node + 1) continue;
            for (i = from; i < end; i++) count += all->items[i].need && all->items[i].shard == k;
            if (count == 0) continue;
            use_shard(rs, k);
            bad = put_head(&rs->req, 3 + 2 * count + nidx) || put_str(&rs->req, "EVAL")
                  || put_str(&rs->req, fetch_script) || put_int(&rs->req, (int64_t)(count + nidx));
            for (i = from; i < end && !bad; i++)
                if (all->items[i].need && all->items[i].shard == k)
                    bad = put_skey(rs, &rs->req, all->items[i].c.meta.id, "meta");
            bad = bad || put_list_keys(rs, &rs->req, f);
            for (i = from; i < end && !bad; i++)
                if (all->items[i].need && all->items[i].shard == k)
                    bad = put_member(&rs->req, all->items[i].seq, all->items[i].c.meta.id);
            asked[n++] = k;
        }
        if (bad) return as_error_nomem(err);
        if (n == 0) continue;
        memset(r, 0, sizeof r);
        if ((st = rd_roundtrip(rs, n, r, 1, err)) != AS_OK) return st;
        for (j = 0; j < n && st == AS_OK; j++) {
            const redisReply *res = r[j];
            size_t m = 0;
            if (res->type == REDIS_REPLY_ERROR) {
                st = reply_error(rs, res, NULL, err);
                break;
            }
            if (res->type != REDIS_REPLY_ARRAY) {
                st = rd_fail(rs, AS_ESTORAGE, err, "the list script gave an unexpected reply");
                break;
            }
            for (i = from; i < end && st == AS_OK; i++) {
                ranked *it = &all->items[i];
                as_meta meta;
                int64_t seq, bytes;
                if (!it->need || it->shard != asked[j]) continue;
                if (m >= res->elements) {
                    st = rd_fail(rs, AS_ESTORAGE, err, "the list script gave an unexpected reply");
                    break;
                }
                if (res->element[m]->type == REDIS_REPLY_NIL) {
                    char why[AS_ERROR_MESSAGE_MAX];
                    snprintf(why, sizeof why, "%.300s: a session listed was deleted before its "
                             "metadata was read", rs->cur->where);
                    st = rd_again(rs, 0, why, err);
                    break;
                }
                if ((st = parse_packed(rs, NULL, res->element[m++], &meta, &seq, &bytes, err))
                    != AS_OK)
                    break;
                as_meta_clear(&it->c.meta);
                it->c.meta = meta;
                it->seq = seq;
                it->need = 0;
            }
        }
        free_replies(r, n);
    }
    for (i = from; st == AS_OK && i < end; i++)
        if (all->items[i].need) { /* a shard without a master in the map since */
            rs->stale_map = 1;
            st = rd_again(rs, 50000, rs->why[0] ? rs->why : "no master serves a shard", err);
        }
    return st;
}

static as_status rd_list(as_store *st, const as_filter *f, as_meta_list *out, as_error *err) {
    redis_store *rs = (redis_store *)st;
    redisReply *r[1] = { NULL }, *res;
    ranked_list all = { NULL, 0, 0 };
    int by_text = 0;
    size_t i, end;
    as_status status;
    if (rs->cluster) {
        /* each shard gives its first page_end(f) sessions, whole only for about as many
        ** as its share of the page and a few more; the others that make the page are
        ** read after the merge */
        size_t full = page_end(f) == SIZE_MAX ? SIZE_MAX : page_end(f) / 8 + 4;
        status = ask_shards(rs, f, full == SIZE_MAX ? NULL : &full, put_list_call,
                            take_list_ranked, &all, err);
        if (status == AS_OK && all.n > 0) qsort(all.items, all.n, sizeof *all.items, ranked_cmp);
        end = page_end(f) < all.n ? page_end(f) : all.n;
        if (status == AS_OK && f->offset < end) {
            status = fetch_needed(rs, f, &all, f->offset, end, err);
            if (status == AS_OK)
                qsort(all.items + f->offset, end - f->offset, sizeof *all.items, ranked_cmp);
        }
        for (i = f->offset; status == AS_OK && i < end; i++)
            status = as_meta_list_push(out, &all.items[i].c.meta, err);
        ranked_clear(&all);
        if (status != AS_OK) as_meta_list_clear(out);
        return status;
    }
    rs->cur = rs->nodes[0];
    for (;;) {
        if (req_start(rs) || put_list_call(rs, f, NULL, f->offset, f->limit, by_text))
            return as_error_nomem(err);
        if ((status = rd_roundtrip(rs, 1, r, 1, err)) != AS_OK) return status;
        res = r[0];
        if (by_text || !has_prefix(res, "NOSCRIPT")) break;
        free_replies(r, 1);
        by_text = 1;
    }
    status = take_list(rs, res, out, 0, NULL, err);
    free_replies(r, 1);
    if (status != AS_OK) as_meta_list_clear(out);
    return status;
}

/* ---------------------------------------------------------------- search */

/* A candidate from one entry of the search script's reply. */
static as_status parse_candidate(redis_store *rs, const redisReply *e, as_candidate *c,
                                 int64_t *seq, as_error *err) {
    const redisReply *pos, *text;
    int64_t bytes;
    size_t i;
    as_status st;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 3 || e->element[1]->type != REDIS_REPLY_ARRAY)
        return rd_fail(rs, AS_ESTORAGE, err, "the search script gave an unexpected reply");
    if ((st = parse_meta(rs, NULL, e->element[0], &c->meta, seq, &bytes, err)) != AS_OK) return st;
    pos = e->element[1];
    if (pos->elements > 0 && (c->pos = as_calloc(pos->elements, sizeof *c->pos)) == NULL)
        return as_error_nomem(err);
    for (i = 0; i < pos->elements; i++) {
        if (pos->element[i]->type != REDIS_REPLY_INTEGER || pos->element[i]->integer < 0)
            return rd_damaged(rs, c->meta.id, "the search script gave a position that is not one", err);
        c->pos[c->npos++] = (size_t)pos->element[i]->integer;
    }
    text = e->element[2];
    if (text->type == REDIS_REPLY_STRING && c->npos > 0
        && (c->text = as_blob_new(text->str, text->len)) == NULL)
        return as_error_nomem(err);
    return AS_OK;
}

/* A call of the search script on the shard at hand; ctx: the query. */
static int put_search_call(redis_store *rs, const as_filter *f, const void *ctx, size_t offset,
                           size_t limit, int by_text) {
    const as_query *q = ctx;
    as_buf *b = &rs->req;
    char num[24];
    size_t i;
    int bad = put_head(b, 3 + 2 * q->nkeys + 8 + f->ntags) || put_str(b, "EVAL")
              || put_str(b, search_script) || put_int(b, (int64_t)q->nkeys);
    (void)by_text; /* sent by its text: it is not loaded with the others */
    for (i = 0; i < q->nkeys; i++) bad |= put_ikey(rs, b, "w:", q->keys[i]);
    snprintf(num, sizeof num, "%zu", offset);
    bad |= put_sp(rs, b) || put_str(b, num);
    if (limit == SIZE_MAX) bad |= put_str(b, "-1");
    else {
        snprintf(num, sizeof num, "%zu", limit);
        bad |= put_str(b, num);
    }
    bad |= put_str(b, f->agent_name ? "1" : "0") || put_str(b, f->agent_name ? f->agent_name : "")
           || put_str(b, f->parent_id ? "1" : "0") || put_str(b, f->parent_id ? f->parent_id : "")
           || put_int(b, (int64_t)f->ntags);
    for (i = 0; i < f->ntags; i++) bad |= put_str(b, f->tags[i]);
    for (i = 0; i < q->nkeys; i++) bad |= put_str(b, q->keys[i]);
    return bad;
}

static as_status take_search(redis_store *rs, const redisReply *res, unsigned shard,
                             ranked_list *out, as_error *err) {
    as_status status = AS_OK;
    size_t i;
    if (res->type == REDIS_REPLY_ERROR) return reply_error(rs, res, NULL, err);
    if (res->type != REDIS_REPLY_ARRAY)
        return rd_fail(rs, AS_ESTORAGE, err, "the search script gave an unexpected reply");
    for (i = 0; status == AS_OK && i < res->elements; i++) {
        as_candidate c;
        int64_t seq = 0;
        memset(&c, 0, sizeof c);
        if ((status = parse_candidate(rs, res->element[i], &c, &seq, err)) == AS_OK)
            status = ranked_push(out, &c, seq, shard, err);
        else as_candidate_clear(&c);
    }
    return status;
}

static as_status rd_search(as_store *st, const as_query *q, const as_filter *f,
                           as_candidate_list *out, as_error *err) {
    redis_store *rs = (redis_store *)st;
    redisReply *r[1] = { NULL };
    ranked_list all = { NULL, 0, 0 };
    size_t i, from = rs->cluster ? f->offset : 0, end;
    as_status status = AS_OK;
    if (rs->cluster) {
        status = ask_shards(rs, f, q, put_search_call, take_search, &all, err);
        if (status == AS_OK && all.n > 0) qsort(all.items, all.n, sizeof *all.items, ranked_cmp);
    } else {
        rs->cur = rs->nodes[0];
        if (req_start(rs) || put_search_call(rs, f, q, f->offset, f->limit, 1))
            return as_error_nomem(err);
        if ((status = rd_roundtrip(rs, 1, r, 1, err)) != AS_OK) return status;
        status = take_search(rs, r[0], 0, &all, err);
        free_replies(r, 1);
    }
    end = rs->cluster ? (page_end(f) < all.n ? page_end(f) : all.n) : all.n;
    for (i = from; status == AS_OK && i < end; i++)
        status = as_candidate_list_take(out, &all.items[i].c, err);
    ranked_clear(&all);
    if (status != AS_OK) as_candidate_list_clear(out);
    return status;
}

/* ---------------------------------------------------------------- opening and closing */

static void rd_close(as_store *st) {
    redis_store *rs = (redis_store *)st;
    size_t i;
    for (i = 0; i < rs->nnodes; i++) {
        conn_drop(rs->nodes[i]);
        as_free(rs->nodes[i]->host);
        as_free(rs->nodes[i]);
    }
    for (i = 0; i < AS_REDIS_SHARDS; i++) as_free(rs->shard_prefix[i]);
    as_free(rs->nodes);
    as_free(rs->slots);
    as_buf_free(&rs->req);
    as_buf_free(&rs->q);
    as_free(rs->username);
    as_free(rs->password);
    as_free(rs->prefix);
    as_free(rs);
}

static void rd_stats(as_store *st, as_store_stats *out) {
    *out = ((redis_store *)st)->stats;
}

static const as_store_ops redis_ops = {
    .kind = "redis",
    .begin = rd_begin,
    .commit = rd_commit,
    .rollback = rd_rollback,
    .load = rd_load,
    .write = rd_write,
    .remove = rd_remove,
    .list = rd_list,
    .close = rd_close,
    .stats = rd_stats,
    .append = rd_append,
    .canonical = 0,
    .search = rd_search,
    .prune_batch = 1, /* a transaction watches one session */
};

static int copy_opt(char **dst, const char *src) {
    if (src == NULL) return 0;
    return (*dst = as_strdup(src)) == NULL ? -1 : 0;
}

/* Adds the nodes of o->cluster, each "host:port" or "[v6]:port". */
static as_status add_seeds(redis_store *rs, const as_redis_opts *o, as_error *err) {
    size_t i, used = 0;
    int w = snprintf(rs->where, sizeof rs->where, "redis cluster at ");
    if (o->ncluster == 0)
        return as_error_set(err, AS_EINVALID, "cluster: must name at least one node \"host:port\"");
    for (i = 0; i < o->ncluster; i++) {
        const char *a = o->cluster[i], *colon = a ? strrchr(a, ':') : NULL, *host = a;
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        size_t hlen = colon ? (size_t)(colon - a) : 0;
        if (colon == NULL || hlen == 0 || colon[1] == '\0' || *end != '\0' || port < 1
            || port > 65535 || (memchr(a, ':', hlen) && (a[0] != '[' || a[hlen - 1] != ']'))) {
            as_error_set(err, AS_EINVALID, "must be \"host:port\" (got \"%.100s\")", a ? a : "");
            as_error_prefix_index(err, i + 1);
            as_error_prefix(err, "cluster");
            return AS_EINVALID;
        }
        if (host[0] == '[') {
            host++;
            hlen -= 2;
        }
        if (node_get(rs, host, hlen, (int)port, err) == NULL) return err->status;
        if (w > 0 && (size_t)w + used < sizeof rs->where - 1)
            used += (size_t)snprintf(rs->where + w + used, sizeof rs->where - (size_t)w - used,
                                     "%s%s", i > 0 ? "," : "", a);
    }
    return AS_OK;
}

as_status as_store_redis_open(const as_redis_opts *o, as_store **out, as_error *err) {
    redis_store *rs = as_calloc(1, sizeof *rs);
    const char *host = o->host ? o->host : AS_REDIS_DEFAULT_HOST;
    as_status st;
    if (rs == NULL) return as_error_nomem(err);
    rs->base.ops = &redis_ops;
    rs->db = o->db;
    rs->cluster = o->cluster != NULL;
    rs->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : AS_REDIS_DEFAULT_TIMEOUT_MS;
    rs->jitter = (uint32_t)mono_us() | 1u;
    if (copy_opt(&rs->username, o->username) || copy_opt(&rs->password, o->password)
        || copy_opt(&rs->prefix, o->prefix ? o->prefix : AS_REDIS_DEFAULT_PREFIX)) {
        rd_close(&rs->base);
        return as_error_nomem(err);
    }
    rs->plen = strlen(rs->prefix);
    rs->sp = rs->prefix;
    rs->splen = rs->plen;
    rs->base.location = rs->where;
    rs->deadline = mono_us() + (int64_t)rs->timeout_ms * 1000;
    if (rs->cluster) {
        if (strpbrk(rs->prefix, "{}")) {
            rd_close(&rs->base);
            as_error_set(err, AS_EINVALID, "on a cluster it holds no \"{\" or \"}\": the "
                         "store gives each shard its own hash tag");
            as_error_prefix(err, "prefix");
            return AS_EINVALID;
        }
        if ((st = add_seeds(rs, o, err)) != AS_OK) {
            rd_close(&rs->base);
            return st;
        }
        if ((rs->slots = as_calloc(SLOTS, sizeof *rs->slots)) == NULL || make_shards(rs) != 0) {
            rd_close(&rs->base);
            return as_error_nomem(err);
        }
        rs->stale_map = 1;
        st = refresh_map(rs, err);
    } else {
        if (node_get(rs, host, strlen(host), o->port ? o->port : AS_REDIS_DEFAULT_PORT, err) == NULL) {
            rd_close(&rs->base);
            return err->status;
        }
        snprintf(rs->where, sizeof rs->where, "%s", rs->nodes[0]->where);
        rs->cur = rs->nodes[0];
        st = rd_connect(rs, err);
    }
    if (st != AS_OK) {
        rd_close(&rs->base);
        return st;
    }
    *out = &rs->base;
    return AS_OK;
}
