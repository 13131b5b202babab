-- Error objects carry where they were raised: `where` names the line of Lua
-- code that called the library ("file.lua:12:", as error(msg, 2) names it;
-- "" when that caller is C or has no line information), tostring ends with
-- " (at file.lua:12)" when it is known, and concatenation gives the tostring.
local agentsession = require("agentsession")
local backends = require("helpers.lua_backend")
local stores = require("helpers.stores")
local interp = require("helpers.interp")

local MISSING = "0b9f6a2e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"
local SOURCE = debug.getinfo(1, "S").short_src

-- The where of an error raised by a call on `line` of this file.
local function at(line)
  return SOURCE .. ":" .. line .. ":"
end

-- The line after the one calling this.
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

-- Runs fn, which must raise an agentsession error of that kind; returns it.
local function caught(kind, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "the call succeeded")
  assert.is_true(agentsession.is_error(err, kind), "expected an error of kind " .. kind .. ", got "
    .. tostring(err))
  return err
end

-- The function `function(mgr, id) mgr:resume(id) end` without line
-- information: string.dump strips it on Lua 5.3 and later and on LuaJIT,
-- luac -s on Lua 5.1 and 5.2 (whose string.dump keeps it).
local function stripped_resume()
  local load_string = rawget(_G, "loadstring") or load
  if interp.has_integers or interp.jit then
    return load_string(string.dump(function(mgr, id) mgr:resume(id) end, true))
  end
  local dir = stores.tmpdir()
  local f = assert(io.open(dir .. "/resume.lua", "w"))
  f:write("local mgr, id = ...\nmgr:resume(id)\n")
  f:close()
  local luac = interp.lua:gsub("^lua", "luac")
  assert(os.execute(luac .. " -s -o " .. dir .. "/resume.luac " .. dir .. "/resume.lua"))
  f = assert(io.open(dir .. "/resume.luac", "rb"))
  local chunk = f:read("*a")
  f:close()
  return assert(load_string(chunk))
end

-- A backend whose function `name` is replaced by `fn`.
local function with(name, fn)
  local b = backends.new()
  b[name] = fn
  return b
end

describe("where", function()
  for _, store in ipairs(stores) do
    describe("on a " .. store.name .. " manager", function()
      local mgr

      before_each(function()
        mgr = store.new()
      end)

      after_each(function()
        mgr:close()
      end)

      it("names the line that called resume of a missing id", function()
        local line = next_line()
        local err = caught("not_found", function() mgr:resume(MISSING) end)
        assert.are.equal(at(line), err.where)
        assert.are.equal(MISSING, err.id)
      end)

      it("names the line that called save of an invalid session", function()
        local s = agentsession.session()
        s.metadata.tags = { "" }
        local line = next_line()
        local err = caught("invalid", function() mgr:save(s) end)
        assert.are.equal(at(line), err.where)
      end)

      it("names the line that called a method of the closed manager", function()
        mgr:close()
        local line = next_line()
        local err = caught("closed", function() mgr:list() end)
        assert.are.equal(at(line), err.where)
      end)
    end)
  end

  describe("of a module function", function()
    it("json.decode names its caller's line", function()
      local line = next_line()
      local err = caught("invalid", function() agentsession.json.decode("[") end)
      assert.are.equal(at(line), err.where)
    end)

    it("json.encode names its caller's line", function()
      local line = next_line()
      local err = caught("invalid", function() agentsession.json.encode({ print }) end)
      assert.are.equal(at(line), err.where)
    end)

    it("session (written in Lua) names its caller's line, not its own", function()
      local line = next_line()
      local err = caught("invalid", function() agentsession.session{ bad = 1 } end)
      assert.are.equal(at(line), err.where)
      line = next_line()
      err = caught("invalid", function() agentsession.session{ tags = { 1 } } end)
      assert.are.equal(at(line), err.where)
    end)

    it("open (written in Lua) names its caller's line for a URI it refuses", function()
      for _, uri in ipairs({ "nope://x", "", "sqlite:", "rediss://h", "redis://h/zero",
                             "redis://h/0?prefix=a%zz", "redis://u@h/0" }) do
        local line = next_line()
        local err = caught("invalid", function() agentsession.open(uri) end)
        assert.are.equal(at(line), err.where, uri)
      end
      local line = next_line()
      local err = caught("invalid", function() agentsession.open("redis://h:1/0", { port = 2 }) end)
      assert.are.equal(at(line), err.where)
    end)

    it("open names its caller's line for the errors of the constructor it calls", function()
      local line = next_line()
      local err = caught("invalid", function() agentsession.open("memory:", { bogus = 1 }) end)
      assert.are.equal(at(line), err.where)
      assert.are.equal('options: unknown option "bogus"', err.message)
      local path = stores.tmpdir() .. "/no/such/dir/x.db"
      line = next_line()
      err = caught("storage", function() agentsession.open("sqlite:" .. path) end)
      assert.are.equal(at(line), err.where)
      assert.truthy(err.message:find(path, 1, true), err.message)
    end)

    it("open's result is the manager, as before", function()
      local m = agentsession.open("memory:")
      assert.are.equal("memory", m:stats().kind)
      m:close()
    end)

    it("custom names its caller's line for a backend it refuses", function()
      local line = next_line()
      local err = caught("invalid", function() agentsession.custom(with("load", 42)) end)
      assert.are.equal(at(line), err.where)
    end)
  end)

  describe("of an error a custom store's backend raises", function()
    it("names the line that called the method, for a string", function()
      local raised_at = next_line()
      local m = agentsession.custom(with("load", function() error("disk on fire") end))
      local line = next_line()
      local err = caught("storage", function() m:resume(MISSING) end)
      assert.are.equal(at(line), err.where)
      assert.are.equal("custom store: backend.load raised: " .. at(raised_at) .. " disk on fire", err.message)
      m:close()
    end)

    it("names the line that called the method, not the backend's, for an agentsession error", function()
      local inner
      local m = agentsession.custom(with("load", function()
        local ok, e = pcall(function() agentsession.json.decode("[") end)
        assert(not ok)
        inner = e
        error(e)
      end))
      local line = next_line()
      local err = caught("invalid", function() m:resume(MISSING) end)
      assert.are_not.equal(inner.where, err.where)
      assert.are.equal(at(line), err.where)
      assert.are.equal(inner.message, err.message)
      m:close()
    end)

    it("names the line that called the method for a write the backend refuses", function()
      local other = agentsession.memory()
      local m = agentsession.custom(with("store", function(s) other:resume(s.metadata.id) end))
      local s = agentsession.session()
      local line = next_line()
      local err = caught("not_found", function() m:save(s) end)
      assert.are.equal(at(line), err.where)
      assert.are.equal(s.metadata.id, err.id)
      other:close()
      m:close()
    end)
  end)

  it("is empty when the caller is C (pcall calling the method itself)", function()
    local m = agentsession.memory()
    local ok, err = pcall(m.resume, m, MISSING)
    assert.is_false(ok)
    assert.are.equal("", err.where)
    ok, err = pcall(agentsession.session, { bad = 1 })
    assert.is_false(ok)
    assert.are.equal("", err.where)
    m:close()
  end)

  it("is empty when the caller is a stripped chunk", function()
    local m = agentsession.memory()
    local stripped = stripped_resume()
    local err = caught("not_found", function() stripped(m, MISSING) end)
    assert.are.equal("", err.where)
    m:close()
  end)
end)

