-- Closing managers: close, __close, __gc, use after close, and methods called
-- on something that is not a manager.
local agentsession = require("agentsession")
local stores = require("helpers.stores")

local TYPE_NAME = "agentsession.SessionManager"

local id_counter = 0
local function new_session()
  id_counter = id_counter + 1
  return {
    metadata = {
      id = string.format("spec06-%d-%d", id_counter, math.random(1, 1000000000)),
      name = "task", tags = { "t" }, agent_name = "agent",
      created_at = 0, updated_at = 0, turn_count = 2, total_tokens = 0,
    },
    messages = { "one", "two" },
    state = { k = "v" },
  }
end

local error_of = require("helpers.expect").error_of

-- close_scope(new, body): makes a manager with new() into a `<close>` variable,
-- calls body(m) and returns m once the scope has ended. nil before Lua 5.4,
-- which has no `<close>` and cannot parse it (this file must load there too).
local close_scope = (rawget(_G, "loadstring") or load)([[
  local new, body = ...
  local scoped <close> = new()
  body(scoped)
  return scoped
]], "=close_scope")

local function argument_error(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "the call succeeded")
  assert.are.equal("string", type(err), "not a Lua argument error: " .. tostring(err))
  assert.is_truthy(err:find("bad argument", 1, true), err)
  return err
end

