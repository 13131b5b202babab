-- Loading the module and its small top-level helpers.
local agentsession = require("agentsession")
local cjson = require("cjson")
local deep = require("helpers.deep")

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- Calls f(...) expecting it to raise an agentsession error; returns the error.
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error, the call succeeded")
  assert.is_table(err, "expected an error table, got: " .. tostring(err))
  return err
end

local function keys_of(t)
  local keys = {}
  for k, v in pairs(t) do keys[k] = v end
  return keys
end

describe("require('agentsession')", function()
  it("returns the module table and leaves _G untouched on a fresh load", function()
    local saved = {}
    for name, mod in pairs(package.loaded) do
      if name == "agentsession" or name:match("^agentsession%.") then
        saved[name] = mod
      end
    end
    for name in pairs(saved) do package.loaded[name] = nil end

    local before = keys_of(_G)
    local ok, fresh = pcall(require, "agentsession")
    local after = keys_of(_G)

    for name in pairs(package.loaded) do
      if name == "agentsession" or name:match("^agentsession%.") then
        package.loaded[name] = nil
      end
    end
    for name, mod in pairs(saved) do package.loaded[name] = mod end

    assert.is_true(ok, tostring(fresh))
    assert.is_table(fresh)
    for k, v in pairs(after) do
      assert.is_true(rawequal(before[k], v), "require changed or added global " .. tostring(k))
    end
    for k in pairs(before) do
      assert.is_not_nil(after[k], "require removed global " .. tostring(k))
    end
  end)

  it("returns the same table on a second require", function()
    assert.is_true(rawequal(agentsession, require("agentsession")))
  end)

  it("has every documented function and value", function()
    for _, name in ipairs({ "session", "uuid", "now", "array", "has_tag", "is_error", "open", "memory" }) do
      assert.is_function(agentsession[name], "agentsession." .. name)
    end
    assert.is_table(agentsession.json, "agentsession.json")
    assert.is_function(agentsession.json.encode, "agentsession.json.encode")
    assert.is_function(agentsession.json.decode, "agentsession.json.decode")
    assert.is_table(agentsession.array_mt, "agentsession.array_mt")
    assert.are.equal("userdata", type(agentsession.null))
    assert.is_string(agentsession.VERSION)
    assert.is_true(#agentsession.VERSION > 0)
  end)

  it("has null equal to cjson.null", function()
    assert.is_true(agentsession.null == cjson.null)
    assert.is_true(rawequal(agentsession.null, cjson.null))
  end)
end)

describe("agentsession.uuid", function()
  it("gives distinct lowercase version 4 UUIDs", function()
    local seen = {}
    for i = 1, 1000 do
      local u = agentsession.uuid()
      assert.is_string(u)
      assert.is_truthy(u:match(UUID_V4), "call " .. i .. " gave " .. u)
      assert.are.equal(u:lower(), u)
      assert.is_nil(seen[u], "repeated UUID " .. u)
      seen[u] = true
    end
  end)
end)

describe("agentsession.now", function()
  it("gives integer Unix milliseconds from the wall clock", function()
    local before = os.time()
    local now = agentsession.now()
    local after = os.time()
    deep.assert_integer(now)
    -- one second of slack each way: os.time may read a coarser clock
    assert.is_true(now >= (before - 1) * 1000, "now() = " .. now .. ", os.time() = " .. before)
    assert.is_true(now < (after + 2) * 1000, "now() = " .. now .. ", os.time() = " .. after)
  end)
end)

describe("agentsession.array", function()
  it("sets array_mt on the given table and returns it", function()
    local t = { 1, 2 }
    assert.is_true(rawequal(t, agentsession.array(t)))
    assert.is_true(rawequal(agentsession.array_mt, getmetatable(t)))
  end)

  it("makes a new empty array when given nil", function()
    local t = agentsession.array()
    assert.is_table(t)
    assert.is_nil(next(t))
    assert.is_true(rawequal(agentsession.array_mt, getmetatable(t)))
  end)
end)

describe("agentsession.session", function()
  it("fills the defaults", function()
    local s = agentsession.session({})
    local m = s.metadata
    assert.is_table(m)
    assert.is_truthy(m.id:match(UUID_V4), m.id)
    assert.is_nil(m.name)
    assert.are.equal("", m.agent_name)
    assert.is_table(m.tags)
    assert.is_nil(next(m.tags))
    for _, field in ipairs({ "created_at", "updated_at", "turn_count", "total_tokens" }) do
      assert.are.equal(0, m[field], field)
      deep.assert_integer(m[field], field)
    end
    assert.is_table(s.messages)
    assert.is_nil(next(s.messages))
    assert.is_table(s.state)
    assert.is_nil(next(s.state))
    assert.are_not.equal(agentsession.array_mt, getmetatable(s.state))
  end)

  it("gives each session a new id", function()
    assert.are_not.equal(agentsession.session({}).metadata.id, agentsession.session({}).metadata.id)
  end)

  it("keeps the values given", function()
    local s = agentsession.session({
      id = "my-id", name = "my-task", tags = { "production", "eu" }, agent_name = "code-agent",
      state = { cwd = "/home/user" }, messages = { { role = "user", content = "hi" } },
    })
    assert.are.equal("my-id", s.metadata.id)
    assert.are.equal("my-task", s.metadata.name)
    assert.are.same({ "production", "eu" }, s.metadata.tags)
    assert.are.equal("code-agent", s.metadata.agent_name)
    assert.are.same({ cwd = "/home/user" }, s.state)
    assert.are.same({ { role = "user", content = "hi" } }, s.messages)
  end)

  it("refuses an unknown key with invalid", function()
    local err = raises(agentsession.session, { colour = "red" })
    assert.are.equal("invalid", err.kind)
  end)

  it("refuses a wrongly typed field with invalid naming the field", function()
    local err = raises(agentsession.session, { name = 5 })
    assert.are.equal("invalid", err.kind)
    assert.is_truthy(err.message:find("name", 1, true), err.message)
  end)
end)

describe("agentsession.has_tag", function()
  it("tells whether metadata carries a tag", function()
    local m = { tags = { "a", "b" } }
    assert.is_true(agentsession.has_tag(m, "a"))
    assert.is_true(agentsession.has_tag(m, "b"))
    assert.is_false(agentsession.has_tag(m, "c"))
  end)

  it("treats missing tags as none", function()
    assert.is_false(agentsession.has_tag({}, "a"))
  end)

  it("works on metadata returned by a manager", function()
    local mgr = agentsession.memory()
    local meta = mgr:save(agentsession.session({ tags = { "x" } }))
    assert.is_true(agentsession.has_tag(meta, "x"))
    assert.is_false(agentsession.has_tag(meta, "y"))
    mgr:close()
  end)
end)

describe("agentsession.is_error", function()
  local mgr, err

  before_each(function()
    mgr = agentsession.memory()
    err = raises(mgr.resume, mgr, "no-such-id")
  end)

  after_each(function()
    mgr:close()
  end)

  it("recognises an error raised by the library", function()
    assert.is_true(agentsession.is_error(err))
  end)

  it("matches the kind when one is given", function()
    assert.are.equal("not_found", err.kind)
    assert.is_true(agentsession.is_error(err, "not_found"))
    assert.is_false(agentsession.is_error(err, "invalid"))
  end)

  it("gives the error its message, id and text form", function()
    assert.are.equal('no session with id "no-such-id"', err.message)
    assert.are.equal("no-such-id", err.id)
    assert.are.equal("", err.where) -- called by pcall, a C function: no line
    assert.are.equal("agentsession: not_found: " .. err.message, tostring(err))
  end)

  it("recognises an invalid error from the codec", function()
    local e = raises(agentsession.json.decode, "[")
    assert.is_true(agentsession.is_error(e, "invalid"))
  end)

  it("rejects values that are not library errors", function()
    assert.is_false(agentsession.is_error(nil))
    assert.is_false(agentsession.is_error("agentsession: not_found: x"))
    assert.is_false(agentsession.is_error(42))
    assert.is_false(agentsession.is_error({}))
  end)
end)

describe("agentsession.open", function()
  it("opens a memory manager from 'memory:'", function()
    local mgr = agentsession.open("memory:")
    assert.are.equal("userdata", type(mgr))
    assert.are.equal("agentsession.SessionManager", tostring(mgr):sub(1, #"agentsession.SessionManager"))
    assert.are.equal(0, #mgr:list())
    mgr:close()
  end)

  it("refuses an unknown scheme with invalid", function()
    local err = raises(agentsession.open, "ftp://example.com/sessions")
    assert.are.equal("invalid", err.kind)
    assert.is_true(agentsession.is_error(err, "invalid"))
  end)
end)