describe("tostring of an error", function()
  local m

  before_each(function()
    m = agentsession.memory()
  end)

  after_each(function()
    m:close()
  end)

  it("ends with ' (at file:line)' when where is known", function()
    local line = next_line()
    local err = caught("not_found", function() m:resume(MISSING) end)
    assert.are.equal('agentsession: not_found: no session with id "' .. MISSING .. '" (at ' .. SOURCE .. ":"
      .. line .. ")", tostring(err))
  end)

  it("is 'agentsession: <kind>: <message>' when where is empty", function()
    local _, err = pcall(m.resume, m, MISSING)
    assert.are.equal('agentsession: not_found: no session with id "' .. MISSING .. '"', tostring(err))
  end)

  it("follows the fields of the object", function()
    local err = caught("not_found", function() m:resume(MISSING) end)
    err.where = "agent.lua:12:"
    assert.are.equal('agentsession: not_found: no session with id "' .. MISSING .. '" (at agent.lua:12)',
      tostring(err))
    err.where = nil
    assert.are.equal('agentsession: not_found: no session with id "' .. MISSING .. '"', tostring(err))
  end)
end)

describe("concatenating an error", function()
  local err, text

  setup(function()
    local m = agentsession.memory()
    err = caught("not_found", function() m:resume(MISSING) end)
    text = tostring(err)
    m:close()
  end)

  it("gives its tostring after a string or a number", function()
    assert.are.equal("failed: " .. text, "failed: " .. err)
    assert.are.equal("7" .. text, 7 .. err)
  end)

  it("gives its tostring before a string or a number", function()
    assert.are.equal(text .. " (retrying)", err .. " (retrying)")
    assert.are.equal(text .. "1.5", err .. 1.5)
  end)

  it("gives both tostrings for two errors, and works within a longer concatenation", function()
    assert.are.equal(text .. text, err .. err)
    assert.are.equal("[" .. text .. "] [" .. text .. "]", "[" .. err .. "] [" .. err .. "]")
  end)

  it("refuses what Lua's concatenation refuses", function()
    for _, v in ipairs({ {}, true, print }) do
      local ok, why = pcall(function() return err .. v end)
      assert.is_false(ok)
      assert.truthy(why:find("attempt to concatenate a " .. type(v) .. " value", 1, true), why)
      ok, why = pcall(function() return v .. err end)
      assert.is_false(ok)
      assert.truthy(why:find("attempt to concatenate a " .. type(v) .. " value", 1, true), why)
    end
  end)
end)
