-- agentsession.conformance: the behavioural suite of the contract (API.md),
-- runnable against any manager.
--
--   local conformance = require("agentsession.conformance")
--   local passed, failed, failures = conformance.run(function() return make_my_manager() end)
--
-- `run(new_manager [, opts])` calls `new_manager()` once per check for a
-- fresh, empty manager, runs the check against it and closes it. It raises
-- nothing (except when `new_manager` is not a function) and prints nothing
-- unless `opts.verbose`. It returns the number of checks passed, the number
-- failed, and an array of one-line descriptions "<check name>: <why>".
--
-- opts:
--   verbose  print "ok  <name>" / "FAIL <name>: <why>" per check and a summary
--   only     a Lua pattern: run only the checks whose name matches
--   skip     a Lua pattern: do not run the checks whose name matches
--            (for example skip = "^too_large:" leaves out the 17 MiB sessions)
-- Other keys are ignored.
--
-- Pure Lua 5.4; depends on require("agentsession") only (and, when present,
-- the standard `debug` library to find a protected `__close` metamethod).

local agentsession = require("agentsession")

local null = agentsession.null
local array_mt = agentsession.array_mt
local is_error = agentsession.is_error
local now = agentsession.now

local M = { VERSION = 1 }

---------------------------------------------------------------------------
-- Describing values and failing
---------------------------------------------------------------------------

-- Assertion failures raised by the helpers carry this metatable, so that
-- run() can tell them from errors the store raised.
local Failure = {}

local function fail(message, ...)
  if select("#", ...) > 0 then message = string.format(message, ...) end
  error(setmetatable({ message = message }, Failure), 0)
end

local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<" .. type(v) .. " whose tostring fails>"
end

local function show(v)
  if rawequal(v, null) then return "null" end
  local t = type(v)
  if t == "string" then
    local s, cut = v, false
    if #s > 48 then s, cut = s:sub(1, 48), true end
    s = string.format("%q", s):gsub("\\\n", "\\n")
    if cut then s = s .. "... (" .. #v .. " bytes)" end
    return s
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.17g", v) .. " (float)"
  elseif t == "table" then
    if is_error(v) then return "error {" .. safe_tostring(v) .. "}" end
    local count = 0
    for _ in next, v do count = count + 1 end
    local marked = getmetatable(v) == array_mt
    if count == 0 then return marked and "[] (an empty array_mt table)" or "{} (an empty table)" end
    if rawlen(v) == count then return "an array of " .. count end
    return "a table of " .. count .. " keys"
  end
  return safe_tostring(v)
end

local function key_path(path, k)
  if math.type(k) == "integer" then return path .. "[" .. k .. "]" end
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
  return path .. "[" .. show(k) .. "]"
end

-- Deep equality. Numbers must have the same math.type and value (so 1 ~= 1.0;
-- -0.0 == 0.0); null is compared as a value; tables structurally. mode:
--   nil     metatables ignored
--   "json"  an empty table must be [] (array_mt) or {} (no array_mt) alike
--   "meta"  every table must have the same metatable
local function same(exp, act, path, mode, depth)
  depth = depth or 0
  local te, ta = type(exp), type(act)
  local function differ()
    return false, string.format("%s: expected %s, got %s", path, show(exp), show(act))
  end
  if te ~= ta then return differ() end
  if te == "number" then
    if math.type(exp) ~= math.type(act) or exp ~= act then return differ() end
    return true
  elseif te ~= "table" then
    if not rawequal(exp, act) then return differ() end
    return true
  end
  if rawequal(exp, act) then return true end
  if depth > 300 then return false, path .. ": nested too deeply to compare" end
  if mode == "meta" then
    if getmetatable(exp) ~= getmetatable(act) then
      return false, string.format("%s: expected metatable %s, got %s", path,
        safe_tostring(getmetatable(exp)), safe_tostring(getmetatable(act)))
    end
  elseif mode == "json" and next(exp) == nil and next(act) == nil then
    if (getmetatable(exp) == array_mt) ~= (getmetatable(act) == array_mt) then return differ() end
  end
  for k, v in next, exp do
    local ok, why = same(v, rawget(act, k), key_path(path, k), mode, depth + 1)
    if not ok then return false, why end
  end
  for k, v in next, act do
    if rawget(exp, k) == nil then
      return false, string.format("%s: unexpected %s", key_path(path, k), show(v))
    end
  end
  return true
end

local function eq(exp, act, what)
  local ok, why = same(exp, act, what or "value")
  if not ok then fail(why) end
end

local function eq_json(exp, act, what)
  local ok, why = same(exp, act, what or "value", "json")
  if not ok then fail(why) end
end

local function eq_exact(exp, act, what)
  local ok, why = same(exp, act, what or "value", "meta")
  if not ok then fail(why) end
end

local function truthy(cond, message, ...)
  if not cond then fail(message, ...) end
  return cond
end

local function describe_error(err)
  if is_error(err) then return "error {" .. safe_tostring(err) .. "}" end
  return "a non-agentsession error: " .. safe_tostring(err)
end