-- Every method, called with valid arguments on a session `id` that existed
-- before the manager was closed. Not as tail calls, whose caller's frame
-- LuaJIT drops (so the error's `where` could not name the line).
local methods = {
  save = function(mgr) return (mgr:save(new_session())) end,
  resume = function(mgr, id) return (mgr:resume(id)) end,
  list = function(mgr) return (mgr:list()) end,
  fork = function(mgr, id) return (mgr:fork(id)) end,
  rewind = function(mgr, id) return (mgr:rewind(id, 1)) end,
  tag = function(mgr, id) return (mgr:tag(id, "x")) end,
  untag = function(mgr, id) return (mgr:untag(id, "t")) end,
  rename = function(mgr, id) return (mgr:rename(id, "n")) end,
  delete = function(mgr, id) return (mgr:delete(id)) end,
}
local method_names = { "save", "resume", "list", "fork", "rewind", "tag", "untag", "rename", "delete" }

for _, store in ipairs(stores) do
  describe(store.name .. " manager", function()
    local mgr, id

    before_each(function()
      mgr = store.new()
      id = mgr:save(new_session()).id
    end)

    after_each(function()
      mgr:close()
    end)

    describe("close", function()
      it("returns nothing and can be called again", function()
        assert.is_nil(mgr:close())
        assert.is_nil(mgr:close())
        assert.is_nil(mgr:close())
      end)

      for _, name in ipairs(method_names) do
        it("makes " .. name .. " raise closed", function()
          mgr:close()
          local err = error_of("closed", methods[name], mgr, id)
          -- raised where the method was called: the one line of methods[name]
          local at = debug.getinfo(methods[name], "S")
          assert.are.equal(at.short_src .. ":" .. at.linedefined .. ":", err.where)
          assert.are.equal("agentsession: closed: " .. err.message .. " (at " .. at.short_src .. ":"
            .. at.linedefined .. ")", tostring(err))
        end)
      end

      it("keeps raising closed on repeated calls", function()
        mgr:close()
        error_of("closed", mgr.list, mgr)
        error_of("closed", mgr.list, mgr)
        mgr:close()
        error_of("closed", mgr.resume, mgr, id)
      end)

      it("does not affect another manager", function()
        local other = store.new()
        local other_id = other:save(new_session()).id
        mgr:close()
        assert.are.equal(other_id, other:resume(other_id).metadata.id)
        other:close()
        error_of("closed", other.list, other)
      end)
    end)

    if close_scope then
      it("closes at the end of a scope with <close>", function()
        local escaped = close_scope(store.new, function(scoped)
          scoped:save(new_session())
          assert.are.equal(1, #scoped:list())
        end)
        error_of("closed", escaped.list, escaped)
        escaped:close()
      end)

      it("closes at <close> when the scope is left by an error", function()
        local escaped
        local ok = pcall(close_scope, store.new, function(scoped)
          escaped = scoped
          error("leaving")
        end)
        assert.is_false(ok)
        error_of("closed", escaped.list, escaped)
      end)
    else
      it("has no <close> before Lua 5.4: its __close closes the manager as 5.4 would", function()
        local scoped = store.new()
        scoped:save(new_session())
        debug.getmetatable(scoped).__close(scoped, nil)
        error_of("closed", scoped.list, scoped)
        local left = store.new()
        debug.getmetatable(left).__close(left, "leaving")
        error_of("closed", left.list, left)
        assert.is_nil(scoped:close())
      end)
    end

    describe("called on something that is not a manager", function()
      local method_table

      before_each(function()
        method_table = debug.getmetatable(mgr).__index
        assert.are.equal("table", type(method_table))
      end)

      it("is an argument error with a table as self", function()
        argument_error(method_table.save, {})
        argument_error(method_table.list, {})
        argument_error(method_table.resume, {}, id)
        argument_error(method_table.close, {})
      end)

      it("is an argument error with nil as self", function()
        argument_error(mgr.save, nil)
        argument_error(mgr.list, nil)
        argument_error(mgr.close, nil)
        argument_error(mgr.resume)
      end)

      it("is an argument error with another userdata as self", function()
        argument_error(mgr.save, io.stdout, new_session())
        argument_error(mgr.list, io.stdout)
        argument_error(mgr.close, io.stdout)
      end)

      it("names the expected type in the argument error", function()
        local err = argument_error(mgr.list, {})
        assert.is_truthy(err:find(TYPE_NAME, 1, true), err)
      end)

      it("leaves the manager working", function()
        pcall(mgr.close, {})
        pcall(mgr.save, nil)
        assert.are.equal(id, mgr:resume(id).metadata.id)
      end)
    end)

    describe("metatable", function()
      it("names the type", function()
        assert.are.equal("userdata", type(mgr))
        assert.is_truthy(tostring(mgr):find(TYPE_NAME, 1, true) == 1, tostring(mgr))
        assert.are.equal(TYPE_NAME, debug.getmetatable(mgr).__name)
      end)

      it("is the real metatable, its __name the type's name", function()
        local mt = getmetatable(mgr)
        assert.are.equal("table", type(mt))
        assert.is_true(rawequal(debug.getmetatable(mgr), mt))
        assert.are.equal(TYPE_NAME, mt.__name)
      end)

      it("has functions that raise an argument error on anything but a manager", function()
        local mt = getmetatable(mgr)
        local functions = {}
        for name, f in pairs(mt) do
          if type(f) == "function" then functions[#functions + 1] = { name, f } end
        end
        for name, f in pairs(mt.__index) do functions[#functions + 1] = { name, f } end
        local others = { n = 12, nil, false, 0, 1.5, "mgr", {}, mt, mt.__index, print, io.stdout,
          agentsession.null, coroutine.create(function() end) }
        local checked = {}
        for _, entry in ipairs(functions) do
          for i = 1, others.n do
            local err = argument_error(entry[2], others[i], id, new_session())
            assert.is_truthy(err:find(TYPE_NAME .. " expected", 1, true), entry[1] .. ": " .. err)
          end
          checked[entry[1]] = true
        end
        for _, name in ipairs({ "__gc", "__close", "__tostring", "close", "stats", "export", "import" }) do
          assert.is_true(checked[name], name)
        end
        for _, name in ipairs(method_names) do assert.is_true(checked[name], name) end
        assert.are.equal(id, mgr:resume(id).metadata.id)
        assert.are.equal(1, #mgr:list())
      end)

      it("has methods that work on a manager", function()
        local methods_of = getmetatable(mgr).__index
        assert.are.equal(id, methods_of.resume(mgr, id).metadata.id)
        assert.are.equal(tostring(mgr), getmetatable(mgr).__tostring(mgr))
      end)

      it("is the same for every manager", function()
        local other = store.new()
        local memory = agentsession.memory()
        assert.are.equal(debug.getmetatable(mgr), debug.getmetatable(other))
        assert.are.equal(debug.getmetatable(mgr), debug.getmetatable(memory))
        other:close()
        memory:close()
      end)

      it("does not offer __gc or __close as methods", function()
        assert.is_nil(mgr.__gc)
        assert.is_nil(mgr.__close)
      end)

      it("has __gc and __close that reject a non-manager", function()
        local mt = debug.getmetatable(mgr)
        argument_error(mt.__gc, {})
        argument_error(mt.__close, {}, nil)
      end)

      it("has a __close that closes the manager", function()
        local mt = debug.getmetatable(mgr)
        mt.__close(mgr, nil)
        error_of("closed", mgr.list, mgr)
        mt.__close(mgr, nil)
      end)
    end)

    describe("garbage collection", function()
      it("of dropped managers holding sessions does not crash", function()
        for _ = 1, 20 do
          local dropped = store.new()
          for _ = 1, 10 do dropped:save(new_session()) end
          dropped:fork(dropped:list()[1].id)
        end
        collectgarbage("collect")
        collectgarbage("collect")
        assert.are.equal(id, mgr:resume(id).metadata.id)
      end)

      it("of dropped closed managers does not crash", function()
        for _ = 1, 20 do
          local dropped = store.new()
          dropped:save(new_session())
          dropped:close()
        end
        collectgarbage("collect")
        collectgarbage("collect")
        assert.are.equal(1, #mgr:list())
      end)

      it("after __gc was called by hand leaves a closed manager", function()
        local mt = debug.getmetatable(mgr)
        local victim = store.new()
        victim:save(new_session())
        mt.__gc(victim)
        error_of("closed", victim.list, victim)
        mt.__gc(victim)
        victim:close()
        victim = nil -- luacheck: ignore 311
        collectgarbage("collect")
        assert.are.equal(1, #mgr:list())
      end)
    end)
  end)
end

describe("agentsession.memory", function()
  it("can be closed without ever being used", function()
    local mgr = agentsession.memory()
    mgr:close()
    error_of("closed", mgr.list, mgr)
  end)
end)
