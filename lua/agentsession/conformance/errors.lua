-- agentsession.conformance.errors: the checks of errors: the error objects, not_found for
-- every call on a missing id, and every save refused as invalid (on a stored id and on a new
-- one).
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local is_error = agentsession.is_error
local safe_tostring, show, eq, truthy = support.safe_tostring, support.show, support.eq, support.truthy
local expect_error, error_text = support.expect_error, support.error_text
local expect_error_in, MISSING, make_session = support.expect_error_in, support.MISSING, support.make_session
local messages, deep_copy, snapshot = support.messages, support.deep_copy, support.snapshot
local unchanged, two_sessions, cycle = support.unchanged, support.two_sessions, support.cycle

local checks, check = support.family()

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
refused_save("invalid UTF-8 in a message", function(s) s.messages[3].content = "caf\233" end,
  { path = "messages[3].content" })
refused_save("invalid UTF-8 in the state", function(s) s.state.cwd = "\128" end, { path = "state.cwd" })
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

return checks