--- Calls fn(...) and returns the error it raised, failing unless it is an
--- agentsession error of `kind`.
local function expect_error(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("expected a %s error, but the call succeeded (returned %s)", kind, show(err)) end
  if not is_error(err, kind) then fail("expected a %s error, got %s", kind, describe_error(err)) end
  return err
end

--- The text tostring gives an error object of that kind: its message, then
--- where it was raised when that is known (where is "file:line:" or "").
local function error_text(kind, err)
  local where = err.where
  local at = type(where) == "string" and where ~= "" and " (at " .. where:gsub(":$", "") .. ")" or ""
  return "agentsession: " .. kind .. ": " .. tostring(err.message) .. at
end

--- Like expect_error, naming the call in the failure.
local function expect_error_in(what, kind, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("%s: expected a %s error, but it succeeded (returned %s)", what, kind, show(err)) end
  if not is_error(err, kind) then fail("%s: expected a %s error, got %s", what, kind, describe_error(err)) end
  return err
end

--- Misuse (an argument of the wrong Lua type): a standard Lua error or an
--- `invalid` error are both accepted; success or another kind is not.
local function expect_refused(what, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("%s: expected an argument error or invalid, but it succeeded (returned %s)", what, show(err)) end
  if is_error(err) and not is_error(err, "invalid") then
    fail("%s: expected an argument error or invalid, got %s", what, describe_error(err))
  end
  return err
end

local function no_values(what, ...)
  local n = select("#", ...)
  if n ~= 0 then fail("%s returned %d value(s) (%s), expected none", what, n, show((...))) end
end

---------------------------------------------------------------------------
-- Sessions, clocks, snapshots
---------------------------------------------------------------------------

local counter = 0
local function new_id()
  counter = counter + 1
  return string.format("conformance-%d-%s", counter, agentsession.uuid():sub(1, 8))
end

local MISSING = "0b9f6a2e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"

-- A valid session: `meta` overrides metadata fields, `messages` and `state`
-- replace the defaults when given.
local function make_session(meta, messages, state)
  local s = {
    metadata = {
      id = new_id(), name = "my-task", tags = { "production" }, agent_name = "code-agent",
      created_at = 0, updated_at = 0, turn_count = 0, total_tokens = 0,
    },
    messages = messages or { { role = "user", content = "hello" }, { role = "assistant", content = "hi" } },
    state = { cwd = "/home/user" },
  }
  if state ~= nil then s.state = state end
  for k, v in pairs(meta or {}) do s.metadata[k] = v end
  return s
end

local function unnamed(s)
  s.metadata.name = nil
  return s
end

local function messages(n)
  local list = {}
  for i = 1, n do
    list[i] = { role = i % 2 == 1 and "user" or "assistant", content = "message " .. i, n = i }
  end
  return list
end

local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, x in next, v do copy[deep_copy(k, seen)] = deep_copy(x, seen) end
  return setmetatable(copy, getmetatable(v))
end

local function nested(depth)
  local v = { leaf = true }
  for i = 2, depth do v = i % 2 == 0 and { v } or { child = v } end
  return v
end

--- Returns once agentsession.now() is past `t`, so the next write gets a
--- strictly later time (at most about a millisecond).
local function wait_past(t)
  local deadline = os.clock() + 1
  while now() <= t do
    if os.clock() > deadline then fail("agentsession.now() did not move past %d within a second", t) end
  end
end

local function between(v, low, high, what)
  if math.type(v) ~= "integer" then fail("%s is %s, not an integer", what, show(v)) end
  if v < low or v > high then
    fail("%s = %d, expected now (between %d and %d)", what, v, low, high)
  end
end

local function is_table(v, what)
  if type(v) ~= "table" then fail("%s is %s, not a table", what, show(v)) end
  return v
end

local function resume(mgr, id, opts)
  local s
  if opts == nil then s = mgr:resume(id) else s = mgr:resume(id, opts) end
  is_table(s, "resume(" .. show(id) .. ")")
  is_table(s.metadata, "resume().metadata")
  is_table(s.messages, "resume().messages")
  return s
end

local function meta_of(mgr, id)
  return resume(mgr, id).metadata
end

local function list(mgr, filter)
  local l
  if filter == nil then l = mgr:list() else l = mgr:list(filter) end
  is_table(l, "list()")
  for i, m in ipairs(l) do is_table(m, "list()[" .. i .. "]") end
  return l
end

local function ids(l)
  local out = {}
  for i, m in ipairs(l) do out[i] = m.id end
  return out
end

local function list_ids(mgr, filter)
  return ids(list(mgr, filter))
end

local function save(mgr, s, opts)
  local meta
  if opts == nil then meta = mgr:save(s) else meta = mgr:save(s, opts) end
  is_table(meta, "save()'s result")
  return meta
end

-- The store as list() and resume() show it.
local function snapshot(mgr)
  local l = list(mgr)
  local sessions = {}
  for i, m in ipairs(l) do sessions[i] = resume(mgr, m.id) end
  return { list = l, sessions = sessions }
end

local function unchanged(mgr, before, what)
  local after = snapshot(mgr)
  local ok, why = same(before.list, after.list, "list()")
  if ok then ok, why = same(before.sessions, after.sessions, "sessions") end
  if not ok then fail("%s changed the store: %s", what, why) end
end

-- A store holding two sessions, the second one (returned) most recent.
local function two_sessions(mgr)
  save(mgr, make_session({ tags = { "other" } }, messages(2)))
  local s = make_session({ tags = { "a", "b" }, created_at = 1000, turn_count = 3, total_tokens = 10 },
    messages(3), { cwd = "/home/user", depth = 1 })
  save(mgr, s)
  return s
end

---------------------------------------------------------------------------
-- The checks
---------------------------------------------------------------------------

local checks = {}
M.checks = checks

local function check(name, fn, extra)
  local c = { name = name, fn = fn }
  for k, v in pairs(extra or {}) do c[k] = v end
  checks[#checks + 1] = c
end

local METADATA_FIELDS = {
  id = true, name = true, tags = true, agent_name = true, created_at = true, updated_at = true,
  turn_count = true, total_tokens = true, version = true, parent_id = true,
}
local INTEGER_FIELDS = { "created_at", "updated_at", "turn_count", "total_tokens", "version" }

------------------------------------------------------------------ save

check("save: returns the stored metadata, equal to resume(id).metadata", function(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 1234 })
  local meta = save(mgr, s)
  eq(s.metadata.id, meta.id, "save().id")
  eq("my-task", meta.name, "save().name")
  eq({ "a", "b" }, meta.tags, "save().tags")
  eq("code-agent", meta.agent_name, "save().agent_name")
  eq(4, meta.turn_count, "save().turn_count")
  eq(1234, meta.total_tokens, "save().total_tokens")
  eq(1, meta.version, "save().version")
  eq(nil, meta.parent_id, "save().parent_id")
  eq(meta_of(mgr, s.metadata.id), meta, "save() vs resume().metadata")
end)

check("save: metadata has the documented fields, its numbers integers", function(mgr)
  local meta = save(mgr, make_session({ created_at = 5000.0, turn_count = 2.0 }))
  for _, m in ipairs({ meta, meta_of(mgr, meta.id), list(mgr)[1] }) do
    for k in pairs(m) do
      truthy(METADATA_FIELDS[k], "metadata has an unknown field %s", show(k))
    end
    for _, field in ipairs(INTEGER_FIELDS) do
      truthy(math.type(m[field]) == "integer", "metadata.%s is %s, not an integer", field, show(m[field]))
    end
    is_table(m.tags, "metadata.tags")
    truthy(type(m.agent_name) == "string", "metadata.agent_name is %s", show(m.agent_name))
  end
  eq(5000, meta.created_at, "created_at given as 5000.0")
  eq(2, meta.turn_count, "turn_count given as 2.0")
end)

check("save: keeps id, name, agent_name, tags and counts exactly", function(mgr)
  local s = make_session({
    id = "séance-🙂-" .. new_id(), name = "naïve 名前 \u{1F600}", agent_name = "",
    tags = { "ünïcode", "标签", "b", "a" }, turn_count = (1 << 32) - 1, total_tokens = math.maxinteger,
  })
  save(mgr, s)
  local m = meta_of(mgr, s.metadata.id)
  eq(s.metadata.id, m.id, "id")
  eq(s.metadata.name, m.name, "name")
  eq("", m.agent_name, "agent_name")
  eq({ "ünïcode", "标签", "b", "a" }, m.tags, "tags")
  eq((1 << 32) - 1, m.turn_count, "turn_count")
  eq(math.maxinteger, m.total_tokens, "total_tokens")
  eq(m, list(mgr)[1], "list()[1]")
end)

check("save: keeps a 255-byte id, 255-byte tag and 1024-byte name", function(mgr)
  local s = make_session({ id = string.rep("i", 255), tags = { string.rep("t", 255) }, name = string.rep("n", 1024) })
  save(mgr, s)
  local m = meta_of(mgr, s.metadata.id)
  eq(string.rep("i", 255), m.id, "id")
  eq({ string.rep("t", 255) }, m.tags, "tags")
  eq(string.rep("n", 1024), m.name, "name")
end)

check("save: an unset name stays nil", function(mgr)
  local s = unnamed(make_session())
  local meta = save(mgr, s)
  eq(nil, meta.name, "save().name")
  eq(nil, meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
  eq(nil, list(mgr)[1].name, "list()[1].name")
end)

check("save: drops repeated tags, keeping the first of each", function(mgr)
  local s = make_session({ tags = { "x", "y", "x", "z", "y" } })
  eq({ "x", "y", "z" }, save(mgr, s).tags, "save().tags")
  eq({ "x", "y", "z" }, meta_of(mgr, s.metadata.id).tags, "resume().metadata.tags")
end)

check("save: does not modify the caller's table", function(mgr)
  local s = make_session({ tags = { "b", "a", "b" }, version = 7 },
    { { role = "user", content = "x", n = 1, f = 1.5 }, agentsession.array(), {}, null },
    { nested = { list = { 1, 2, 3 } } })
  s.metadata.created_at = nil
  local copy = deep_copy(s)
  local inner, meta_table, msgs = s.messages[1], s.metadata, s.messages
  save(mgr, s)
  eq_exact(copy, s, "session after save")
  truthy(rawequal(inner, s.messages[1]) and rawequal(meta_table, s.metadata) and rawequal(msgs, s.messages),
    "save replaced tables inside the caller's session")
  save(mgr, s)
  eq_exact(copy, s, "session after a second save")
end)

check("save: nil messages are [] and a nil state an empty object", function(mgr)
  local s = make_session()
  s.messages, s.state = nil, nil
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  truthy(next(r.messages) == nil, "messages: expected [], got %s", show(r.messages))
  truthy(getmetatable(r.messages) == array_mt, "messages: expected [] (array_mt), got %s", show(r.messages))
  truthy(type(r.state) == "table" and next(r.state) == nil and getmetatable(r.state) ~= array_mt,
    "state: expected {} (an empty object), got %s", show(r.state))
end)

check("save: keeps every message, the last one included", function(mgr)
  local s = make_session(nil, messages(7))
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(7, #r.messages, "#messages")
  eq(messages(7)[7], r.messages[7], "messages[7]")
  eq(messages(7), r.messages, "messages")
end)

check("save: keeps a one-message history", function(mgr)
  local s = make_session(nil, { { role = "user", content = "only" } })
  save(mgr, s)
  eq({ { role = "user", content = "only" } }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: keeps the state", function(mgr)
  local state = { cwd = "/work", step = 3, ratio = 0.25, list = { 1, "two", null }, nested = { ok = true, n = {} } }
  local s = make_session(nil, nil, state)
  save(mgr, s)
  eq(deep_copy(state), resume(mgr, s.metadata.id).state, "state")
end)

check("save: saving again replaces the messages with fewer", function(mgr)
  local s = make_session(nil, messages(5))
  save(mgr, s)
  s.messages = { "only one" }
  save(mgr, s)
  eq({ "only one" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: saving again replaces the messages with more", function(mgr)
  local s = make_session(nil, messages(2))
  save(mgr, s)
  s.messages = messages(6)
  save(mgr, s)
  eq(messages(6), resume(mgr, s.metadata.id).messages, "messages")
end)

check("save: saving again replaces state, name, tags, agent_name and counts", function(mgr)
  local s = make_session({ tags = { "a" }, turn_count = 1, total_tokens = 5 })
  save(mgr, s)
  s.metadata.name, s.metadata.tags, s.metadata.agent_name = "renamed", { "x", "y" }, "other-agent"
  s.metadata.turn_count, s.metadata.total_tokens = 9, 99
  s.state = { step = 2 }
  local meta = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(meta, r.metadata, "save() vs resume().metadata")
  eq("renamed", r.metadata.name, "name")
  eq({ "x", "y" }, r.metadata.tags, "tags")
  eq("other-agent", r.metadata.agent_name, "agent_name")
  eq(9, r.metadata.turn_count, "turn_count")
  eq(99, r.metadata.total_tokens, "total_tokens")
  eq({ step = 2 }, r.state, "state")
end)

check("save: saving again can remove the name", function(mgr)
  local s = make_session()
  save(mgr, s)
  unnamed(s)
  eq(nil, save(mgr, s).name, "save().name")
  eq(nil, meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
end)

check("save: saving again keeps one session per id", function(mgr)
  local s = make_session()
  save(mgr, s)
  local other = save(mgr, make_session())
  s.messages = { "again" }
  save(mgr, s)
  eq({ s.metadata.id, other.id }, list_ids(mgr), "list() ids")
end)

check("save: a resumed session saved again comes back the same", function(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 2, total_tokens = 7 }, messages(3),
    { k = { 1, 2.5, "x", null, true } })
  local first = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  local again = save(mgr, r)
  local r2 = resume(mgr, s.metadata.id)
  eq(r.messages, r2.messages, "messages")
  eq(r.state, r2.state, "state")
  eq(first.version + 1, again.version, "version")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "created_at", "turn_count", "total_tokens" }) do
    eq(first[field], r2.metadata[field], "metadata." .. field)
  end
end)

------------------------------------------------------------------ resume

check("resume: returns a table of exactly metadata, messages and state", function(mgr)
  local s = make_session({ tags = { "a" }, turn_count = 2, total_tokens = 99 })
  local meta = save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  for k in pairs(r) do
    truthy(k == "metadata" or k == "messages" or k == "state", "the session has an unknown key %s", show(k))
  end
  eq(meta, r.metadata, "metadata")
  eq(s.messages, r.messages, "messages")
  eq(s.state, r.state, "state")
end)

check("resume: returns an independent copy (changing it changes nothing stored)", function(mgr)
  local s = make_session(nil, messages(3), { cwd = "/home/user", list = { 1, 2 } })
  save(mgr, s)
  local first = resume(mgr, s.metadata.id)
  local expected = deep_copy(first)
  first.metadata.name = "changed"
  first.metadata.tags[1] = "changed"
  first.metadata.turn_count = 99
  first.messages[1].content = "changed"
  first.messages[#first.messages + 1] = "added"
  first.state.cwd = "/changed"
  first.state.list[1] = 42
  eq(expected, resume(mgr, s.metadata.id), "resume() after changing an earlier result")
end)

check("resume: returns new tables on each call", function(mgr)
  local s = make_session()
  save(mgr, s)
  local a, b = resume(mgr, s.metadata.id), resume(mgr, s.metadata.id)
  for _, part in ipairs({ { "session", a, b }, { "metadata", a.metadata, b.metadata },
    { "metadata.tags", a.metadata.tags, b.metadata.tags }, { "messages", a.messages, b.messages },
    { "messages[1]", a.messages[1], b.messages[1] }, { "state", a.state, b.state } }) do
    truthy(not rawequal(part[2], part[3]), "two resume() calls returned the same %s table", part[1])
  end
  eq(a, b, "second resume()")
end)

check("resume: changing the caller's table after save changes nothing stored", function(mgr)
  local s = make_session({ tags = { "a" } }, messages(2), { cwd = "/a", list = { 1 } })
  local meta = save(mgr, s)
  local expected = { metadata = deep_copy(meta), messages = deep_copy(s.messages), state = deep_copy(s.state) }
  s.metadata.name = "changed"
  s.metadata.tags[2] = "b"
  s.messages[1].content = "changed"
  s.messages[3] = "added"
  s.state.cwd = "/changed"
  s.state.list[2] = 2
  eq(expected, resume(mgr, s.metadata.id), "resume()")
end)

check("resume: gives back what was saved, on a store of many sessions", function(mgr)
  local saved = {}
  for i = 1, 12 do
    local s = make_session({ name = "s" .. i, tags = { "t" .. i }, turn_count = i }, messages(i), { i = i })
    saved[i] = s
    save(mgr, s)
  end
  for i, s in ipairs(saved) do
    local r = resume(mgr, s.metadata.id)
    eq(s.metadata.id, r.metadata.id, "session " .. i .. " id")
    eq("s" .. i, r.metadata.name, "session " .. i .. " name")
    eq({ "t" .. i }, r.metadata.tags, "session " .. i .. " tags")
    eq(messages(i), r.messages, "session " .. i .. " messages")
    eq({ i = i }, r.state, "session " .. i .. " state")
  end
end)

------------------------------------------------------------------ values

local function round_trip(mgr, msgs, state)
  local s = make_session(nil, msgs, state)
  save(mgr, s)
  return resume(mgr, s.metadata.id)
end

check("values: integers stay integers, with all 64 bits", function(mgr)
  local values = { 0, 1, -1, 42, math.maxinteger, math.mininteger, (1 << 53) + 1, 1 << 53, -(1 << 53) - 1,
    1 << 62, 4294967296 }
  local r = round_trip(mgr, values, { n = math.maxinteger, m = math.mininteger, list = values })
  eq(values, r.messages, "messages")
  eq({ n = math.maxinteger, m = math.mininteger, list = values }, r.state, "state")
end)

check("values: floats stay floats, exactly", function(mgr)
  local values = { 1.0, 0.1, -2.5, 0.0, 1e300, 5e-324, 2.0 ^ 63, 1 / 3, math.pi, 1e-7, 123456789.125,
    2.0 ^ 53 + 2.0, -1e-300, 1.7976931348623157e308 }
  local r = round_trip(mgr, values, { f = 1.0, g = 0.1, list = values })
  eq(values, r.messages, "messages")
  eq({ f = 1.0, g = 0.1, list = values }, r.state, "state")
  local z = round_trip(mgr, { -0.0 }).messages[1]
  truthy(math.type(z) == "float" and z == 0, "-0.0 came back as %s", show(z))
end)

check("values: strings keep every byte (UTF-8, NUL, escapes)", function(mgr)
  local values = { "", "plain", "héllo wörld", "😀 \u{10FFFF} 名前", "a\0b", "\0", "quote \" backslash \\ slash /",
    "\n\r\t\b\f\1\31\127", "</script>", "\u{2028}\u{2029}", string.rep("long ", 4000) }
  local r = round_trip(mgr, values, { s = "a\0b", list = values })
  eq(values, r.messages, "messages")
  eq({ s = "a\0b", list = values }, r.state, "state")
end)

check("values: booleans and null round trip", function(mgr)
  local values = { true, false, null, { a = null, b = false }, { null, null, true } }
  local r = round_trip(mgr, values, { yes = true, no = false, none = null })
  eq(values, r.messages, "messages")
  truthy(rawequal(r.messages[3], null), "messages[3] is %s, not agentsession.null", show(r.messages[3]))
  eq({ yes = true, no = false, none = null }, r.state, "state")
end)

check("values: [] and {} stay apart (array_mt marks [])", function(mgr)
  local msgs = { agentsession.array(), {}, { list = agentsession.array(), object = {} } }
  local state = { list = agentsession.array(), object = {} }
  local r = round_trip(mgr, msgs, state)
  eq_json(msgs, r.messages, "messages")
  eq_json(state, r.state, "state")
end)

check("values: an array marked with array_mt comes back an array with array_mt", function(mgr)
  local r = round_trip(mgr, { agentsession.array({ 1, 2, 3 }), { "a", "b" } })
  eq({ 1, 2, 3 }, r.messages[1], "messages[1]")
  truthy(getmetatable(r.messages[1]) == array_mt, "messages[1] has no array_mt")
  truthy(getmetatable(r.messages[2]) == array_mt, "messages[2] has no array_mt")
  truthy(getmetatable(r.messages) == array_mt, "messages has no array_mt")
end)

check("values: nested arrays and objects keep their shape", function(mgr)
  local msgs = {
    nested(60),
    { role = "tool", content = { files = { "a.lua", "b.lua" }, count = 2,
      meta = { { k = { { 1 }, { 2, { 3 } } } } } } },
    { { { {} } } },
  }
  local r = round_trip(mgr, msgs, nested(40))
  eq_json(msgs, r.messages, "messages")
  eq_json(nested(40), r.state, "state")
end)

check("values: object keys keep every byte and stay strings", function(mgr)
  local state = { [""] = 1, ["ключ"] = 2, ["a b"] = 3, ["1"] = "string key one", ["\0"] = 4, ["2"] = { ["0"] = 0 } }
  local r = round_trip(mgr, { { ["1"] = "x" } }, state)
  eq(state, r.state, "state")
  eq({ { ["1"] = "x" } }, r.messages, "messages")
end)

check("values: the state may be any JSON value", function(mgr)
  for i, state in ipairs({ "text", 42, 1.5, true, false, null, agentsession.array({ 1, 2 }), agentsession.array() }) do
    local s = make_session(nil, nil, state)
    save(mgr, s)
    local got = resume(mgr, s.metadata.id).state
    local ok, why = same(state, got, "state #" .. i, "json")
    truthy(ok, "%s", why)
  end
end)

check("values: empty tags come back as an array (array_mt)", function(mgr)
  local s = make_session({ tags = {} })
  local meta = save(mgr, s)
  for what, tags in pairs({ ["save().tags"] = meta.tags, ["resume().metadata.tags"] = meta_of(mgr, meta.id).tags,
    ["list()[1].tags"] = list(mgr)[1].tags }) do
    truthy(type(tags) == "table" and next(tags) == nil and getmetatable(tags) == array_mt,
      "%s: expected [] (array_mt), got %s", what, show(tags))
  end
end)

------------------------------------------------------------------ timestamps

check("timestamps: save sets created_at to now when it is 0", function(mgr)
  local before = now()
  local meta = save(mgr, make_session({ created_at = 0 }))
  local after = now()
  between(meta.created_at, before, after, "save().created_at")
  eq(meta.created_at, meta_of(mgr, meta.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: save sets created_at to now when it is nil", function(mgr)
  local s = make_session()
  s.metadata.created_at = nil
  local before = now()
  local meta = save(mgr, s)
  local after = now()
  between(meta.created_at, before, after, "save().created_at")
end)

check("timestamps: save keeps a non-zero created_at as given", function(mgr)
  local meta = save(mgr, make_session({ created_at = 1000 }))
  eq(1000, meta.created_at, "save().created_at")
  eq(1000, meta_of(mgr, meta.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: re-saving with created_at 0 keeps the stored created_at", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = 0
  eq(1000, save(mgr, s).created_at, "save().created_at")
  eq(1000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
  local t = make_session({ created_at = 0 })
  local first = save(mgr, t)
  wait_past(first.updated_at)
  eq(first.created_at, save(mgr, t).created_at, "created_at of a second save")
end)

check("timestamps: re-saving with created_at nil keeps the stored created_at", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = nil
  eq(1000, save(mgr, s).created_at, "save().created_at")
  eq(1000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: re-saving with a non-zero created_at keeps the one given", function(mgr)
  local s = make_session({ created_at = 1000 })
  save(mgr, s)
  s.metadata.created_at = 2000
  eq(2000, save(mgr, s).created_at, "save().created_at")
  eq(2000, meta_of(mgr, s.metadata.id).created_at, "resume().metadata.created_at")
end)

check("timestamps: save sets updated_at to now, whatever is given", function(mgr)
  local s = make_session({ updated_at = 12345 })
  local before = now()
  local first = save(mgr, s)
  between(first.updated_at, before, now(), "save().updated_at")
  wait_past(first.updated_at)
  before = now()
  local second = save(mgr, s)
  local after = now()
  between(second.updated_at, before, after, "updated_at of a second save")
  between(meta_of(mgr, s.metadata.id).updated_at, before, after, "resume().metadata.updated_at")
end)

local function updated_by(name, op)
  check("timestamps: " .. name .. " sets updated_at to now", function(mgr)
    local s = make_session({ tags = { "a", "b" } }, messages(4))
    local meta = save(mgr, s)
    wait_past(meta.updated_at)
    local before = now()
    op(mgr, s.metadata.id)
    local after = now()
    between(meta_of(mgr, s.metadata.id).updated_at, before, after, "updated_at after " .. name)
    between(list(mgr)[1].updated_at, before, after, "list()[1].updated_at after " .. name)
  end)
end
updated_by("rewind", function(mgr, id) mgr:rewind(id, 2) end)
updated_by("tag", function(mgr, id) mgr:tag(id, "new") end)
updated_by("untag", function(mgr, id) mgr:untag(id, "a") end)
updated_by("rename", function(mgr, id) mgr:rename(id, "renamed") end)

check("timestamps: rewind, tag, untag and rename keep created_at", function(mgr)
  local s = make_session({ created_at = 1000, tags = { "a" } }, messages(4))
  save(mgr, s)
  local id = s.metadata.id
  eq(1000, mgr:rewind(id, 2).metadata.created_at, "rewind().metadata.created_at")
  mgr:tag(id, "b")
  eq(1000, meta_of(mgr, id).created_at, "created_at after tag")
  mgr:untag(id, "a")
  eq(1000, meta_of(mgr, id).created_at, "created_at after untag")
  mgr:rename(id, "n")
  eq(1000, meta_of(mgr, id).created_at, "created_at after rename")
end)

check("timestamps: a later write never gets an earlier updated_at", function(mgr)
  local stamps = {}
  local a = make_session(nil, messages(30))
  local b = make_session()
  local function stamp(what, v)
    stamps[#stamps + 1] = { what, v }
  end
  for i = 1, 30 do
    stamp("save a #" .. i, save(mgr, a).updated_at)
    stamp("save b #" .. i, save(mgr, b).updated_at)
    stamp("rewind #" .. i, mgr:rewind(a.metadata.id, 30 - i).metadata.updated_at)
    mgr:tag(b.metadata.id, "t" .. i)
    stamp("tag #" .. i, meta_of(mgr, b.metadata.id).updated_at)
    stamp("fork #" .. i, mgr:fork(b.metadata.id).updated_at)
    mgr:rename(a.metadata.id, "n" .. i)
    stamp("rename #" .. i, meta_of(mgr, a.metadata.id).updated_at)
    mgr:untag(b.metadata.id, "t" .. i)
    stamp("untag #" .. i, meta_of(mgr, b.metadata.id).updated_at)
  end
  for i = 2, #stamps do
    local prev, cur = stamps[i - 1], stamps[i]
    if math.type(cur[2]) ~= "integer" then fail("%s: updated_at is %s", cur[1], show(cur[2])) end
    if cur[2] < prev[2] then
      fail("%s got updated_at %d, earlier than %d of the write before (%s)", cur[1], cur[2], prev[2], prev[1])
    end
  end
end)

------------------------------------------------------------------ version

check("version: is 1 on creation", function(mgr)
  local s = make_session({ version = 42 })
  eq(1, save(mgr, s).version, "save().version")
  eq(1, meta_of(mgr, s.metadata.id).version, "resume().metadata.version")
  eq(1, list(mgr)[1].version, "list()[1].version")
end)

check("version: grows by one with each save", function(mgr)
  local s = make_session()
  for i = 1, 4 do eq(i, save(mgr, s).version, "version of save #" .. i) end
  eq(4, meta_of(mgr, s.metadata.id).version, "resume().metadata.version")
end)

local function bumped_by(name, op)
  check("version: grows by one with " .. name, function(mgr)
    local s = make_session({ tags = { "a", "b" } }, messages(4))
    save(mgr, s)
    save(mgr, s)
    op(mgr, s.metadata.id)
    eq(3, meta_of(mgr, s.metadata.id).version, "version after save, save, " .. name)
    eq(3, list(mgr)[1].version, "list()[1].version after save, save, " .. name)
  end)
end
bumped_by("rewind", function(mgr, id) eq(3, mgr:rewind(id, 1).metadata.version, "rewind().metadata.version") end)
bumped_by("tag", function(mgr, id) mgr:tag(id, "c") end)
bumped_by("untag", function(mgr, id) mgr:untag(id, "a") end)
bumped_by("rename", function(mgr, id) mgr:rename(id, "renamed") end)

check("version: tag, untag and rename are writes even when nothing changes", function(mgr)
  local s = make_session({ tags = { "a" } })
  save(mgr, s)
  local id = s.metadata.id
  mgr:tag(id, "a")
  eq(2, meta_of(mgr, id).version, "version after tag of a present tag")
  mgr:untag(id, "absent")
  eq(3, meta_of(mgr, id).version, "version after untag of an absent tag")
  mgr:rename(id, "my-task")
  eq(4, meta_of(mgr, id).version, "version after rename to the same name")
end)

check("version: a fork starts at 1 and the source keeps its version", function(mgr)
  local s = make_session()
  save(mgr, s)
  save(mgr, s)
  local fork = mgr:fork(s.metadata.id)
  eq(1, fork.version, "fork().version")
  eq(1, meta_of(mgr, fork.id).version, "resume(fork).metadata.version")
  eq(2, meta_of(mgr, s.metadata.id).version, "source version")
end)

check("version: reads do not change it", function(mgr)
  local s = make_session()
  save(mgr, s)
  resume(mgr, s.metadata.id)
  resume(mgr, s.metadata.id, { last = 1 })
  list(mgr)
  list(mgr, { tag = "production" })
  eq(1, meta_of(mgr, s.metadata.id).version, "version after reads")
end)

------------------------------------------------------------------ list

check("list: an empty store lists nothing", function(mgr)
  local l = list(mgr)
  truthy(next(l) == nil, "list() of an empty store gave %s", show(l))
end)

check("list: gives metadata equal to resume(id).metadata", function(mgr)
  local a = save(mgr, make_session({ tags = { "x", "y" }, turn_count = 3, total_tokens = 5 }))
  local f = mgr:fork(a.id, "copy")
  local l = list(mgr)
  eq(2, #l, "#list()")
  eq(meta_of(mgr, f.id), l[1], "list()[1]")
  eq(meta_of(mgr, a.id), l[2], "list()[2]")
end)

check("list: lists every session once", function(mgr)
  local want = {}
  for i = 1, 25 do want[save(mgr, make_session({ name = "s" .. i })).id] = true end
  local seen = {}
  for i, id in ipairs(list_ids(mgr)) do
    truthy(want[id], "list()[%d] is %s, not a saved session", i, show(id))
    truthy(not seen[id], "list() gives %s twice", show(id))
    seen[id] = true
  end
  for id in pairs(want) do truthy(seen[id], "list() is missing %s", show(id)) end
end)

check("list: puts the most recently updated first", function(mgr)
  local saved = {}
  for i = 1, 4 do
    local meta = save(mgr, make_session({ name = "s" .. i }))
    saved[i] = meta.id
    wait_past(meta.updated_at)
  end
  local l = list(mgr)
  eq({ saved[4], saved[3], saved[2], saved[1] }, ids(l), "list() ids")
  for i = 2, #l do
    truthy(l[i - 1].updated_at > l[i].updated_at, "list()[%d].updated_at %s is not after list()[%d].updated_at %s",
      i - 1, show(l[i - 1].updated_at), i, show(l[i].updated_at))
  end
end)

check("list: ties on updated_at go to the most recent write", function(mgr)
  local saved = {}
  for i = 1, 100 do saved[i] = save(mgr, make_session(nil, { i })).id end
  local expected = {}
  for i = 100, 1, -1 do expected[#expected + 1] = saved[i] end
  local l = list(mgr)
  eq(expected, ids(l), "list() ids (saved in a tight loop, newest first)")
  for i = 2, #l do
    truthy(l[i - 1].updated_at >= l[i].updated_at, "list()[%d] is older than list()[%d]", i - 1, i)
  end
end)

check("list: a write moves the session to the front", function(mgr)
  local a = save(mgr, make_session(nil, messages(3))).id
  local b = save(mgr, make_session()).id
  local c = save(mgr, make_session()).id
  eq({ c, b, a }, list_ids(mgr), "list() after saving a, b, c")
  save(mgr, resume(mgr, a))
  eq({ a, c, b }, list_ids(mgr), "list() after saving a again")
  mgr:tag(b, "t")
  eq({ b, a, c }, list_ids(mgr), "list() after tagging b")
  mgr:rename(c, "new name")
  eq({ c, b, a }, list_ids(mgr), "list() after renaming c")
  mgr:rewind(a, 1)
  eq({ a, c, b }, list_ids(mgr), "list() after rewinding a")
  mgr:untag(b, "t")
  eq({ b, a, c }, list_ids(mgr), "list() after untagging b")
end)

check("list: a fork comes first", function(mgr)
  local a = save(mgr, make_session()).id
  local b = save(mgr, make_session()).id
  local f = mgr:fork(a).id
  eq({ f, b, a }, list_ids(mgr), "list() after forking a")
end)

-- Four sessions saved s1..s4 (s4 most recent).
local function filter_sessions(mgr)
  local s1 = save(mgr, make_session({ tags = { "a", "b" }, agent_name = "x" })).id
  local s2 = save(mgr, make_session({ tags = { "a" }, agent_name = "y" })).id
  local s3 = save(mgr, make_session({ tags = { "b" }, agent_name = "x" })).id
  local s4 = save(mgr, make_session({ tags = {}, agent_name = "x" })).id
  return s1, s2, s3, s4
end

check("list: an empty filter lists everything", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3, s2, s1 }, list_ids(mgr, {}), "list{}")
end)

check("list: filter tag", function(mgr)
  local s1, s2, s3 = filter_sessions(mgr)
  eq({ s2, s1 }, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' }")
  eq({ s3, s1 }, list_ids(mgr, { tag = "b" }), "list{ tag = 'b' }")
  eq({}, list_ids(mgr, { tag = "missing" }), "list{ tag = 'missing' }")
end)

check("list: filter tags needs every one of them", function(mgr)
  local s1, s2 = filter_sessions(mgr)
  eq({ s1 }, list_ids(mgr, { tags = { "a", "b" } }), "list{ tags = { 'a', 'b' } }")
  eq({ s1 }, list_ids(mgr, { tags = { "b", "a" } }), "list{ tags = { 'b', 'a' } }")
  eq({ s2, s1 }, list_ids(mgr, { tags = { "a" } }), "list{ tags = { 'a' } }")
  eq({}, list_ids(mgr, { tags = { "a", "missing" } }), "list{ tags = { 'a', 'missing' } }")
end)

check("list: filter agent_name", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3, s1 }, list_ids(mgr, { agent_name = "x" }), "list{ agent_name = 'x' }")
  eq({ s2 }, list_ids(mgr, { agent_name = "y" }), "list{ agent_name = 'y' }")
  eq({}, list_ids(mgr, { agent_name = "" }), "list{ agent_name = '' }")
end)

check("list: filter parent_id finds the forks of a session", function(mgr)
  local a = save(mgr, make_session()).id
  local b = save(mgr, make_session()).id
  local f1 = mgr:fork(a, "one").id
  mgr:fork(b, "other")
  local f2 = mgr:fork(a, "two").id
  local g = mgr:fork(f1, "grandchild").id
  eq({ f2, f1 }, list_ids(mgr, { parent_id = a }), "list{ parent_id = a }")
  eq({ g }, list_ids(mgr, { parent_id = f1 }), "list{ parent_id = fork }")
  eq({}, list_ids(mgr, { parent_id = g }), "list{ parent_id = a session without forks }")
end)

check("list: limit", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  eq({ s4, s3 }, list_ids(mgr, { limit = 2 }), "list{ limit = 2 }")
  eq({ s4 }, list_ids(mgr, { limit = 1 }), "list{ limit = 1 }")
  eq({ s4, s3, s2, s1 }, list_ids(mgr, { limit = 10 }), "list{ limit = 10 }")
end)

check("list: offset", function(mgr)
  local s1, s2, s3 = filter_sessions(mgr)
  eq({ s3, s2, s1 }, list_ids(mgr, { offset = 1 }), "list{ offset = 1 }")
  eq({ s1 }, list_ids(mgr, { offset = 3 }), "list{ offset = 3 }")
  eq({ s3, s2 }, list_ids(mgr, { limit = 2, offset = 1 }), "list{ limit = 2, offset = 1 }")
end)

check("list: limit and offset page through the whole list", function(mgr)
  for i = 1, 10 do save(mgr, make_session({ name = "s" .. i })) end
  local all, paged = list_ids(mgr), {}
  for offset = 0, 9, 3 do
    for _, id in ipairs(list_ids(mgr, { limit = 3, offset = offset })) do paged[#paged + 1] = id end
  end
  eq(all, paged, "pages of 3")
end)

check("list: limit 0 gives nothing", function(mgr)
  filter_sessions(mgr)
  eq({}, list_ids(mgr, { limit = 0 }), "list{ limit = 0 }")
end)

check("list: an offset past the end gives nothing", function(mgr)
  filter_sessions(mgr)
  eq({}, list_ids(mgr, { offset = 4 }), "list{ offset = 4 } of 4")
  eq({}, list_ids(mgr, { offset = 100 }), "list{ offset = 100 }")
end)

check("list: filters combine, limit and offset counted after them", function(mgr)
  local s1, _, s3 = filter_sessions(mgr)
  eq({ s3, s1 }, list_ids(mgr, { agent_name = "x", tag = "b" }), "list{ agent_name = 'x', tag = 'b' }")
  eq({ s3 }, list_ids(mgr, { agent_name = "x", tag = "b", limit = 1 }), "... limit = 1")
  eq({ s1 }, list_ids(mgr, { agent_name = "x", tag = "b", offset = 1 }), "... offset = 1")
  eq({ s1 }, list_ids(mgr, { agent_name = "x", tags = { "a", "b" } }), "list{ agent_name = 'x', tags = { a, b } }")
  eq({}, list_ids(mgr, { agent_name = "y", tag = "b" }), "list{ agent_name = 'y', tag = 'b' }")
end)

check("list: deleted sessions are not listed", function(mgr)
  local s1, s2, s3, s4 = filter_sessions(mgr)
  mgr:delete(s3)
  eq({ s4, s2, s1 }, list_ids(mgr), "list() after a delete")
  eq({ s1 }, list_ids(mgr, { tag = "b" }), "list{ tag = 'b' } after a delete")
  mgr:delete(s1)
  mgr:delete(s2)
  mgr:delete(s4)
  eq({}, list_ids(mgr), "list() after deleting all")
end)

check("list: changing the result changes nothing stored", function(mgr)
  local s = make_session({ tags = { "a" } })
  save(mgr, s)
  local l = list(mgr)
  local expected = deep_copy(l)
  l[1].name = "changed"
  l[1].tags[1] = "changed"
  l[1].id = "changed"
  l[2] = { id = "added" }
  eq(expected, list(mgr), "list()")
  eq("my-task", meta_of(mgr, s.metadata.id).name, "name")
end)

check("list: has_tag works on listed metadata", function(mgr)
  save(mgr, make_session({ tags = { "production", "eu" } }))
  local meta = list(mgr)[1]
  truthy(agentsession.has_tag(meta, "eu"), "has_tag(list()[1], 'eu') is false")
  truthy(not agentsession.has_tag(meta, "us"), "has_tag(list()[1], 'us') is true")
end)

------------------------------------------------------------------ fork

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function fork_source(mgr)
  local s = make_session({ tags = { "a", "b" }, turn_count = 4, total_tokens = 500, created_at = 1000 },
    messages(4), { cwd = "/src", n = 1, list = { 1, 2 } })
  save(mgr, s)
  return s
end

check("fork: gives the copy a new UUID v4 id", function(mgr)
  local src = fork_source(mgr)
  local a = mgr:fork(src.metadata.id, "copy")
  local b = mgr:fork(src.metadata.id, "copy")
  for _, meta in ipairs({ a, b }) do
    truthy(type(meta) == "table" and type(meta.id) == "string", "fork() returned %s", show(meta))
    truthy(#meta.id == 36 and meta.id:match(UUID_V4) and meta.id == meta.id:lower(),
      "%s is not a lowercase UUID v4", show(meta.id))
    truthy(meta.id ~= src.metadata.id, "the fork has the id of its source")
  end
  truthy(a.id ~= b.id, "two forks got the same id %s", show(a.id))
end)

check("fork: copies messages, state, tags, agent_name, turn_count and total_tokens", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy = resume(mgr, meta.id)
  eq(messages(4), copy.messages, "messages")
  eq({ cwd = "/src", n = 1, list = { 1, 2 } }, copy.state, "state")
  eq({ "a", "b" }, copy.metadata.tags, "tags")
  eq("code-agent", copy.metadata.agent_name, "agent_name")
  eq(4, copy.metadata.turn_count, "turn_count")
  eq(500, copy.metadata.total_tokens, "total_tokens")
end)

check("fork: uses the name given", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "experiment-branch")
  eq("experiment-branch", meta.name, "fork().name")
  eq("experiment-branch", meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
end)

check("fork: names the copy '<name> (fork)' when no name is given", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id)
  eq("my-task (fork)", meta.name, "fork().name")
  eq("my-task (fork)", meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
  eq("my-task (fork) (fork)", mgr:fork(meta.id).name, "name of a fork of the fork")
end)

check("fork: leaves the copy unnamed when the source is unnamed and no name is given", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  local meta = mgr:fork(s.metadata.id)
  eq(nil, meta.name, "fork().name")
  eq(nil, meta_of(mgr, meta.id).name, "resume(fork).metadata.name")
end)

check("fork: uses the name given when the source is unnamed", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  eq("given", mgr:fork(s.metadata.id, "given").name, "fork().name")
end)

check("fork: sets parent_id to the source id", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id)
  eq(src.metadata.id, meta.parent_id, "fork().parent_id")
  eq(src.metadata.id, meta_of(mgr, meta.id).parent_id, "resume(fork).metadata.parent_id")
  eq(nil, meta_of(mgr, src.metadata.id).parent_id, "the source's parent_id")
  eq(meta.id, mgr:fork(meta.id).parent_id, "parent_id of a fork of the fork")
end)

check("fork: sets created_at and updated_at to now", function(mgr)
  local src = fork_source(mgr)
  local before = now()
  local meta = mgr:fork(src.metadata.id)
  local after = now()
  between(meta.created_at, before, after, "fork().created_at")
  between(meta.updated_at, before, after, "fork().updated_at")
  eq(meta.created_at, meta.updated_at, "fork().updated_at vs created_at")
end)

check("fork: returns the stored metadata of the copy", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  is_table(meta, "fork()'s result")
  eq(meta_of(mgr, meta.id), meta, "fork() vs resume(fork).metadata")
end)

check("fork: leaves the source untouched", function(mgr)
  local src = fork_source(mgr)
  local before = snapshot(mgr)
  mgr:fork(src.metadata.id, "copy")
  mgr:fork(src.metadata.id, nil, { at = 1 })
  eq(before.sessions[1], resume(mgr, src.metadata.id), "source")
end)

check("fork: changing the copy does not change the source", function(mgr)
  local src = fork_source(mgr)
  local source_before = resume(mgr, src.metadata.id)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy = resume(mgr, meta.id)
  copy.messages[#copy.messages + 1] = "only in the copy"
  copy.messages[1].content = "changed in the copy"
  copy.state.cwd = "/copy"
  copy.state.list[1] = 9
  save(mgr, copy)
  mgr:rewind(meta.id, 2)
  mgr:tag(meta.id, "copy-only")
  mgr:untag(meta.id, "a")
  mgr:rename(meta.id, "renamed copy")
  eq(source_before, resume(mgr, src.metadata.id), "source")
end)

check("fork: changing the source does not change the copy", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "copy")
  local copy_before = resume(mgr, meta.id)
  local original = resume(mgr, src.metadata.id)
  original.messages[1].content = "changed in the source"
  original.messages[5] = "only in the source"
  original.state.list[2] = 7
  save(mgr, original)
  mgr:tag(src.metadata.id, "source-only")
  mgr:rewind(src.metadata.id, 1)
  eq(copy_before, resume(mgr, meta.id), "copy")
  mgr:delete(src.metadata.id)
  eq(copy_before, resume(mgr, meta.id), "copy after deleting the source")
end)

check("fork: with {at = k} keeps the first k messages", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, "early", { at = 2 })
  eq(2, meta.turn_count, "fork().turn_count")
  eq("early", meta.name, "fork().name")
  local copy = resume(mgr, meta.id)
  eq({ messages(4)[1], messages(4)[2] }, copy.messages, "messages")
  eq(2, copy.metadata.turn_count, "resume(fork).metadata.turn_count")
  eq(messages(4), resume(mgr, src.metadata.id).messages, "source messages")
end)

check("fork: with {at = k} past the end keeps every message", function(mgr)
  local s = make_session({ turn_count = 9 }, messages(4))
  save(mgr, s)
  local meta = mgr:fork(s.metadata.id, nil, { at = 10 })
  eq(4, meta.turn_count, "fork().turn_count")
  eq("my-task (fork)", meta.name, "fork().name")
  eq(messages(4), resume(mgr, meta.id).messages, "messages")
end)

check("fork: with {at = 0} keeps no message", function(mgr)
  local src = fork_source(mgr)
  local meta = mgr:fork(src.metadata.id, nil, { at = 0 })
  eq(0, meta.turn_count, "fork().turn_count")
  local copy = resume(mgr, meta.id)
  truthy(next(copy.messages) == nil, "messages: expected none, got %s", show(copy.messages))
  eq({ cwd = "/src", n = 1, list = { 1, 2 } }, copy.state, "state")
end)

------------------------------------------------------------------ rewind

local function rewind_source(mgr)
  local s = make_session({ turn_count = 7, total_tokens = 70, tags = { "a", "b" }, created_at = 1000 },
    messages(5), { cwd = "/r", list = { 1 } })
  save(mgr, s)
  return s.metadata.id
end

check("rewind: rewind(id, 3) keeps the first 3 messages", function(mgr)
  local id = rewind_source(mgr)
  mgr:rewind(id, 3)
  local r = resume(mgr, id)
  eq({ messages(5)[1], messages(5)[2], messages(5)[3] }, r.messages, "messages")
  eq(3, r.metadata.turn_count, "turn_count")
end)

check("rewind: returns the rewound session, equal to a later resume", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 2)
  is_table(rewound, "rewind()'s result")
  is_table(rewound.metadata, "rewind().metadata")
  eq({ messages(5)[1], messages(5)[2] }, rewound.messages, "rewind().messages")
  eq(2, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  eq(resume(mgr, id), rewound, "rewind() vs resume()")
end)

check("rewind: past the end keeps every message", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 10)
  eq(messages(5), rewound.messages, "rewind().messages")
  eq(5, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  eq(messages(5), resume(mgr, id).messages, "resume().messages")
end)

check("rewind: to 0 keeps no message", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 0)
  truthy(next(rewound.messages) == nil, "rewind().messages: expected none, got %s", show(rewound.messages))
  eq(0, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  local r = resume(mgr, id)
  truthy(next(r.messages) == nil and getmetatable(r.messages) == array_mt,
    "resume().messages: expected [], got %s", show(r.messages))
  eq({ cwd = "/r", list = { 1 } }, r.state, "state")
end)

check("rewind: keeps state, tags, name, agent_name, total_tokens and created_at", function(mgr)
  local id = rewind_source(mgr)
  local before = resume(mgr, id)
  local r = mgr:rewind(id, 2)
  eq(before.state, r.state, "state")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "total_tokens", "created_at" }) do
    eq(before.metadata[field], r.metadata[field], "metadata." .. field)
  end
end)

check("rewind: a negative index is invalid and changes nothing", function(mgr)
  local id = rewind_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rewind(id, -1)", "invalid", function() return mgr:rewind(id, -1) end)
  unchanged(mgr, before, "rewind(id, -1)")
end)

check("rewind: a fractional index is invalid and changes nothing", function(mgr)
  local id = rewind_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rewind(id, 1.5)", "invalid", function() return mgr:rewind(id, 1.5) end)
  unchanged(mgr, before, "rewind(id, 1.5)")
end)

check("rewind: an integral float index counts as that integer", function(mgr)
  local id = rewind_source(mgr)
  local r = mgr:rewind(id, 2.0)
  eq(2, #r.messages, "#rewind(id, 2.0).messages")
  eq(2, r.metadata.turn_count, "rewind(id, 2.0).metadata.turn_count")
end)

------------------------------------------------------------------ tag

local function tag_source(mgr, tags)
  local s = make_session({ tags = tags or { "a" } })
  save(mgr, s)
  return s.metadata.id
end

check("tag: a string is appended and the tag array returned", function(mgr)
  local id = tag_source(mgr)
  eq({ "a", "b" }, mgr:tag(id, "b"), "tag(id, 'b')")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("tag: an array appends those missing, in order, without repeats", function(mgr)
  local id = tag_source(mgr)
  eq({ "a", "c", "b", "d" }, mgr:tag(id, { "c", "a", "b", "c", "d" }), "tag(id, { c, a, b, c, d })")
  eq({ "a", "c", "b", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
  eq({ "a", "c", "b", "d" }, list(mgr)[1].tags, "list()[1].tags")
end)

check("tag: tags already present are left as they are", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  eq({ "a", "b" }, mgr:tag(id, "a"), "tag(id, 'a')")
  eq({ "a", "b" }, mgr:tag(id, { "b", "a" }), "tag(id, { b, a })")
  eq({ "a", "b" }, mgr:tag(id, {}), "tag(id, {})")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

-- Runs `write` on session `id` and checks that its messages, its state and
-- the metadata fields named are as they were.
local function keeps_all_but(mgr, id, write, fields)
  local before = resume(mgr, id)
  write()
  local after = resume(mgr, id)
  eq(before.messages, after.messages, "messages")
  eq(before.state, after.state, "state")
  for _, field in ipairs(fields) do
    eq(before.metadata[field], after.metadata[field], "metadata." .. field)
  end
end

check("tag: changes nothing but tags, updated_at and version", function(mgr)
  local id = tag_source(mgr)
  keeps_all_but(mgr, id, function() mgr:tag(id, "z") end,
    { "id", "name", "agent_name", "created_at", "turn_count", "total_tokens" })
end)

local function refused_tag(name, method, arg, misuse)
  check(name, function(mgr)
    local id = tag_source(mgr, { "a", "b" })
    local before = snapshot(mgr)
    local what = method .. "(id, " .. show(arg) .. ")"
    local call = function() return mgr[method](mgr, id, arg) end
    if misuse then expect_refused(what, call) else expect_error_in(what, "invalid", call) end
    unchanged(mgr, before, what)
  end)
end
refused_tag("tag: an empty tag is invalid and changes nothing", "tag", "")
refused_tag("tag: an empty tag in an array is invalid and changes nothing", "tag", { "c", "" })
refused_tag("tag: a non-string entry is invalid and changes nothing", "tag", { "c", 5 })
refused_tag("tag: a control character is invalid and changes nothing", "tag", { "c", "d\ne" })
refused_tag("untag: a non-string entry is invalid and changes nothing", "untag", { "a", 5 })
refused_tag("tag: a number instead of tags is refused and changes nothing", "tag", 5, true)

------------------------------------------------------------------ untag

check("untag: a string is removed and the rest returned", function(mgr)
  local id = tag_source(mgr, { "a", "b", "c", "d" })
  eq({ "a", "c", "d" }, mgr:untag(id, "b"), "untag(id, 'b')")
  eq({ "a", "c", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("untag: an array removes them, ignoring absent ones", function(mgr)
  local id = tag_source(mgr, { "a", "b", "c", "d" })
  eq({ "b", "d" }, mgr:untag(id, { "c", "missing", "a" }), "untag(id, { c, missing, a })")
  eq({ "b", "d" }, meta_of(mgr, id).tags, "resume().metadata.tags")
  eq({ "b", "d" }, list(mgr)[1].tags, "list()[1].tags")
end)

check("untag: an absent tag is fine and removes nothing", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  eq({ "a", "b" }, mgr:untag(id, "missing"), "untag(id, 'missing')")
  eq({ "a", "b" }, meta_of(mgr, id).tags, "resume().metadata.tags")
end)

check("untag: removing every tag leaves an empty array", function(mgr)
  local id = tag_source(mgr, { "a", "b" })
  local tags = mgr:untag(id, { "a", "b" })
  truthy(type(tags) == "table" and next(tags) == nil, "untag(id, { a, b }) returned %s", show(tags))
  local stored = meta_of(mgr, id).tags
  truthy(type(stored) == "table" and next(stored) == nil, "resume().metadata.tags is %s", show(stored))
  eq({}, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' }")
end)

------------------------------------------------------------------ rename

check("rename: sets the name", function(mgr)
  local id = tag_source(mgr)
  mgr:rename(id, "final-delivery")
  eq("final-delivery", meta_of(mgr, id).name, "resume().metadata.name")
  eq("final-delivery", list(mgr)[1].name, "list()[1].name")
end)

check("rename: returns no value", function(mgr)
  local id = tag_source(mgr)
  no_values("rename()", mgr:rename(id, "x"))
end)

check("rename: names an unnamed session", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  mgr:rename(s.metadata.id, "named")
  eq("named", meta_of(mgr, s.metadata.id).name, "resume().metadata.name")
end)

check("rename: changes nothing but name, updated_at and version", function(mgr)
  local id = rewind_source(mgr)
  keeps_all_but(mgr, id, function() mgr:rename(id, "renamed") end,
    { "id", "tags", "agent_name", "created_at", "turn_count", "total_tokens" })
end)

check("rename: a non-string name is refused and changes nothing", function(mgr)
  local id = tag_source(mgr)
  local before = snapshot(mgr)
  expect_refused("rename(id, 5)", function() return mgr:rename(id, 5) end)
  expect_refused("rename(id, {})", function() return mgr:rename(id, {}) end)
  unchanged(mgr, before, "rename with a non-string name")
end)

check("rename: a name with a control character is invalid and changes nothing", function(mgr)
  local id = tag_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rename(id, 'two\\nlines')", "invalid", function() return mgr:rename(id, "two\nlines") end)
  unchanged(mgr, before, "rename with a control character")
end)

------------------------------------------------------------------ delete

check("delete: removes the session", function(mgr)
  local keep = save(mgr, make_session()).id
  local gone = save(mgr, make_session()).id
  mgr:delete(gone)
  expect_error_in("resume of the deleted id", "not_found", function() return mgr:resume(gone) end)
  eq({ keep }, list_ids(mgr), "list() ids")
end)

check("delete: returns no value", function(mgr)
  local id = save(mgr, make_session()).id
  no_values("delete()", mgr:delete(id))
end)

check("delete: leaves the other sessions as they were", function(mgr)
  local a = save(mgr, make_session({ tags = { "t" } }, messages(3))).id
  local b = save(mgr, make_session({ tags = { "t" } }, messages(2))).id
  local c = save(mgr, make_session({ tags = { "t" } }, messages(1))).id
  local ra, rc = resume(mgr, a), resume(mgr, c)
  mgr:delete(b)
  eq(ra, resume(mgr, a), "session a")
  eq(rc, resume(mgr, c), "session c")
  eq({ c, a }, list_ids(mgr, { tag = "t" }), "list{ tag = 't' }")
end)

check("delete: deleting twice, the second is not_found", function(mgr)
  local keep = save(mgr, make_session()).id
  local id = save(mgr, make_session()).id
  mgr:delete(id)
  expect_error_in("the second delete", "not_found", function() return mgr:delete(id) end)
  eq({ keep }, list_ids(mgr), "list() ids")
end)

check("delete: the id can be saved again, as a new session", function(mgr)
  local s = make_session({ created_at = 1000 }, messages(3))
  save(mgr, s)
  save(mgr, s)
  mgr:delete(s.metadata.id)
  s.messages = { "again" }
  local meta = save(mgr, s)
  eq(1, meta.version, "version of the new session")
  eq({ "again" }, resume(mgr, s.metadata.id).messages, "messages")
  eq({ s.metadata.id }, list_ids(mgr), "list() ids")
end)

------------------------------------------------------------------ resume last

check("resume last: {last = n} gives the last n messages and the stored metadata", function(mgr)
  local id = rewind_source(mgr)
  local full = resume(mgr, id)
  local r = resume(mgr, id, { last = 2 })
  eq({ messages(5)[4], messages(5)[5] }, r.messages, "messages")
  eq(full.metadata, r.metadata, "metadata")
  eq(7, r.metadata.turn_count, "turn_count")
  eq(full.state, r.state, "state")
  eq(messages(5), resume(mgr, id).messages, "a later full resume")
end)

check("resume last: n past the end gives every message", function(mgr)
  local id = rewind_source(mgr)
  eq(messages(5), resume(mgr, id, { last = 10 }).messages, "messages with last = 10")
  eq(messages(5), resume(mgr, id, { last = 5 }).messages, "messages with last = 5")
end)

check("resume last: n = 0 gives no message but the state", function(mgr)
  local id = rewind_source(mgr)
  local r = resume(mgr, id, { last = 0 })
  truthy(next(r.messages) == nil, "messages: expected none, got %s", show(r.messages))
  eq({ cwd = "/r", list = { 1 } }, r.state, "state")
  eq(meta_of(mgr, id), r.metadata, "metadata")
end)

------------------------------------------------------------------ window

-- Resumes a window, checking its `window` field is { first, count, total, version }.
local function window(mgr, id, opts)
  local w = resume(mgr, id, opts)
  is_table(w.window, "resume(id, " .. (opts.last and "{ last }" or "{ from }") .. ").window")
  for _, k in ipairs({ "first", "count", "total", "version" }) do
    truthy(math.type(w.window[k]) == "integer", "window.%s is %s, not an integer", k, show(w.window[k]))
  end
  return w
end

local function window_source(mgr, n)
  local s = make_session({ turn_count = 7, total_tokens = 70, tags = { "w" }, created_at = 1000 },
    messages(n or 10), { cwd = "/w", step = 1 })
  return save(mgr, s).id
end

check("window: resume{ last = n } carries window { first, count, total, version }", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 3 })
  eq({ first = 8, count = 3, total = 10, version = 1 }, w.window, "window")
  eq({ messages(10)[8], messages(10)[9], messages(10)[10] }, w.messages, "messages")
  eq(meta_of(mgr, id), w.metadata, "metadata")
  eq({ cwd = "/w", step = 1 }, w.state, "state")
  eq({ first = 1, count = 10, total = 10, version = 1 }, window(mgr, id, { last = 20 }).window,
    "window of last = 20")
  eq({ first = 11, count = 0, total = 10, version = 1 }, window(mgr, id, { last = 0 }).window,
    "window of last = 0")
end)

check("window: resume{ from = i, count = n } gives those messages and their window", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { from = 4, count = 2 })
  eq({ messages(10)[4], messages(10)[5] }, w.messages, "messages")
  eq({ first = 4, count = 2, total = 10, version = 1 }, w.window, "window")
  w = window(mgr, id, { from = 9 })
  eq({ messages(10)[9], messages(10)[10] }, w.messages, "messages from 9")
  eq({ first = 9, count = 2, total = 10, version = 1 }, w.window, "window from 9")
  w = window(mgr, id, { from = 8, count = 50 })
  eq({ first = 8, count = 3, total = 10, version = 1 }, w.window, "window of a count past the end")
end)

check("window: from past the end gives no message, first = total + 1", function(mgr)
  local id = window_source(mgr, 4)
  local w = window(mgr, id, { from = 9 })
  truthy(next(w.messages) == nil, "messages: expected none, got %s", show(w.messages))
  eq({ first = 5, count = 0, total = 4, version = 1 }, w.window, "window")
  eq({ cwd = "/w", step = 1 }, w.state, "state")
end)

check("window: a whole resume has no window", function(mgr)
  local id = window_source(mgr)
  eq(nil, resume(mgr, id).window, "resume(id).window")
end)

check("window: saving the last 2 with one more message keeps the other 8", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  w.messages[#w.messages + 1] = { role = "assistant", content = "m11" }
  local meta = save(mgr, w)
  local all = messages(10)
  all[11] = { role = "assistant", content = "m11" }
  eq(all, resume(mgr, id).messages, "messages after the save")
  eq(2, meta.version, "version")
  eq(meta, meta_of(mgr, id), "save()'s result")
end)

check("window: saving keeps the messages before it exactly", function(mgr)
  local before = {
    { n = math.maxinteger, f = 1.0, tiny = 5e-324 }, setmetatable({}, array_mt), {}, null, "caf\u{e9}\0",
    { deep = { { 0.1 } } },
  }
  for _, m in ipairs(messages(3)) do before[#before + 1] = m end
  local s = make_session(nil, before)
  save(mgr, s)
  local w = window(mgr, s.metadata.id, { last = 1 })
  w.messages[1] = { changed = true }
  save(mgr, w)
  local expected = deep_copy(before)
  expected[#expected] = { changed = true }
  local got = resume(mgr, s.metadata.id).messages
  local ok, why = same(expected, got, "messages", "json")
  if not ok then fail("%s", why) end
end)

check("window: a changed message is replaced, and one removed from its end is removed", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 4 })
  w.messages[1].content = "changed"
  table.remove(w.messages)
  table.remove(w.messages)
  save(mgr, w)
  local expected = messages(8)
  expected[7].content = "changed"
  eq(expected, resume(mgr, id).messages, "messages")
end)

check("window: save sets the state, name, tags and counts given, as any save", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 1 })
  w.state = { cwd = "/new" }
  w.metadata.name = "renamed"
  w.metadata.tags = { "x" }
  w.metadata.turn_count = 42
  w.metadata.created_at = 0
  local meta = save(mgr, w)
  local r = resume(mgr, id)
  eq({ cwd = "/new" }, r.state, "state")
  eq("renamed", r.metadata.name, "name")
  eq({ "x" }, r.metadata.tags, "tags")
  eq(42, r.metadata.turn_count, "turn_count")
  eq(1000, r.metadata.created_at, "created_at")
  eq(meta, r.metadata, "save()'s result")
  eq(messages(10), r.messages, "messages")
end)

check("window: saving after another write is conflict and changes nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  mgr:append(id, { { role = "user", content = "meanwhile" } })
  w.messages[#w.messages + 1] = { role = "assistant", content = "late" }
  local before = snapshot(mgr)
  expect_error("conflict", function() return mgr:save(w) end)
  unchanged(mgr, before, "a conflicting window save")
end)

check("window: saving a window of a deleted session is conflict and stores nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  mgr:delete(id)
  expect_error("conflict", function() return mgr:save(w) end)
  eq({}, list_ids(mgr), "list() ids")
end)

check("window: one that stops before the end is invalid and changes nothing", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { from = 3, count = 2 })
  local before = snapshot(mgr)
  expect_error("invalid", function() return mgr:save(w) end)
  w.messages[#w.messages + 1] = { content = "more" }
  expect_error("invalid", function() return mgr:save(w) end)
  unchanged(mgr, before, "saving a window short of the end")
end)

check("window: the window of last = 0 saved with new messages appends them", function(mgr)
  local id = window_source(mgr, 3)
  local w = window(mgr, id, { last = 0 })
  w.messages = { { content = "a" }, { content = "b" } }
  save(mgr, w)
  local all = messages(3)
  all[4], all[5] = { content = "a" }, { content = "b" }
  eq(all, resume(mgr, id).messages, "messages")
end)

check("window: expect_version other than the window's version is invalid", function(mgr)
  local id = window_source(mgr)
  local w = window(mgr, id, { last = 2 })
  local before = snapshot(mgr)
  expect_error("invalid", function() return mgr:save(w, { expect_version = 2 }) end)
  unchanged(mgr, before, "a window saved with another expect_version")
  eq(2, save(mgr, w, { expect_version = 1 }).version, "saved with expect_version = its version")
end)

check("window: a window field that is not a window is invalid", function(mgr)
  local id = window_source(mgr)
  local before = snapshot(mgr)
  for i, bad in ipairs({ "x", { first = 0, total = 10, version = 1 }, { first = 1, total = 10 },
      { first = 12, count = 0, total = 10, version = 1 }, { first = 1.5, total = 10, version = 1 } }) do
    local w = window(mgr, id, { last = 1 })
    w.window = bad
    expect_error_in("window #" .. i, "invalid", function() return mgr:save(w) end)
  end
  unchanged(mgr, before, "saving bad windows")
end)

------------------------------------------------------------------ errors

check("errors: are tables with kind and message, and id for not_found", function(mgr)
  local err = expect_error("not_found", function() return mgr:resume(MISSING) end)
  truthy(type(err) == "table", "the error is a %s", type(err))
  eq("not_found", err.kind, "err.kind")
  truthy(type(err.message) == "string" and err.message ~= "", "err.message is %s", show(err.message))
  eq(MISSING, err.id, "err.id")
  local bad = expect_error("invalid", function() return mgr:save(make_session({ id = "" })) end)
  eq("invalid", bad.kind, "err.kind of an invalid save")
  truthy(type(bad.message) == "string" and bad.message ~= "", "err.message is %s", show(bad.message))
end)

check("errors: tostring gives 'agentsession: <kind>: <message> (at <where>)'", function(mgr)
  local err = expect_error("not_found", function() return mgr:resume(MISSING) end)
  eq(error_text("not_found", err), tostring(err), "tostring(err)")
  local bad = expect_error("invalid", function() return mgr:save(make_session({ id = "" })) end)
  eq(error_text("invalid", bad), tostring(bad), "tostring(err)")
end)

check("errors: where is a position or empty, and concatenation gives the tostring", function(mgr)
  local err = expect_error("not_found", function() return mgr:resume(MISSING) end)
  truthy(type(err.where) == "string", "err.where is %s", show(err.where))
  truthy(err.where == "" or err.where:match("^.+:%d+:$"), "err.where is %s, not \"file:line:\" or \"\"",
    show(err.where))
  local ok, text = pcall(function() return "<" .. err .. ">" end)
  truthy(ok, "concatenating the error raised %s", safe_tostring(text))
  eq("<" .. tostring(err) .. ">", text, '"<" .. err .. ">"')
end)

check("errors: is_error recognises them, with and without a kind", function(mgr)
  local ok, err = pcall(function() return mgr:resume(MISSING) end)
  truthy(not ok, "resume of a missing id succeeded")
  truthy(is_error(err), "is_error(err) is false for %s", show(err))
  truthy(is_error(err, "not_found"), "is_error(err, 'not_found') is false for %s", show(err))
  truthy(not is_error(err, "invalid"), "is_error(err, 'invalid') is true for a not_found error")
  truthy(not is_error("agentsession: not_found: x"), "is_error of a string is true")
  truthy(not is_error({ kind = "not_found", message = "x" }), "is_error of a plain table is true")
end)

local missing_calls = {
  { "resume", function(m) return m:resume(MISSING) end },
  { "fork", function(m) return m:fork(MISSING) end },
  { "rewind", function(m) return m:rewind(MISSING, 1) end },
  { "tag", function(m) return m:tag(MISSING, "t") end },
  { "untag", function(m) return m:untag(MISSING, "t") end },
  { "rename", function(m) return m:rename(MISSING, "n") end },
  { "delete", function(m) return m:delete(MISSING) end },
}
for _, row in ipairs(missing_calls) do
  local name, call = row[1], row[2]
  check("errors: " .. name .. " of a missing id is not_found and changes nothing", function(mgr)
    two_sessions(mgr)
    local before = snapshot(mgr)
    local err = expect_error_in(name .. " of a missing id", "not_found", call, mgr)
    eq(MISSING, err.id, "err.id")
    unchanged(mgr, before, "a failed " .. name)
  end)
end

-- A save that breaks one rule: refused as invalid on an existing id (the
-- stored session stays) and on a new id (nothing is stored).
local function refused_save(name, mutate, opts)
  opts = opts or {}
  check("errors: invalid: " .. name, function(mgr)
    local known = two_sessions(mgr)
    local before = snapshot(mgr)
    if not opts.new_only then
      local s = deep_copy(known)
      mutate(s, s.metadata)
      local err = expect_error_in("save of the stored id with " .. name, "invalid", function() return mgr:save(s) end)
      if opts.path then
        truthy(type(err.message) == "string" and err.message:find(opts.path, 1, true),
          "the message %s does not name %s", show(err.message), opts.path)
      end
      unchanged(mgr, before, "a failed save")
    end
    if not opts.existing_only then
      local s = make_session({ tags = { "a", "b" } }, messages(3), { cwd = "/home/user", depth = 1 })
      local id = s.metadata.id
      mutate(s, s.metadata)
      expect_error_in("save of a new id with " .. name, "invalid", function() return mgr:save(s) end)
      unchanged(mgr, before, "a failed save of a new id")
      if type(id) == "string" then
        expect_error_in("resume after the failed save", "not_found", function() return mgr:resume(id) end)
      end
    end
  end)
end

local function cycle()
  local t = { role = "user" }
  t.self = t
  return t
end

refused_save("no id", function(_, m) m.id = nil end, { new_only = true })
refused_save("an empty id", function(_, m) m.id = "" end, { new_only = true })
refused_save("a control character in the id", function(_, m) m.id = m.id .. "\n" end, { new_only = true })
refused_save("a 256-byte id", function(_, m) m.id = string.rep("i", 256) end, { new_only = true })
refused_save("a non-string name", function(_, m) m.name = 5 end)
refused_save("a function in a message", function(s) s.messages[3].content = print end,
  { path = "messages[3].content" })
refused_save("NaN in a message", function(s) s.messages[2].score = 0 / 0 end, { path = "messages[2]" })
refused_save("infinity in the state", function(s) s.state.depth = math.huge end, { path = "state" })
refused_save("a sparse table in a message", function(s) s.messages[2] = { [1] = "a", [3] = "c" } end,
  { path = "messages[2]" })
refused_save("a mixed table in a message", function(s) s.messages[1] = { "a", role = "user" } end,
  { path = "messages[1]" })
refused_save("a cycle in a message", function(s) s.messages[2] = cycle() end, { path = "messages[2]" })
refused_save("invalid UTF-8 in a message", function(s) s.messages[3].content = "caf\xe9" end,
  { path = "messages[3].content" })
refused_save("invalid UTF-8 in the state", function(s) s.state.cwd = "\x80" end, { path = "state.cwd" })
refused_save("a function in the state", function(s) s.state.cwd = print end, { path = "state.cwd" })
refused_save("an unknown metadata key", function(_, m) m.bogus = 1 end, { path = "bogus" })
refused_save("an unknown session key", function(s) s.extra = true end, { path = "extra" })
refused_save("a non-string tag", function(_, m) m.tags = { "a", 5 } end, { path = "tags" })
refused_save("tags that are not an array", function(_, m) m.tags = "a" end, { path = "tags" })
refused_save("no agent_name", function(_, m) m.agent_name = nil end, { path = "agent_name" })
refused_save("a control character in the name", function(_, m) m.name = "a\1b" end, { path = "name" })
refused_save("a turn_count past 2^32-1", function(_, m) m.turn_count = 4294967296 end, { path = "turn_count" })
refused_save("a negative turn_count", function(_, m) m.turn_count = -1 end, { path = "turn_count" })
refused_save("a fractional total_tokens", function(_, m) m.total_tokens = 1.5 end, { path = "total_tokens" })
refused_save("a negative created_at", function(_, m) m.created_at = -5 end, { path = "created_at" })
refused_save("a non-string key in a message", function(s) s.messages[2] = { [true] = 1 } end,
  { path = "messages[2]" })
refused_save("a message nested 200 deep", function(s)
  local v = {}
  for _ = 2, 200 do v = { v } end
  s.messages[1] = v
end, { path = "messages[1]" })

------------------------------------------------------------------ append

local json = agentsession.json

local function append(mgr, id, msgs, opts)
  local meta
  if opts == nil then meta = mgr:append(id, msgs) else meta = mgr:append(id, msgs, opts) end
  is_table(meta, "append()'s result")
  return meta
end

-- The messages of `a` followed by those of `b`, in a new table.
local function concat(a, b)
  local out = {}
  for _, m in ipairs(a) do out[#out + 1] = deep_copy(m) end
  for _, m in ipairs(b) do out[#out + 1] = deep_copy(m) end
  return out
end

local function appended(n, from)
  local out = {}
  for i = 1, n do out[i] = { role = "assistant", content = "appended " .. (from + i), n = from + i } end
  return out
end

-- A stored session of 3 messages, turn_count 7 and total_tokens 100; returns it.
local function append_source(mgr)
  local s = make_session({ tags = { "a", "b" }, created_at = 1000, turn_count = 7, total_tokens = 100 },
    messages(3), { cwd = "/append", list = { 1, 2 } })
  save(mgr, s)
  return s
end

check("append: adds the messages after the stored ones, in order", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, appended(2, 0))
  append(mgr, id, appended(1, 2))
  eq(concat(messages(3), appended(3, 0)), resume(mgr, id).messages, "messages after two appends")
end)

check("append: many appends of one message keep every message in order", function(mgr)
  local s = make_session(nil, {})
  save(mgr, s)
  for i = 1, 40 do append(mgr, s.metadata.id, { messages(40)[i] }) end
  local r = resume(mgr, s.metadata.id)
  eq(messages(40), r.messages, "messages")
  eq(40, r.metadata.turn_count, "turn_count")
  eq(41, r.metadata.version, "version")
end)

check("append: returns the new metadata, equal to resume(id).metadata and list()[1]", function(mgr)
  local s = append_source(mgr)
  local meta = append(mgr, s.metadata.id, appended(2, 0), { tokens = 5 })
  eq(s.metadata.id, meta.id, "append().id")
  eq(9, meta.turn_count, "append().turn_count")
  eq(105, meta.total_tokens, "append().total_tokens")
  eq(2, meta.version, "append().version")
  eq(meta_of(mgr, s.metadata.id), meta, "append() vs resume().metadata")
  eq(meta, list(mgr)[1], "append() vs list()[1]")
end)

check("append: turn_count grows by the number of messages appended", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  eq(10, append(mgr, id, appended(3, 0)).turn_count, "turn_count after appending 3 to 7")
  eq(11, append(mgr, id, appended(1, 3)).turn_count, "turn_count after appending 1 more")
  eq(11, meta_of(mgr, id).turn_count, "resume().metadata.turn_count")
end)

check("append: total_tokens grows by tokens, by 0 when not given", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  eq(125, append(mgr, id, appended(1, 0), { tokens = 25 }).total_tokens, "after tokens = 25")
  eq(125, append(mgr, id, appended(1, 1)).total_tokens, "after an append without tokens")
  eq(125, append(mgr, id, appended(1, 2), {}).total_tokens, "after an append with {}")
  eq(130, append(mgr, id, {}, { tokens = 5 }).total_tokens, "after an empty append with tokens = 5")
  eq(130, meta_of(mgr, id).total_tokens, "resume().metadata.total_tokens")
end)

check("append: version grows by one with each append", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  save(mgr, s)
  eq(3, append(mgr, id, appended(1, 0)).version, "version after save, save, append")
  eq(4, append(mgr, id, appended(2, 1)).version, "version after another append")
  eq(4, meta_of(mgr, id).version, "resume().metadata.version")
  eq(4, list(mgr)[1].version, "list()[1].version")
end)

check("append: sets updated_at to now and keeps created_at", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  wait_past(meta_of(mgr, id).updated_at)
  local before = now()
  local meta = append(mgr, id, appended(1, 0))
  local after = now()
  between(meta.updated_at, before, after, "append().updated_at")
  between(meta_of(mgr, id).updated_at, before, after, "resume().metadata.updated_at")
  eq(1000, meta.created_at, "append().created_at")
end)

check("append: keeps state, name, tags, agent_name and parent_id", function(mgr)
  local s = append_source(mgr)
  local fork = mgr:fork(s.metadata.id, "child")
  local before = resume(mgr, fork.id)
  append(mgr, fork.id, appended(2, 0))
  local after = resume(mgr, fork.id)
  eq(before.state, after.state, "state")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "created_at", "parent_id" }) do
    eq(before.metadata[field], after.metadata[field], "metadata." .. field)
  end
  eq(concat(messages(3), appended(2, 0)), after.messages, "messages")
end)

check("append: an empty array is a write that adds nothing", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local other = save(mgr, make_session()).id
  local first = meta_of(mgr, id)
  wait_past(meta_of(mgr, other).updated_at)
  local meta = append(mgr, id, {})
  eq(2, meta.version, "append(id, {}).version")
  truthy(meta.updated_at > first.updated_at, "append(id, {}) left updated_at at %s", show(meta.updated_at))
  eq(7, meta.turn_count, "append(id, {}).turn_count")
  eq(messages(3), resume(mgr, id).messages, "messages")
  eq({ id, other }, list_ids(mgr), "list() ids after append(id, {})")
  eq(3, append(mgr, id, agentsession.array()).version, "version after append(id, array())")
end)

check("append: moves the session to the front of list, filtered or not", function(mgr)
  local a = append_source(mgr).metadata.id
  local b = save(mgr, make_session({ tags = { "a" } })).id
  eq({ b, a }, list_ids(mgr), "list() before the append")
  append(mgr, a, appended(1, 0))
  eq({ a, b }, list_ids(mgr), "list() after appending to a")
  eq({ a, b }, list_ids(mgr, { tag = "a" }), "list{ tag = 'a' } after appending to a")
  eq({ a }, list_ids(mgr, { tags = { "a", "b" }, agent_name = "code-agent" }), "list{ tags, agent_name }")
end)

check("append: values stay exact", function(mgr)
  local s = append_source(mgr)
  local values = { math.maxinteger, (1 << 53) + 1, -7, 1.0, 0.1, -2.5, null, true, false, "a\0b 😀",
    agentsession.array(), {}, { list = agentsession.array(), object = {}, n = 1 << 62, f = 2.0 } }
  append(mgr, s.metadata.id, values)
  local r = resume(mgr, s.metadata.id)
  eq_json(concat(messages(3), values), r.messages, "messages")
  truthy(math.type(r.messages[7]) == "float", "messages[7] (1.0) came back as %s", show(r.messages[7]))
end)

check("append: does not modify the caller's table, nor see later changes to it", function(mgr)
  local s = append_source(mgr)
  local msgs = { { role = "user", content = "x", list = { 1, 2 } }, agentsession.array() }
  local copy = deep_copy(msgs)
  append(mgr, s.metadata.id, msgs)
  eq_exact(copy, msgs, "the appended table after append")
  msgs[1].content = "changed"
  msgs[1].list[3] = 3
  msgs[3] = "added"
  eq_json(concat(messages(3), copy), resume(mgr, s.metadata.id).messages, "messages")
end)

check("append: resume{ last = n } gives the appended messages", function(mgr)
  local s = append_source(mgr)
  append(mgr, s.metadata.id, appended(2, 0))
  eq(appended(2, 0), resume(mgr, s.metadata.id, { last = 2 }).messages, "resume{ last = 2 }")
  eq({ messages(3)[3], appended(2, 0)[1], appended(2, 0)[2] }, resume(mgr, s.metadata.id, { last = 3 }).messages,
    "resume{ last = 3 }")
end)

check("append: after a rewind, goes after the kept messages", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  mgr:rewind(id, 1)
  local meta = append(mgr, id, appended(2, 0))
  eq(3, meta.turn_count, "turn_count")
  eq({ messages(3)[1], appended(2, 0)[1], appended(2, 0)[2] }, resume(mgr, id).messages, "messages")
end)

check("append: a fork and its source do not see each other's appends", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local fork = mgr:fork(id, "copy").id
  local early = mgr:fork(id, "early", { at = 1 }).id
  append(mgr, id, { "only in the source" })
  append(mgr, fork, { "only in the fork" })
  append(mgr, early, { "only in the early fork" })
  eq(concat(messages(3), { "only in the source" }), resume(mgr, id).messages, "source messages")
  eq(concat(messages(3), { "only in the fork" }), resume(mgr, fork).messages, "fork messages")
  eq({ messages(3)[1], "only in the early fork" }, resume(mgr, early).messages, "early fork messages")
end)

check("append: to a session saved without messages", function(mgr)
  local s = make_session()
  s.messages = nil
  save(mgr, s)
  append(mgr, s.metadata.id, { "first" })
  eq({ "first" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("append: state replaces the stored state in the same write", function(mgr)
  local s = make_session(nil, messages(2), { cwd = "/old", keep = false })
  save(mgr, s)
  local meta = mgr:append(s.metadata.id, { { content = "x" } }, { state = { cwd = "/new", list = { 1, 2 } } })
  local r = resume(mgr, s.metadata.id)
  eq({ cwd = "/new", list = { 1, 2 } }, r.state, "state")
  eq(3, #r.messages, "number of messages")
  eq(meta, r.metadata, "append()'s result")
  eq(2, meta.version, "version")
  mgr:append(s.metadata.id, { { content = "y" } })
  eq({ cwd = "/new", list = { 1, 2 } }, resume(mgr, s.metadata.id).state, "state after an append without state")
end)

check("append: state = null stores a JSON null, any JSON value is kept", function(mgr)
  local s = make_session(nil, messages(1))
  save(mgr, s)
  mgr:append(s.metadata.id, {}, { state = null })
  truthy(rawequal(resume(mgr, s.metadata.id).state, null), "state: expected null, got %s",
    show(resume(mgr, s.metadata.id).state))
  mgr:append(s.metadata.id, {}, { state = setmetatable({}, array_mt) })
  local ok, why = same(setmetatable({}, array_mt), resume(mgr, s.metadata.id).state, "state", "json")
  if not ok then fail("%s", why) end
end)

check("append: a state that cannot be encoded is invalid and changes nothing", function(mgr)
  local s = make_session(nil, messages(2))
  save(mgr, s)
  local before = snapshot(mgr)
  expect_error("invalid", function()
    return mgr:append(s.metadata.id, { { content = "x" } }, { state = { f = print } })
  end)
  unchanged(mgr, before, "an append with a bad state")
end)

check("append: a missing id is not_found and changes nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local err = expect_error_in("append to a missing id", "not_found", function()
    return mgr:append(MISSING, { "x" })
  end)
  eq(MISSING, err.id, "err.id")
  unchanged(mgr, before, "a failed append")
end)

check("append: messages that are not an array are refused and change nothing", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  expect_error_in("append(id, { role = 'user' })", "invalid", function()
    return mgr:append(id, { role = "user", content = "x" })
  end)
  expect_error_in("append(id, a sparse table)", "invalid", function()
    return mgr:append(id, { [1] = "a", [3] = "c" })
  end)
  expect_refused("append(id, 'x')", function() return mgr:append(id, "x") end)
  expect_refused("append(id, 5)", function() return mgr:append(id, 5) end)
  unchanged(mgr, before, "a refused append")
end)

check("append: a message that cannot be encoded is invalid and nothing is appended", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  local bad = {
    { "a function", { "fine", { content = print } }, "messages[2]" },
    { "NaN", { "fine", "fine", { score = 0 / 0 } }, "messages[3]" },
    { "invalid UTF-8", { "caf\xe9" }, "messages[1]" },
    { "a cycle", { "fine", cycle() }, "messages[2]" },
  }
  for _, row in ipairs(bad) do
    local err = expect_error_in("append of " .. row[1], "invalid", function() return mgr:append(id, row[2]) end)
    truthy(type(err.message) == "string" and err.message:find(row[3], 1, true),
      "append of %s: the message %s does not name %s", row[1], show(err.message), row[3])
  end
  unchanged(mgr, before, "an append of a message that cannot be encoded")
end)

check("append: negative or fractional tokens are refused and change nothing", function(mgr)
  local id = two_sessions(mgr).metadata.id
  local before = snapshot(mgr)
  expect_refused("append with tokens = -1", function() return mgr:append(id, { "x" }, { tokens = -1 }) end)
  expect_refused("append with tokens = 1.5", function() return mgr:append(id, { "x" }, { tokens = 1.5 }) end)
  unchanged(mgr, before, "an append with bad tokens")
end)

check("append: turn_count or total_tokens past their limits is invalid and changes nothing", function(mgr)
  local s = make_session({ turn_count = (1 << 32) - 2, total_tokens = math.maxinteger - 1 })
  save(mgr, s)
  local id = s.metadata.id
  local meta = append(mgr, id, { "x" }, { tokens = 1 })
  eq((1 << 32) - 1, meta.turn_count, "turn_count at its limit")
  eq(math.maxinteger, meta.total_tokens, "total_tokens at its limit")
  local before = snapshot(mgr)
  expect_error_in("append past turn_count 2^32-1", "invalid", function() return mgr:append(id, { "y" }) end)
  expect_error_in("append past total_tokens 2^63-1", "invalid", function()
    return mgr:append(id, {}, { tokens = 1 })
  end)
  unchanged(mgr, before, "an append past a limit")
end)

------------------------------------------------------------------ expect_version

check("expect_version: save with the stored version succeeds", function(mgr)
  local s = make_session()
  save(mgr, s)
  save(mgr, s)
  s.messages = { "new" }
  eq(3, mgr:save(s, { expect_version = 2 }).version, "save{ expect_version = 2 }.version")
  eq({ "new" }, resume(mgr, s.metadata.id).messages, "messages")
end)

check("expect_version: save with another version is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  save(mgr, known)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.messages = { "lost" }
  for _, v in ipairs({ 1, 3, 100 }) do
    local err = expect_error_in("save{ expect_version = " .. v .. " } of version 2", "conflict", function()
      return mgr:save(s, { expect_version = v })
    end)
    eq(known.metadata.id, err.id, "err.id")
  end
  unchanged(mgr, before, "a save that lost its version check")
end)

check("expect_version: save with 0 creates a session that does not exist", function(mgr)
  local s = make_session()
  local meta = mgr:save(s, { expect_version = 0 })
  eq(1, meta.version, "save{ expect_version = 0 }.version")
  eq(s.messages, resume(mgr, s.metadata.id).messages, "messages")
end)

check("expect_version: save with 0 of an existing id is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.state = { overwritten = true }
  expect_error_in("save{ expect_version = 0 } of an existing id", "conflict", function()
    return mgr:save(s, { expect_version = 0 })
  end)
  unchanged(mgr, before, "a save{ expect_version = 0 } of an existing id")
end)

check("expect_version: save with a version of a missing id is conflict and stores nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local s = make_session()
  expect_error_in("save{ expect_version = 1 } of a new id", "conflict", function()
    return mgr:save(s, { expect_version = 1 })
  end)
  unchanged(mgr, before, "a save{ expect_version = 1 } of a new id")
  expect_error_in("resume after it", "not_found", function() return mgr:resume(s.metadata.id) end)
end)

check("expect_version: append with the stored version succeeds", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local meta = mgr:append(id, { "x" }, { expect_version = 1, tokens = 3 })
  eq(2, meta.version, "append{ expect_version = 1 }.version")
  eq(103, meta.total_tokens, "append{ expect_version = 1, tokens = 3 }.total_tokens")
  eq(3, mgr:append(id, { "y" }, { expect_version = 2 }).version, "append{ expect_version = 2 }.version")
  eq(concat(messages(3), { "x", "y" }), resume(mgr, id).messages, "messages")
end)

check("expect_version: append with another version is conflict and changes nothing", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  local before = snapshot(mgr)
  for _, v in ipairs({ 1, 3 }) do
    local err = expect_error_in("append{ expect_version = " .. v .. " } of version 2", "conflict", function()
      return mgr:append(id, { "lost" }, { expect_version = v, tokens = 10 })
    end)
    eq(id, err.id, "err.id")
  end
  unchanged(mgr, before, "an append that lost its version check")
end)

check("expect_version: append with 0 is conflict and changes nothing", function(mgr)
  local s = append_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("append{ expect_version = 0 }", "conflict", function()
    return mgr:append(s.metadata.id, { "lost" }, { expect_version = 0 })
  end)
  unchanged(mgr, before, "an append{ expect_version = 0 }")
end)

check("expect_version: every write's version is the one to expect next", function(mgr)
  local s = make_session({ tags = { "a" } }, messages(3))
  local id = s.metadata.id
  eq(1, mgr:save(s, { expect_version = 0 }).version, "save{ expect_version = 0 }.version")
  eq(2, mgr:append(id, { "x" }, { expect_version = 1 }).version, "append{ expect_version = 1 }.version")
  mgr:tag(id, "b")
  eq(4, mgr:append(id, {}, { expect_version = 3 }).version, "append{ expect_version = 3 } after a tag")
  mgr:rename(id, "renamed")
  mgr:untag(id, "a")
  local r = mgr:rewind(id, 2)
  eq(7, r.metadata.version, "version after rename, untag, rewind")
  mgr:fork(id, "copy")
  r.messages[#r.messages + 1] = "last"
  eq(8, mgr:save(r, { expect_version = r.metadata.version }).version, "save{ expect_version = 7 }.version")
  expect_error_in("save with the version before the last write", "conflict", function()
    return mgr:save(r, { expect_version = 7 })
  end)
  eq({ messages(3)[1], messages(3)[2], "last" }, resume(mgr, id).messages, "messages")
end)

check("expect_version: of two copies resumed together, the second save conflicts", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local a, b = resume(mgr, id), resume(mgr, id)
  a.state = { winner = "a" }
  b.state = { winner = "b" }
  mgr:save(a, { expect_version = a.metadata.version })
  expect_error_in("the second save", "conflict", function()
    return mgr:save(b, { expect_version = b.metadata.version })
  end)
  expect_error_in("an append from the stale copy", "conflict", function()
    return mgr:append(id, { "late" }, { expect_version = b.metadata.version })
  end)
  local r = resume(mgr, id)
  eq({ winner = "a" }, r.state, "state")
  eq(2, r.metadata.version, "version")
end)

check("expect_version: without it, the last writer wins", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local a, b = resume(mgr, id), resume(mgr, id)
  a.state = { winner = "a" }
  b.state = { winner = "b" }
  save(mgr, a)
  save(mgr, b)
  append(mgr, id, { "late" })
  local r = resume(mgr, id)
  eq({ winner = "b" }, r.state, "state")
  eq(4, r.metadata.version, "version")
end)

------------------------------------------------------------------ export

local function export(mgr, id)
  local text = mgr:export(id)
  truthy(type(text) == "string", "export() returned %s, not a string", show(text))
  return text
end

local function decode(text, what)
  local ok, doc = pcall(json.decode, text)
  if not ok then fail("%s is not JSON: %s", what, safe_tostring(doc)) end
  is_table(doc, what)
  return doc
end

local SEED_FIELDS = { "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens" }

-- The seed's metadata of a metadata table: its eight fields, name null when unset.
local function seed_meta(m)
  local out = {}
  for _, f in ipairs(SEED_FIELDS) do out[f] = m[f] end
  if out.name == nil then out.name = null end
  out.tags = agentsession.array(deep_copy(out.tags))
  return out
end

-- The text export gives for a session: the seed's fields in their order, no
-- space; messages and state as json.encode writes them (so only for values
-- whose objects have at most one key, where the order is not a choice).
local function seed_text(meta, msgs, state)
  local fields = {}
  local m = seed_meta(meta)
  for i, f in ipairs(SEED_FIELDS) do fields[i] = json.encode(f) .. ":" .. json.encode(m[f]) end
  return '{"metadata":{' .. table.concat(fields, ",") .. '},"messages":' .. json.encode(agentsession.array(msgs))
    .. ',"state":' .. json.encode(state) .. "}"
end

-- The metadata of a session's export: its seed's metadata, and parent_id when it has one.
local function export_meta(m)
  local out = seed_meta(m)
  out.parent_id = m.parent_id
  return out
end

-- A decoded export: exactly metadata, messages and state, the metadata the
-- seed's eight fields and, only when it has one, parent_id.
local function exported(mgr, id)
  local doc = decode(export(mgr, id), "export()")
  for k in pairs(doc) do
    truthy(k == "metadata" or k == "messages" or k == "state", "the document has an unknown key %s", show(k))
  end
  is_table(doc.metadata, "the document's metadata")
  is_table(doc.messages, "the document's messages")
  local known = {}
  for _, f in ipairs(SEED_FIELDS) do
    known[f] = true
    truthy(doc.metadata[f] ~= nil, "the document's metadata has no %s", f)
  end
  known.parent_id = true
  for k in pairs(doc.metadata) do
    truthy(known[k], "the document's metadata has a field %s, not one of the seed's eight or parent_id", show(k))
  end
  return doc
end

check("export: writes the seed's serde form, its fields in order", function(mgr)
  local msgs = { { role = "user" }, { content = { 1, 2.5, "three", null, true } }, agentsession.array(), {}, 42,
    "text with \"quotes\" and é" }
  local s = make_session({ name = "naïve", tags = { "b", "a" }, turn_count = 6, total_tokens = 1234,
    created_at = 1000 }, msgs, { cwd = "/home/user" })
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(seed_text(r.metadata, msgs, { cwd = "/home/user" }), export(mgr, s.metadata.id), "export()")
end)

check("export: begins with {\"metadata\":{\"id\":", function(mgr)
  local s = two_sessions(mgr)
  local text = export(mgr, s.metadata.id)
  local head = '{"metadata":{"id":'
  truthy(text:sub(1, #head) == head, "export() begins with %s", show(text:sub(1, 40)))
end)

check("export: metadata has the seed's eight fields, equal to the stored ones", function(mgr)
  local s = two_sessions(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" }, { tokens = 5 })
  local doc = exported(mgr, id)
  eq(seed_meta(meta_of(mgr, id)), doc.metadata, "the document's metadata")
  for _, f in ipairs({ "created_at", "updated_at", "turn_count", "total_tokens" }) do
    truthy(math.type(doc.metadata[f]) == "integer", "metadata.%s is %s, not an integer", f, show(doc.metadata[f]))
  end
end)

check("export: a fork's document has its parent_id after the seed's eight fields, and no version", function(mgr)
  local s = two_sessions(mgr)
  local fork = mgr:fork(s.metadata.id, "child")
  mgr:tag(fork.id, "t")
  local meta = meta_of(mgr, fork.id)
  local doc = exported(mgr, fork.id)
  eq(export_meta(meta), doc.metadata, "the fork's document's metadata")
  local tail = '"total_tokens":' .. meta.total_tokens .. ',"parent_id":' .. json.encode(s.metadata.id) .. '},'
  local text = export(mgr, fork.id)
  truthy(text:find(tail, 1, true), "export() of a fork has no %s: %s", show(tail), show(text))
  eq(nil, exported(mgr, s.metadata.id).metadata.parent_id, "parent_id in the source's document")
end)

check("export: an unset name is null", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  local text = export(mgr, s.metadata.id)
  truthy(text:find('"name":null,', 1, true), "export() has no \"name\":null: %s", show(text))
  truthy(rawequal(decode(text, "export()").metadata.name, null), "name is not null")
end)

check("export: messages and state are exact (integers, floats, null, [] and {})", function(mgr)
  local msgs = { math.maxinteger, math.mininteger, (1 << 53) + 1, 1.0, 0.1, 1e300, null, agentsession.array(), {},
    { list = agentsession.array(), object = {}, n = 3, f = 3.0 }, "a\0b" }
  local state = { list = agentsession.array(), object = {}, big = (1 << 62) + 1, half = 0.5 }
  local s = make_session(nil, msgs, state)
  save(mgr, s)
  local doc = exported(mgr, s.metadata.id)
  eq_json(msgs, doc.messages, "the document's messages")
  eq_json(state, doc.state, "the document's state")
  truthy(math.type(doc.messages[4]) == "float", "messages[4] (1.0) is %s", show(doc.messages[4]))
  truthy(math.type(doc.messages[10].f) == "float", "messages[10].f (3.0) is %s", show(doc.messages[10].f))
end)

check("export: empty tags and messages are [], an empty state {}", function(mgr)
  local s = make_session({ tags = {} })
  s.messages, s.state = nil, nil
  save(mgr, s)
  local text = export(mgr, s.metadata.id)
  truthy(text:find('"tags":[]', 1, true), "export() has no \"tags\":[]: %s", show(text))
  truthy(text:find('"messages":[]', 1, true), "export() has no \"messages\":[]: %s", show(text))
  truthy(text:sub(-12) == ',"state":{}}', "export() does not end with ,\"state\":{}}: %s", show(text:sub(-40)))
  local t = make_session(nil, {}, agentsession.array())
  save(mgr, t)
  local other = export(mgr, t.metadata.id)
  truthy(other:sub(-12) == ',"state":[]}', "export() of state [] does not end with ,\"state\":[]}: %s",
    show(other:sub(-40)))
end)

check("export: follows the session's writes", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  mgr:tag(id, "c")
  mgr:rename(id, "renamed")
  mgr:rewind(id, 2)
  append(mgr, id, { "y" }, { tokens = 1 })
  local r = resume(mgr, id)
  local doc = exported(mgr, id)
  eq(seed_meta(r.metadata), doc.metadata, "the document's metadata")
  eq({ messages(3)[1], messages(3)[2], "y" }, doc.messages, "the document's messages")
  eq(r.state, doc.state, "the document's state")
end)

check("export: changes nothing", function(mgr)
  local s = two_sessions(mgr)
  local before = snapshot(mgr)
  export(mgr, s.metadata.id)
  export(mgr, list(mgr)[2].id)
  unchanged(mgr, before, "export")
end)

check("export: a missing id is not_found", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local err = expect_error_in("export of a missing id", "not_found", function() return mgr:export(MISSING) end)
  eq(MISSING, err.id, "err.id")
  unchanged(mgr, before, "a failed export")
end)

------------------------------------------------------------------ import

local function import(mgr, text, opts)
  local meta
  if opts == nil then meta = mgr:import(text) else meta = mgr:import(text, opts) end
  is_table(meta, "import()'s result")
  return meta
end

-- A document in the seed's serde form, written by hand: what serde_json
-- writes for the Rust types (no name, so "name":null).
local function serde_document(id)
  return '{"metadata":{"id":"' .. id .. '","name":null,"tags":["imported","rust"],"agent_name":"code-agent",'
    .. '"created_at":1700000000000,"updated_at":1700000005000,"turn_count":2,"total_tokens":345},'
    .. '"messages":[{"role":"user","content":"List the files."},{"role":"assistant","content":null,'
    .. '"tool_calls":[{"id":"call_1","args":{"path":".","depth":1,"ratio":0.5}}]}],'
    .. '"state":{"cwd":"/home/user","history":[],"options":{}}}'
end

local SERDE_MESSAGES = {
  { role = "user", content = "List the files." },
  { role = "assistant", content = null,
    tool_calls = { { id = "call_1", args = { path = ".", depth = 1, ratio = 0.5 } } } },
}

-- A document from seed fields, messages and state (tables); json.encode
-- writes it.
local function document(meta, msgs, state)
  local m = {}
  for k, v in pairs(meta) do m[k] = v end
  return json.encode({ metadata = m, messages = agentsession.array(msgs or {}), state = state or {} })
end

local function doc_meta(id, extra)
  local m = { id = id, name = "doc", tags = agentsession.array({ "x" }), agent_name = "importer",
    created_at = 1000, updated_at = 2000, turn_count = 1, total_tokens = 10 }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- Checks that session `id` of `mgr` is `src` (a session table) in everything
-- an export carries (parent_id too), and is at `version`.
local function same_as(mgr, id, src, version, what)
  local r = resume(mgr, id)
  eq(seed_meta(src.metadata), seed_meta(r.metadata), what .. " metadata")
  eq(version, r.metadata.version, what .. " version")
  eq(src.metadata.parent_id, r.metadata.parent_id, what .. " parent_id")
  eq_json(src.messages, r.messages, what .. " messages")
  eq_json(src.state, r.state, what .. " state")
end

check("import: an exported session comes back equal in another store", function(mgr, ctx)
  local named = make_session({ tags = { "b", "a" }, turn_count = 9, total_tokens = math.maxinteger, created_at = 1000 },
    { { role = "user", n = (1 << 53) + 1, f = 1.0 }, agentsession.array(), {}, null, "é\0" },
    { list = agentsession.array(), object = {}, nested = { 0.1, { true } } })
  save(mgr, named)
  append(mgr, named.metadata.id, { "appended" }, { tokens = 0 })
  local fork = mgr:fork(named.metadata.id, "fork", { at = 2 })
  local plain = unnamed(make_session({ tags = {} }, {}))
  save(mgr, plain)
  local other = ctx.open()
  for _, id in ipairs({ named.metadata.id, fork.id, plain.metadata.id }) do
    local src = resume(mgr, id)
    local meta = import(other, export(mgr, id))
    eq(id, meta.id, "import().id")
    same_as(other, id, src, 1, "the imported session's")
  end
  eq(3, #list(other), "#list() of the other store")
end)

check("import: keeps timestamps, counts, tags and name as given", function(mgr)
  local meta = import(mgr, document(doc_meta("given", { tags = agentsession.array({ "z", "a" }),
    created_at = 1000, updated_at = 2000, turn_count = 7, total_tokens = 99 }), { "one" }, { k = 1 }))
  local r = resume(mgr, "given")
  eq(meta, r.metadata, "import() vs resume().metadata")
  for field, v in pairs({ id = "given", name = "doc", agent_name = "importer", created_at = 1000, updated_at = 2000,
    turn_count = 7, total_tokens = 99, version = 1 }) do
    eq(v, r.metadata[field], "metadata." .. field)
  end
  eq({ "z", "a" }, r.metadata.tags, "metadata.tags")
  eq({ "one" }, r.messages, "messages")
  eq({ k = 1 }, r.state, "state")
end)

check("import: reads a document in the seed's serde form, name null", function(mgr)
  local meta = import(mgr, serde_document("serde-1"))
  eq(nil, meta.name, "import().name")
  local r = resume(mgr, "serde-1")
  eq(meta, r.metadata, "import() vs resume().metadata")
  eq(nil, r.metadata.name, "metadata.name")
  eq({ "imported", "rust" }, r.metadata.tags, "metadata.tags")
  eq(1700000000000, r.metadata.created_at, "metadata.created_at")
  eq(1700000005000, r.metadata.updated_at, "metadata.updated_at")
  eq(2, r.metadata.turn_count, "metadata.turn_count")
  eq(345, r.metadata.total_tokens, "metadata.total_tokens")
  eq(SERDE_MESSAGES, r.messages, "messages")
  eq_json({ cwd = "/home/user", history = agentsession.array(), options = {} }, r.state, "state")
end)

check("import: returns the stored metadata, equal to resume(id).metadata and list's", function(mgr)
  local meta = import(mgr, document(doc_meta("ret", { updated_at = now() + 60000 })))
  eq(meta_of(mgr, "ret"), meta, "import() vs resume().metadata")
  eq(meta, list(mgr)[1], "import() vs list()[1]")
  eq(1, meta.version, "import().version")
end)

check("import: an existing id is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local id = known.metadata.id
  local text = export(mgr, id)
  local before = snapshot(mgr)
  local err = expect_error_in("import of an existing id", "conflict", function() return mgr:import(text) end)
  eq(id, err.id, "err.id")
  expect_error_in("import of an existing id with replace = false", "conflict", function()
    return mgr:import(document(doc_meta(id)), { replace = false })
  end)
  unchanged(mgr, before, "a failed import")
end)

check("import: replace = true overwrites the session and bumps its version", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  local meta = import(mgr, document(doc_meta(id, { name = "replaced", turn_count = 1 }), { "only" }, { new = true }),
    { replace = true })
  eq(3, meta.version, "import{ replace = true }.version")
  local r = resume(mgr, id)
  eq(meta, r.metadata, "import() vs resume().metadata")
  eq("replaced", r.metadata.name, "name")
  eq({ "x" }, r.metadata.tags, "tags")
  eq(1000, r.metadata.created_at, "created_at")
  eq(2000, r.metadata.updated_at, "updated_at")
  eq({ "only" }, r.messages, "messages")
  eq({ new = true }, r.state, "state")
  eq({ id }, list_ids(mgr), "list() ids")
  eq(1, import(mgr, document(doc_meta("fresh")), { replace = true }).version, "replace of a missing id: version")
end)

check("import: malformed JSON is invalid and stores nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local good = document(doc_meta("bad-json"))
  for _, text in ipairs({ "", "{", good:sub(1, -2), good .. " x", good:gsub('"id"', "id", 1),
    (good:gsub("}$", ",}")), "\xff" }) do
    expect_error_in("import of " .. show(text), "invalid", function() return mgr:import(text) end)
  end
  unchanged(mgr, before, "a failed import")
  expect_error_in("resume of the id", "not_found", function() return mgr:resume("bad-json") end)
end)

check("import: a document that is not an object of metadata, messages and state is invalid", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  for _, text in ipairs({ "[]", "5", '"x"', "null", "{}", '{"metadata":[]}', '{"metadata":"x"}',
    (document(doc_meta("doc-msgs")):gsub('"messages":%[%]', '"messages":{"a":1}')) }) do
    expect_error_in("import of " .. show(text), "invalid", function() return mgr:import(text) end)
  end
  unchanged(mgr, before, "a failed import")
end)

check("import: unknown fields are invalid and store nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local cases = {
    { "version in metadata", document(doc_meta("u1", { version = 3 })) },
    { "an unknown metadata field", document(doc_meta("u3", { bogus = 1 })) },
    { "an unknown top-level field", json.encode({ metadata = doc_meta("u4"), messages = agentsession.array(),
      state = {}, extra = true }) },
  }
  for _, row in ipairs(cases) do
    expect_error_in("import with " .. row[1], "invalid", function() return mgr:import(row[2]) end)
  end
  unchanged(mgr, before, "an import with an unknown field")
end)

check("import: bad field values are invalid and store nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local cases = {
    { "an empty id", doc_meta("") },
    { "a numeric id", doc_meta(5) },
    { "a negative turn_count", doc_meta("b1", { turn_count = -1 }) },
    { "turn_count 2^32", doc_meta("b2", { turn_count = 1 << 32 }) },
    { "a fractional created_at", doc_meta("b3", { created_at = 1.5 }) },
    { "tags as a string", doc_meta("b4", { tags = "x" }) },
    { "an empty tag", doc_meta("b5", { tags = agentsession.array({ "" }) }) },
    { "a numeric name", doc_meta("b6", { name = 5 }) },
    { "a control character in agent_name", doc_meta("b7", { agent_name = "a\nb" }) },
    { "an empty parent_id", doc_meta("b8", { parent_id = "" }) },
    { "a numeric parent_id", doc_meta("b9", { parent_id = 5 }) },
    { "a 256-byte parent_id", doc_meta("b10", { parent_id = string.rep("p", 256) }) },
    { "a control character in parent_id", doc_meta("b11", { parent_id = "a\nb" }) },
  }
  for _, row in ipairs(cases) do
    expect_error_in("import with " .. row[1], "invalid", function() return mgr:import(document(row[2])) end)
  end
  unchanged(mgr, before, "an import with a bad value")
end)

check("import: a fork keeps its parent_id through export and import", function(mgr, ctx)
  local s = append_source(mgr)
  local id = s.metadata.id
  local fork = mgr:fork(id, "child")
  local grandchild = mgr:fork(fork.id, nil, { at = 1 })
  local other = ctx.open()
  eq(nil, import(other, export(mgr, id)).parent_id, "import() of the source: parent_id")
  eq(id, import(other, export(mgr, fork.id)).parent_id, "import() of the fork: parent_id")
  eq(fork.id, import(other, export(mgr, grandchild.id)).parent_id, "import() of the fork's fork: parent_id")
  eq(id, meta_of(other, fork.id).parent_id, "resume() of the imported fork: parent_id")
  eq({ fork.id }, list_ids(other, { parent_id = id }), "list{ parent_id = source } in the other store")
  eq({ grandchild.id }, list_ids(other, { parent_id = fork.id }), "list{ parent_id = fork } in the other store")
  eq(id, import(mgr, document(doc_meta("p-given", { parent_id = id }))).parent_id, "import() with parent_id")
  eq(nil, import(mgr, document(doc_meta("p-none"))).parent_id, "import() without parent_id")
  eq(nil, import(mgr, document(doc_meta("p-null", { parent_id = null }))).parent_id, "import() of parent_id null")
  eq(nil, meta_of(mgr, "p-null").parent_id, "resume() after an import of parent_id null")
end)

check("import: the session takes its place in list by its updated_at", function(mgr)
  local a = save(mgr, make_session({ tags = { "t" } })).id
  local b = save(mgr, make_session({ tags = { "t" } })).id
  import(mgr, document(doc_meta("old", { updated_at = 2000, tags = agentsession.array({ "t" }) })))
  eq({ b, a, "old" }, list_ids(mgr), "list() ids")
  eq({ b, a, "old" }, list_ids(mgr, { tag = "t" }), "list{ tag = 't' } ids")
  append(mgr, "old", { "now" })
  eq({ "old", b, a }, list_ids(mgr), "list() ids after an append to the imported session")
end)

check("import: values stay exact", function(mgr)
  local text = '{"metadata":{"id":"exact","name":"n","tags":[],"agent_name":"","created_at":1,"updated_at":2,'
    .. '"turn_count":0,"total_tokens":9223372036854775807},"messages":[9007199254740993,1.0,0.1,[],{},null,'
    .. '"é😀",-9223372036854775808],"state":[]}'
  import(mgr, text)
  local r = resume(mgr, "exact")
  eq(math.maxinteger, r.metadata.total_tokens, "total_tokens")
  eq_json({ (1 << 53) + 1, 1.0, 0.1, agentsession.array(), {}, null, "é😀", math.mininteger }, r.messages,
    "messages")
  eq_json(agentsession.array(), r.state, "state")
  eq(text, export(mgr, "exact"), "export() of the imported document")
end)

check("import: the session can be written like any other", function(mgr)
  import(mgr, serde_document("serde-w"))
  eq(2, append(mgr, "serde-w", { "more" }, { tokens = 5 }).version, "append().version")
  local fork = mgr:fork("serde-w", nil, { at = 1 })
  eq(nil, fork.name, "fork().name")
  eq("serde-w", fork.parent_id, "fork().parent_id")
  eq({ SERDE_MESSAGES[1] }, resume(mgr, fork.id).messages, "the fork's messages")
  local r = resume(mgr, "serde-w")
  eq(concat(SERDE_MESSAGES, { "more" }), r.messages, "messages")
  eq(3, r.metadata.turn_count, "turn_count")
  eq(350, r.metadata.total_tokens, "total_tokens")
end)

------------------------------------------------------------------ lineage

check("lineage: a fork keeps its parent_id through every write", function(mgr)
  local s = append_source(mgr)
  local id = mgr:fork(s.metadata.id, "child").id
  append(mgr, id, { "x" })
  mgr:tag(id, "t")
  mgr:rename(id, "renamed")
  mgr:rewind(id, 2)
  save(mgr, resume(mgr, id))
  mgr:save(resume(mgr, id), { expect_version = 6 })
  eq(s.metadata.id, meta_of(mgr, id).parent_id, "parent_id after append, tag, rename, rewind, save")
  eq({ id }, list_ids(mgr, { parent_id = s.metadata.id }), "list{ parent_id = source }")
end)

check("lineage: list{ parent_id } orders the forks by their latest write", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  local f1 = mgr:fork(id, "one").id
  local f2 = mgr:fork(id, "two").id
  eq({ f2, f1 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after two forks")
  append(mgr, f1, { "x" })
  eq({ f1, f2 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after an append to the first")
  eq({ f1 }, list_ids(mgr, { parent_id = id, limit = 1 }), "list{ parent_id, limit = 1 }")
  append(mgr, id, { "y" })
  eq({ f1, f2 }, list_ids(mgr, { parent_id = id }), "list{ parent_id } after an append to the source")
end)

check("lineage: a fork at k of an appended session has its first k messages", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, appended(3, 0))
  local meta = mgr:fork(id, "mid", { at = 5 })
  eq(5, meta.turn_count, "fork().turn_count")
  eq(id, meta.parent_id, "fork().parent_id")
  eq(concat(messages(3), appended(2, 0)), resume(mgr, meta.id).messages, "the fork's messages")
  eq(concat(messages(3), appended(3, 0)), resume(mgr, id).messages, "the source's messages")
end)

------------------------------------------------------------------ too_large

local SEVENTEEN_MIB = 17 * 1024 * 1024

check("too_large: a session over 16 MiB is refused and nothing is stored", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local s = make_session(nil, { string.rep("x", SEVENTEEN_MIB) })
  local id = s.metadata.id
  expect_error_in("save of a 17 MiB session", "too_large", function() return mgr:save(s) end)
  s = nil -- luacheck: ignore 311
  collectgarbage()
  expect_error_in("resume after the failed save", "not_found", function() return mgr:resume(id) end)
  unchanged(mgr, before, "a too_large save")
end, { slow = true })

check("too_large: replacing a session with one over 16 MiB keeps the stored one", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local s = deep_copy(known)
  s.state = { blob = string.rep("y", SEVENTEEN_MIB) }
  expect_error_in("save of a 17 MiB state", "too_large", function() return mgr:save(s) end)
  s = nil -- luacheck: ignore 311
  collectgarbage()
  unchanged(mgr, before, "a too_large save")
end, { slow = true })

check("too_large: an append that takes a session past 16 MiB is refused and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local before = snapshot(mgr)
  local big = { "small", string.rep("z", SEVENTEEN_MIB) }
  expect_error_in("append of 17 MiB", "too_large", function()
    return mgr:append(known.metadata.id, big, { tokens = 5 })
  end)
  big = nil -- luacheck: ignore 311
  collectgarbage()
  unchanged(mgr, before, "a too_large append")
end, { slow = true })

------------------------------------------------------------------ close

check("close: returns nothing and can be called again", function(mgr)
  save(mgr, make_session())
  no_values("close()", mgr:close())
  no_values("a second close()", mgr:close())
  no_values("a third close()", mgr:close())
end)

check("close: every method raises closed after close", function(mgr)
  local id = two_sessions(mgr).metadata.id
  mgr:close()
  local calls = {
    { "save", function() return mgr:save(make_session()) end },
    { "resume", function() return mgr:resume(id) end },
    { "list", function() return mgr:list() end },
    { "fork", function() return mgr:fork(id) end },
    { "rewind", function() return mgr:rewind(id, 1) end },
    { "tag", function() return mgr:tag(id, "x") end },
    { "untag", function() return mgr:untag(id, "a") end },
    { "rename", function() return mgr:rename(id, "n") end },
    { "delete", function() return mgr:delete(id) end },
    { "append", function() return mgr:append(id, { "x" }) end },
    { "export", function() return mgr:export(id) end },
    { "import", function() return mgr:import('{"metadata":{"id":"x","agent_name":""},"messages":[],"state":{}}') end },
    { "list again", function() return mgr:list() end },
  }
  for _, row in ipairs(calls) do
    local err = expect_error_in(row[1] .. " after close", "closed", row[2])
    eq(error_text("closed", err), tostring(err), "tostring of the closed error")
  end
  no_values("close() after the calls", mgr:close())
end)

check("close: closing one manager leaves another working", function(mgr, ctx)
  save(mgr, make_session())
  local other = ctx.open()
  local s = make_session()
  save(other, s)
  mgr:close()
  eq(s.metadata.id, meta_of(other, s.metadata.id).id, "resume on another manager after close")
end)

check("close: <close> closes the manager at the end of its scope", function(_, ctx)
  local probe = ctx.open()
  local mt
  if debug and debug.getmetatable then mt = debug.getmetatable(probe) else mt = getmetatable(probe) end
  if type(mt) ~= "table" or mt.__close == nil then
    -- No __close: what can be checked is close() itself.
    probe:close()
    expect_error_in("list after close", "closed", function() return probe:list() end)
    return
  end
  local escaped
  do
    local scoped <close> = ctx.open()
    escaped = scoped
    save(scoped, make_session())
  end
  expect_error_in("list after the scope ended", "closed", function() return escaped:list() end)
  no_values("close() after <close>", escaped:close())
end)

---------------------------------------------------------------------------
-- Running
---------------------------------------------------------------------------

local MAX_LINE = 300

local function one_line(s)
  s = s:gsub("[\r\n\t]+", " ")
  if #s > MAX_LINE then s = s:sub(1, MAX_LINE - 3) .. "..." end
  return s
end

local function reason_of(err)
  if getmetatable(err) == Failure then return err.message end
  return "raised " .. (is_error(err) and describe_error(err) or safe_tostring(err))
end

local function close_quietly(m)
  if m ~= nil then pcall(function() return m:close() end) end
end

local function run_one(c, new_manager)
  local ok, mgr = pcall(new_manager)
  if not ok then return false, "new_manager() raised " .. safe_tostring(mgr) end
  if mgr == nil then return false, "new_manager() returned nil" end
  local extra = {}
  local ctx = {
    new_manager = new_manager,
    open = function()
      local m = new_manager()
      if m == nil then fail("new_manager() returned nil") end
      extra[#extra + 1] = m
      return m
    end,
  }
  local passed, err = xpcall(c.fn, function(e) return e end, mgr, ctx)
  close_quietly(mgr)
  for _, m in ipairs(extra) do close_quietly(m) end
  if passed then return true end
  return false, reason_of(err)
end

local function matches(name, pattern)
  if type(pattern) ~= "string" then return nil end
  local ok, found = pcall(string.find, name, pattern)
  if not ok then return nil, found end
  return found ~= nil
end

--- Runs the checks against managers made by `new_manager()`; returns
--- passed, failed, failures.
function M.run(new_manager, opts)
  if type(new_manager) ~= "function" then
    error("bad argument #1 to 'run' (function expected, got " .. type(new_manager) .. ")", 2)
  end
  if type(opts) ~= "table" then opts = {} end
  local verbose = opts.verbose and true or false
  local out = verbose and print or function() end
  local passed, failed, failures = 0, 0, {}
  local function record_failure(line)
    failed = failed + 1
    failures[#failures + 1] = line
    out("FAIL " .. line)
  end
  for _, c in ipairs(checks) do
    local selected = true
    if opts.only ~= nil then
      local m, bad = matches(c.name, opts.only)
      if bad then record_failure(one_line("opts.only: " .. safe_tostring(bad))) return passed, failed, failures end
      selected = m == true
    end
    if selected and opts.skip ~= nil then
      local m, bad = matches(c.name, opts.skip)
      if bad then record_failure(one_line("opts.skip: " .. safe_tostring(bad))) return passed, failed, failures end
      selected = m ~= true
    end
    if selected then
      local ok, why = run_one(c, new_manager)
      if ok then
        passed = passed + 1
        out("ok  " .. c.name)
      else
        record_failure(one_line(c.name .. ": " .. tostring(why)))
      end
    end
  end
  out(string.format("agentsession.conformance: %d passed, %d failed", passed, failed))
  return passed, failed, failures
end

return M
