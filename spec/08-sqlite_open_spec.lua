-- What only the SQLite store has: opening it. agentsession.open with "sqlite:PATH"
-- or a bare path, the URI forms it refuses, and the options of agentsession.sqlite.
-- Every test works on real files in a fresh temporary directory.
local agentsession = require("agentsession")
local deep = require("helpers.deep")
local error_of = require("helpers.expect").error_of
local h = require("helpers.sqlite")
local sqlite_case = require("helpers.sqlite_case")
local open, session = sqlite_case.open, sqlite_case.session

local dir, managers -- this test's temporary directory, the managers sqlite_case.finish closes

describe("sqlite store", function()
  before_each(function() dir, managers = sqlite_case.start() end)
  after_each(sqlite_case.finish)

  describe("open", function()
    it("gives a sqlite manager on the same file for \"sqlite:PATH\" and for a bare PATH", function()
      local path = dir .. "/open.db"
      local by_uri = agentsession.open("sqlite:" .. path)
      managers[#managers + 1] = by_uri
      assert.truthy(tostring(by_uri):find("sqlite", 1, true), tostring(by_uri))
      local meta = by_uri:save(session({ id = "via-uri", agent_name = "a", messages = { "m" } }))
      local by_path = agentsession.open(path)
      managers[#managers + 1] = by_path
      assert.truthy(tostring(by_path):find("sqlite", 1, true), tostring(by_path))
      deep.assert_same(meta, by_path:resume("via-uri").metadata)
      by_path:save(session({ id = "via-path", agent_name = "a" }))
      local direct = open(path)
      assert.are.same({ "via-path", "via-uri" }, { direct:list()[1].id, direct:list()[2].id })
      assert.are.equal(h.APPLICATION_ID, h.value(path, "PRAGMA application_id"))
      local with_opts = agentsession.open("sqlite:" .. path, { busy_timeout_ms = 100 })
      managers[#managers + 1] = with_opts
      assert.are.equal(2, #with_opts:list())
      error_of("invalid", agentsession.open, "sqlite:" .. path, { no_such_option = 1 })
    end)

    it("refuses \"sqlite://…\" and \"sqlite:///…\" with invalid and creates nothing", function()
      -- both would name /x.db if taken as paths: a store made there is removed before failing
      local root_file = h.exists("/x.db")
      local results = {}
      for i, uri in ipairs({ "sqlite://x.db", "sqlite:///x.db" }) do
        local ok, got = pcall(agentsession.open, uri)
        if ok then managers[#managers + 1] = got end
        results[i] = { uri = uri, ok = ok, err = got }
      end
      local made = not root_file and h.exists("/x.db")
      if made then
        for _, mgr in ipairs(managers) do pcall(mgr.close, mgr) end
        for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove("/x.db" .. suffix) end
      end
      for _, r in ipairs(results) do
        assert.is_false(r.ok, r.uri .. " opened a store")
        assert.is_true(agentsession.is_error(r.err, "invalid"), r.uri .. ": expected invalid, got " .. tostring(r.err))
      end
      assert.is_false(made, "/x.db was created")
      -- the same forms naming a file in this test's directory ("//tmp/…" and "///tmp/…")
      error_of("invalid", agentsession.open, "sqlite://" .. dir:sub(2) .. "/host.db")
      error_of("invalid", agentsession.open, "sqlite://" .. dir .. "/triple.db")
      error_of("invalid", agentsession.open, "sqlite://" .. dir .. "/opts.db", { busy_timeout_ms = 100 })
      assert.are.equal("", h.must("ls -A " .. h.q(dir)), "files were created")
    end)
  end)

  describe("options", function()
    local bad = {
      { "durability = \"fast\"", { durability = "fast" } },
      { "durability = 1", { durability = 1 } },
      { "durability = \"full\\0x\"", { durability = "full\0x" } },
      { "durability = \"normal\\0\"", { durability = "normal\0" } },
      { "busy_timeout_ms = -1", { busy_timeout_ms = -1 } },
      { "busy_timeout_ms = 1.5", { busy_timeout_ms = 1.5 } },
      { "busy_timeout_ms = NaN", { busy_timeout_ms = 0 / 0 } },
      { "max_session_bytes = -1", { max_session_bytes = -1 } },
      { "max_session_bytes = 2.5", { max_session_bytes = 2.5 } },
      { "an unknown option", { journal_mode = "delete" } },
    }
    for _, case in ipairs(bad) do
      it("refuses " .. case[1] .. " with invalid and creates no file", function()
        local path = dir .. "/opts.db"
        error_of("invalid", agentsession.sqlite, path, case[2])
        assert.is_false(h.exists(path), "the file was created")
      end)
    end

    it("accepts durability normal and full and busy_timeout_ms 0", function()
      local path = dir .. "/good.db"
      for _, opts in ipairs({ { durability = "normal" }, { durability = "full" }, { busy_timeout_ms = 0 },
          { busy_timeout_ms = 5000, durability = "full", max_session_bytes = 1048576 } }) do
        local mgr = open(path, opts)
        mgr:save(session({ agent_name = "a" }))
        mgr:close()
      end
      assert.are.equal(4, #open(path):list())
    end)

    it("max_session_bytes: a larger session is too_large and nothing is written", function()
      local path = dir .. "/limit.db"
      local mgr = open(path, { max_session_bytes = 4096 })
      mgr:save(session({ id = "small", agent_name = "a", messages = { "short" } }))
      local big = session({ id = "big", agent_name = "a", messages = { string.rep("x", 5000) } })
      error_of("too_large", mgr.save, mgr, big)
      local grown = mgr:resume("small")
      grown.messages[2] = string.rep("y", 5000)
      error_of("too_large", mgr.save, mgr, grown)
      error_of("not_found", mgr.resume, mgr, "big")
      local small = mgr:resume("small")
      deep.assert_same(agentsession.array({ "short" }), small.messages)
      assert.are.equal(1, small.metadata.version)
      assert.are.equal(1, #open(path):list())
    end)
  end)
end)
