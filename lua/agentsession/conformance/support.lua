-- agentsession.conformance.support: what the checks of the conformance suite
-- share: failing with a message, describing and comparing values, making
-- sessions, reading a store back through list() and resume(), and the
-- fixtures more than one family of checks starts from.
--
-- Each family file makes its list with `family()` and fails a check by
-- raising through `fail` (or a helper that calls it); run() tells those
-- failures from errors a store raised with `is_failure`.

local agentsession = require("agentsession")

local null = agentsession.null
local array_mt = agentsession.array_mt
local is_error = agentsession.is_error
local now = agentsession.now

local M = {}

---------------------------------------------------------------------------
-- Numbers on every Lua
---------------------------------------------------------------------------

-- Lua 5.3 and 5.4 have an integer subtype. On 5.1, 5.2 and LuaJIT every
-- number is a double: the codec writes an integral one of magnitude at most
-- 2^53 as an integer literal, and reads such a literal back as that number;
-- larger integer literals are refused unless a manager's big_integers option
-- says otherwise.
local HAS_INTEGERS = math.type ~= nil
local SAFE_INTEGER = 2 ^ 53

-- The length of a table without its __len (which 5.1 and LuaJIT never call on tables).
local rawlen = rawget(_G, "rawlen") or function(t) return #t end

--- "integer", "float" or nil (not a number): math.type where Lua has it;
--- elsewhere "integer" for what the codec writes as an integer literal (an
--- integral number of magnitude at most 2^53, -0 excepted).
local function number_type(v)
  if HAS_INTEGERS then return math.type(v) end
  if type(v) ~= "number" then return nil end
  if v == math.floor(v) and v >= -SAFE_INTEGER and v <= SAFE_INTEGER and (v ~= 0 or 1 / v > 0) then
    return "integer"
  end
  return "float"
end

--- The decimal text of an integer: tostring where Lua has integers (5.1
--- would write 2^53 as 9.007199254741e+15).
local function integer_text(v)
  if HAS_INTEGERS then return tostring(v) end
  return string.format("%.0f", v)
end

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
    if number_type(v) == "integer" then return integer_text(v) end
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
  if number_type(k) == "integer" then return path .. "[" .. integer_text(k) .. "]" end
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
  return path .. "[" .. show(k) .. "]"
end

---------------------------------------------------------------------------
-- Comparing values
---------------------------------------------------------------------------

local function expected_got(exp, act)
  local why = string.format("expected %s, got %s", show(exp), show(act))
  if type(exp) == "string" and type(act) == "string" then
    local i = 1
    while exp:byte(i) == act:byte(i) do i = i + 1 end
    why = why .. " (they differ from byte " .. i .. ")"
  end
  return why
end

-- The numbers of every mode: the same value and, where Lua has integers, the
-- same math.type (1 ~= 1.0; -0.0 == 0.0).
local function numbers_alike(exp, act)
  if exp ~= act or (HAS_INTEGERS and math.type(exp) ~= math.type(act)) then
    return expected_got(exp, act)
  end
  return nil
end

-- The table rules of the modes: nil when the two tables may be equal, else why not.
local TABLE_RULES = {
  json = function(exp, act)
    if next(exp) == nil and next(act) == nil
      and (getmetatable(exp) == array_mt) ~= (getmetatable(act) == array_mt) then
      return expected_got(exp, act)
    end
    return nil
  end,
  meta = function(exp, act)
    if getmetatable(exp) ~= getmetatable(act) then
      return string.format("expected metatable %s, got %s", safe_tostring(getmetatable(exp)),
        safe_tostring(getmetatable(act)))
    end
    return nil
  end,
}

local function bad_mode(mode)
  error("bad argument #3 to 'same' (nil, \"json\", \"meta\" or a table of rules expected, got "
    .. show(mode) .. ")", 4)
end

-- The rules of a mode: { tables = function or nil, numbers = function }.
local function rules_of(mode)
  if mode == nil then return { numbers = numbers_alike } end
  if type(mode) == "string" then
    local tables = TABLE_RULES[mode]
    if tables == nil then bad_mode(mode) end
    return { tables = tables, numbers = numbers_alike }
  end
  if type(mode) ~= "table" then bad_mode(mode) end
  local tables = mode.tables
  if type(tables) == "string" then tables = TABLE_RULES[tables] or bad_mode(mode.tables) end
  if tables ~= nil and type(tables) ~= "function" then bad_mode(tables) end
  local numbers = mode.numbers or numbers_alike
  if type(numbers) ~= "function" then bad_mode(numbers) end
  return { tables = tables, numbers = numbers }
end

