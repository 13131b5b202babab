-- Every Lua a host embeds: a module built for another Lua fails naming both,
-- and sessions written by Lua 5.4 read back here (and the other way round)
-- with the number rules of API.md, on SQLite and on Redis. The suite runs on
-- each Lua (make spec), and this file checks the Lua it runs on.
local agentsession = require("agentsession")
local interp = require("helpers.interp")
local h = require("helpers.sqlite")
local rs = require("helpers.redis_server")
local error_of = require("helpers.expect").error_of

local NAMES = { ["lua5.1"] = "Lua 5.1", ["lua5.2"] = "Lua 5.2", ["lua5.3"] = "Lua 5.3",
  ["lua5.4"] = "Lua 5.4", luajit = "LuaJIT" }
local ABI_51 = { ["lua5.1"] = true, luajit = true }

-- Runs a shell command: its output (stdout and stderr) and whether it exited 0.
local function run(command)
  local pipe = assert(io.popen(command .. " 2>&1; echo \"exit:$?\""))
  local output = pipe:read("*a")
  pipe:close()
  local body, code = output:match("^(.*)exit:(%d+)%s*$")
  return body, code == "0"
end

-- The child program run by `lua` (default lua5.4, with its own build).
local function child(lua, ...)
  local words = { interp.env(h.root, lua), lua, h.q(h.root .. "/spec/helpers/versions_child.lua") }
  for _, a in ipairs({ ... }) do words[#words + 1] = h.q(a) end
  local output, ok = run(table.concat(words, " "))
  assert(ok, lua .. " " .. table.concat({ ... }, " ") .. " failed: " .. output)
  return output
end

local function is_negative_zero(x)
  return x == 0 and 1 / x < 0
end

describe("a module built for another Lua", function()
  for _, build in ipairs(interp.all) do
    if build ~= interp.lua then
      local shares_abi = ABI_51[build] and ABI_51[interp.lua]
      it((shares_abi and "serves" or "fails, naming both Luas,") .. " when built for " .. NAMES[build], function()
        local command = "LUA_PATH=" .. h.q(h.root .. "/lua/?.lua;" .. h.root .. "/lua/?/init.lua")
          .. " LUA_CPATH=" .. h.q(h.root .. "/" .. interp.build_dir(build) .. "/?.so") .. " "
          .. interp.lua .. " -e " .. h.q("local a = require('agentsession'); "
            .. "local m = a.memory(); m:save(a.session{ id = 'x' }); print(m:resume('x').metadata.id)")
        local output, ok = run(command)
        if shares_abi then
          assert.is_true(ok, output)
          assert.equal("x\n", output)
        else
          assert.is_false(ok, output)
          assert.truthy(output:find("is built for " .. NAMES[build] .. ", but "
            .. NAMES[interp.lua] .. " loads it", 1, true), output)
          -- the loader's own message comes last, after the one naming both Luas
          assert.is_true(output:find("is built for", 1, true) < (output:find("undefined symbol", 1, true)
            or math.huge), output)
        end
      end)
    end
  end
end)

-- The checks of one store (made by `open(uri, opts)`), written by a Lua 5.4 child.
local function reads_what_lua54_wrote(uri_of)
  local uri
  before_each(function()
    uri = uri_of()
    child("lua5.4", "write", uri)
  end)

  if interp.has_integers then
    it("reads every value as Lua 5.4 wrote it, integers and floats apart", function()
      local m = agentsession.open(uri)
      local s = m:resume("numbers")
      local v = s.messages[1]
      assert.equal("integer", math.type(v.big))
      assert.equal(math.tointeger(2 ^ 53) + 1, v.big)
      assert.equal(math.maxinteger, v.max)
      assert.equal(math.mininteger, v.min)
      assert.equal("float", math.type(v.one))
      assert.equal(math.tointeger(2 ^ 60) + 1, s.metadata.total_tokens)
      assert.is_true(is_negative_zero(v.negzero))
      m:close()
    end)
  else
    it("refuses an integer beyond 2^53 by default, naming its path", function()
      local m = agentsession.open(uri)
      local err = error_of("invalid", function() m:resume("numbers") end)
      assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
      assert.truthy(tostring(err):find("metadata.total_tokens", 1, true), tostring(err))
      assert.truthy(tostring(err):find("1152921504606846977", 1, true), tostring(err))
      err = error_of("invalid", function() m:resume("message") end)
      assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
      assert.truthy(tostring(err):find("messages[2].deep[1]", 1, true), tostring(err))
      err = error_of("invalid", function() m:list() end)
      assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
      -- the store is as it was: Lua 5.4 still reads both sessions
      assert.truthy(child("lua5.4", "dump", uri, "numbers"):find('"big":9007199254740993', 1, true))
      m:close()
    end)

    it("reads them as the nearest number with big_integers = \"float\"", function()
      local m = agentsession.open(uri, { big_integers = "float" })
      local s = m:resume("numbers")
      local v = s.messages[1]
      assert.equal(2 ^ 53, v.big)
      assert.equal(2 ^ 63, v.max)
      assert.equal(-2 ^ 63, v.min)
      assert.equal(2 ^ 53, s.state.n)
      assert.equal(2 ^ 60, s.metadata.total_tokens)
      assert.equal(2 ^ 53, m:resume("message").messages[2].deep[1])
      assert.equal(2 ^ 60, m:list()[2].total_tokens + m:list()[1].total_tokens)
      m:close()
    end)

    it("reads them as decimal text with big_integers = \"string\", and saves them back", function()
      local m = agentsession.open(uri, { big_integers = "string" })
      local s = m:resume("numbers")
      local v = s.messages[1]
      assert.equal("9007199254740993", v.big)
      assert.equal("9223372036854775807", v.max)
      assert.equal("-9223372036854775808", v.min)
      assert.equal("1152921504606846977", s.metadata.total_tokens)
      -- saved back: the metadata keeps its integer, a message's value becomes a JSON string
      m:save(s)
      local dump = child("lua5.4", "dump", uri, "numbers")
      assert.truthy(dump:find('"total_tokens":1152921504606846977', 1, true), dump)
      assert.truthy(dump:find('"big":"9007199254740993"', 1, true), dump)
      m:close()
    end)
  end

  it("reads the values every Lua holds exactly as they were written", function()
    local m = agentsession.open(uri, { big_integers = "string" })
    local s = m:resume("numbers")
    local v = s.messages[1]
    assert.equal(2 ^ 53, v.small)
    assert.equal(0.1, v.tenth)
    assert.equal(1, v.one)
    assert.is_true(is_negative_zero(v.negzero))
    assert.equal(1e300, v.huge)
    assert.equal(5e-324, v.tiny)
    assert.equal(1 / 3, v.third)
    assert.equal("h\195\169llo \226\130\172 \240\157\132\158", v.text)
    assert.same({ 1, 2.5, "x", agentsession.null, true }, v.nested.list)
    assert.equal(agentsession.array_mt, getmetatable(v.nested.empty))
    assert.equal(2 ^ 53 + 2, s.state.f)
    assert.equal(7, s.metadata.turn_count)
    m:close()
  end)

  it("writes what Lua 5.4 reads back: integral numbers as integers, the rest as floats", function()
    local m = agentsession.open(uri)
    m:save(agentsession.session{ id = "back", messages = { { one = 1.0, limit = 2 ^ 53, above = 2 ^ 53 + 2,
      tenth = 0.1, negzero = -0.0, small = -42 } } })
    m:close()
    local dump = child("lua5.4", "dump", uri, "back")
    if interp.has_integers then
      assert.truthy(dump:find('"one":1.0', 1, true), dump)
      assert.truthy(dump:find('"limit":9007199254740992.0', 1, true), dump)
    else
      assert.truthy(dump:find('"one":1,', 1, true), dump)
      assert.truthy(dump:find('"limit":9007199254740992,', 1, true), dump)
    end
    assert.truthy(dump:find('"above":9007199254740994.0', 1, true), dump)
    assert.truthy(dump:find('"tenth":0.1', 1, true), dump)
    assert.truthy(dump:find('"negzero":-0.0', 1, true), dump)
    assert.truthy(dump:find('"small":-42', 1, true), dump)
  end)
end

describe("a SQLite file written by Lua 5.4, on " .. NAMES[interp.lua], function()
  local dir
  before_each(function()
    dir = h.tmpdir()
  end)
  after_each(function()
    h.rmdir(dir)
  end)
  reads_what_lua54_wrote(function()
    return "sqlite:" .. dir .. "/shared.db"
  end)
end)

describe("a Redis server written by Lua 5.4, on " .. NAMES[interp.lua], function()
  local srv, n = nil, 0
  setup(function()
    srv = rs.start()
  end)
  reads_what_lua54_wrote(function()
    n = n + 1
    return ("redis://%s:%d/0?prefix=v%d:"):format(srv.host, srv.port, n)
  end)
end)

describe("big_integers on " .. NAMES[interp.lua], function()
  local doc = '{"metadata":{"id":"i","agent_name":"","tags":[],"created_at":1,"updated_at":2,'
    .. '"turn_count":1,"total_tokens":9007199254740993},'
    .. '"messages":[{"n":9007199254740993}],"state":{}}'

  it("is an option of every constructor, checked on every Lua", function()
    for _, make in ipairs({
      function(o) return agentsession.memory(o) end,
      function(o) return agentsession.custom(require("helpers.lua_backend").new(), o) end,
    }) do
      for _, mode in ipairs({ "error", "float", "string" }) do make({ big_integers = mode }):close() end
      local err = error_of("invalid", function() make({ big_integers = "round" }) end)
      assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
      assert.truthy(tostring(err):find("options.big_integers", 1, true), tostring(err))
    end
  end)

  it("reads an imported session's integers beyond 2^53 on the memory and custom stores", function()
    for _, make in ipairs({
      function(o) return agentsession.memory(o) end,
      function(o) return agentsession.custom(require("helpers.lua_backend").new(), o) end,
    }) do
      local m = make({ big_integers = "string" })
      m:import(doc)
      local s = m:resume("i")
      if interp.has_integers then
        assert.equal(9007199254740993, s.metadata.total_tokens)
        assert.equal(9007199254740993, s.messages[1].n)
      else
        assert.equal("9007199254740993", s.metadata.total_tokens)
        assert.equal("9007199254740993", s.messages[1].n)
        local strict = make()
        local err = error_of("invalid", function() strict:import(doc) end)
        assert.is_true(agentsession.is_error(err, "invalid"), tostring(err))
        assert.same({}, strict:list())
        strict:close()
      end
      m:close()
    end
  end)
end)