local function compare(exp, act, path, rules, depth)
  local te, ta = type(exp), type(act)
  local why
  if te ~= ta then
    why = expected_got(exp, act)
  elseif te == "number" then
    why = rules.numbers(exp, act)
  elseif te ~= "table" then
    if not rawequal(exp, act) then why = expected_got(exp, act) end
  elseif not rawequal(exp, act) then
    if depth > 300 then return false, path .. ": nested too deeply to compare" end
    why = rules.tables and rules.tables(exp, act)
    if not why then
      for k, v in next, exp do
        local ok, deeper = compare(v, rawget(act, k), key_path(path, k), rules, depth + 1)
        if not ok then return false, deeper end
      end
      for k, v in next, act do
        if rawget(exp, k) == nil then
          return false, string.format("%s: unexpected %s", key_path(path, k), show(v))
        end
      end
    end
  end
  if why then return false, path .. ": " .. why end
  return true
end

--- The deep comparison the package exports as conformance.same (its modes
--- are described at the top of init.lua).
function M.same(expected, actual, mode, root)
  return compare(expected, actual, root or "value", rules_of(mode), 0)
end
local same = M.same

local function eq(exp, act, what)
  local ok, why = same(exp, act, nil, what)
  if not ok then fail(why) end
end

local function eq_json(exp, act, what)
  local ok, why = same(exp, act, "json", what)
  if not ok then fail(why) end
end

local function eq_exact(exp, act, what)
  local ok, why = same(exp, act, "meta", what)
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
  if number_type(v) ~= "integer" then fail("%s is %s, not an integer", what, show(v)) end
  if v < low or v > high then
    fail("%s = %s, expected now (between %s and %s)", what, integer_text(v), integer_text(low), integer_text(high))
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
  local ok, why = same(before.list, after.list, nil, "list()")
  if ok then ok, why = same(before.sessions, after.sessions, nil, "sessions") end
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
-- Fixtures of more than one family
---------------------------------------------------------------------------

-- A stored session of 5 messages, turn_count 7 and total_tokens 70; returns its id.
local function rewind_source(mgr)
  local s = make_session({ turn_count = 7, total_tokens = 70, tags = { "a", "b" }, created_at = 1000 },
    messages(5), { cwd = "/r", list = { 1 } })
  save(mgr, s)
  return s.metadata.id
end

-- A message that refers to itself, which no store can encode.
local function cycle()
  local t = { role = "user" }
  t.self = t
  return t
end

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

---------------------------------------------------------------------------
-- Families
---------------------------------------------------------------------------

--- A family's list of checks, and the function that adds one:
--- check(name, fn [, extra]) appends { name = name, fn = fn } with the
--- fields of `extra` (as { slow = true }). fn(mgr, ctx) fails by raising.
function M.family()
  local family = {}
  local function check(name, fn, extra)
    local c = { name = name, fn = fn }
    for k, v in pairs(extra or {}) do c[k] = v end
    family[#family + 1] = c
  end
  return family, check
end

--- True for what fail() raises, false for an error a store raised.
function M.is_failure(err)
  return getmetatable(err) == Failure
end

--- Whether numbers have an integer subtype (Lua 5.3 and later).
M.HAS_INTEGERS = HAS_INTEGERS
--- The largest and smallest integers a session keeps exactly by default:
--- math.maxinteger and math.mininteger, or 2^53 and -2^53 where Lua has no integers.
M.MAX_INTEGER = math.maxinteger or SAFE_INTEGER
M.MIN_INTEGER = math.mininteger or -SAFE_INTEGER
M.number_type = number_type
M.integer_text = integer_text
M.fail = fail
M.safe_tostring = safe_tostring
M.show = show
M.eq = eq
M.eq_json = eq_json
M.eq_exact = eq_exact
M.truthy = truthy
M.describe_error = describe_error
M.expect_error = expect_error
M.error_text = error_text
M.expect_error_in = expect_error_in
M.expect_refused = expect_refused
M.no_values = no_values
M.new_id = new_id
M.MISSING = MISSING
M.make_session = make_session
M.unnamed = unnamed
M.messages = messages
M.deep_copy = deep_copy
M.nested = nested
M.wait_past = wait_past
M.between = between
M.is_table = is_table
M.resume = resume
M.meta_of = meta_of
M.list = list
M.ids = ids
M.list_ids = list_ids
M.save = save
M.snapshot = snapshot
M.unchanged = unchanged
M.two_sessions = two_sessions
M.rewind_source = rewind_source
M.cycle = cycle
M.append = append
M.concat = concat
M.appended = appended
M.append_source = append_source

return M
