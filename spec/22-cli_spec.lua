-- The agentsession command, run as a process (the checkout's build/bin/agentsession for the
-- suite's Lua, and once as installed by luarocks) against temporary SQLite files and a real
-- redis-server: every command and flag, every exit status, --json output read back, sessions
-- moved between stores and compared, a terminal simulated with script(1), and memory that
-- stays flat on 20,000 sessions. The walk that dump, copy and check make through a store is
-- also driven in-process, with writes between its pages.
local agentsession = require("agentsession")
local interp = require("helpers.interp")
local cmd = require("helpers.command")
local rs = require("helpers.redis_server")

local json, null = agentsession.json, agentsession.null
local run, run_tty, q = cmd.run, cmd.run_tty, cmd.q

local COMMANDS = { "list", "show", "export", "import", "dump", "restore", "copy", "fork", "rewind", "tag",
  "untag", "rename", "rm", "search", "prune", "stats", "check", "completion" }

------------------------------------------------------------------------ helpers

-- Exact equality of JSON values (numbers by value and, where Lua has them, by subtype).
local function same(a, b, path)
  path = path or "value"
  if rawequal(a, b) then return true end
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if a ~= b or (math.type and math.type(a) ~= math.type(b)) then
      return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    return true
  end
  if type(a) ~= "table" then return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

local function assert_same(a, b, what)
  local ok, why = same(a, b, what)
  assert(ok, why)
end

-- One line on standard error, in the contract's form, and no Lua traceback.
local function assert_error(r, status, kind, pattern)
  assert.are.equal(status, r.status, r.err)
  local lines = cmd.lines(r.err)
  assert.are.equal(1, #lines, "not one line on standard error:\n" .. r.err)
  assert.truthy(lines[1]:find("^agentsession: " .. kind .. ": "), r.err)
  if pattern then assert.truthy(lines[1]:find(pattern), r.err) end
  assert.is_nil(r.err:find("traceback", 1, true), r.err)
end

local function ok(r)
  assert.are.equal(0, r.status, "exit " .. tostring(r.status) .. ": " .. r.err)
  return r
end

-- The JSON Lines of an output, decoded.
local function json_lines(s)
  local t = {}
  for i, line in ipairs(cmd.lines(s)) do
    local good, v = pcall(json.decode, line)
    assert(good, "line " .. i .. " is not JSON: " .. tostring(v))
    t[i] = v
  end
  return t
end

local function ids_of(list)
  local ids = {}
  for i, m in ipairs(list) do ids[i] = m.id end
  return ids
end

-- Every session of a store as its decoded export document, by id, and the ids in list order.
local function contents(uri)
  local mgr = agentsession.open(uri)
  local docs, order = {}, {}
  for i, m in ipairs(mgr:list()) do
    order[i] = m.id
    docs[m.id] = json.decode(mgr:export(m.id))
  end
  mgr:close()
  return docs, order
end

-- Two stores hold the same sessions (ids, lineage, tags, names, counts, times, messages,
-- state), listed in the same order.
local function assert_same_stores(a, b)
  local docs_a, order_a = contents(a)
  local docs_b, order_b = contents(b)
  assert.are.same(order_a, order_b)
  assert_same(docs_a, docs_b, "sessions")
end

------------------------------------------------------------------------ the sessions

local NOW = agentsession.now()
local MIN = 60000

-- A time shown as "N min ago": the clock moves on while the file runs (for minutes under
-- the sanitizers), so N lies between its value when NOW was read and its value now.
local function assert_minutes_ago(shown, updated_at, context)
  local n = tonumber(shown)
  local lo = math.floor((NOW - updated_at) / MIN)
  local hi = math.floor((agentsession.now() - updated_at) / MIN)
  assert(n and n >= lo and n <= hi,
    string.format("%s min ago, not from %d to %d: %s", tostring(shown), lo, hi, context))
end

local function doc(meta, messages, state)
  local m = {
    id = meta.id, name = meta.name, tags = agentsession.array(meta.tags or {}), agent_name = meta.agent_name or "",
    created_at = meta.created_at or NOW - 3600000, updated_at = meta.updated_at,
    turn_count = meta.turn_count or #messages, total_tokens = meta.total_tokens or 0, parent_id = meta.parent_id,
  }
  if m.name == nil then m.name = null end
  return json.encode({ metadata = m, messages = agentsession.array(messages), state = state or {} })
end

local UNICODE = "Liste les fichiers \226\128\148 caf\195\169 \230\151\165\230\156\172\232\170\158 \240\159\154\128"
local HUGE_LINES = 60000 -- a 2.2 MiB message

local ID = {
  openai = "0a1b2c3d-0000-4000-8000-00000000000a",
  claude = "0a1b2c3d-0000-4000-8000-00000000000b",
  fork = "5f5f5f5f-1111-4111-8111-111111111111",
  huge = "9e9e9e9e-2222-4222-8222-222222222222",
  esc = "e5c00000-3333-4333-8333-333333333333",
  odd = "odd",
  tie1 = "tie-one", tie2 = "tie-two",
}

local function fixture_docs()
  local openai = {
    { role = "system", content = "You are code-agent." },
    { role = "user", content = UNICODE, timestamp = NOW - 5 * MIN },
    { role = "assistant", content = null, tool_calls = {
      { id = "call_a", type = "function", ["function"] = { name = "read_file",
        arguments = '{"path":"src/main.c","max_lines":40}' } },
      { id = "call_b", type = "function", ["function"] = { name = "search_code", arguments = '{"query":"TODO"}' } },
    } },
    { role = "tool", tool_call_id = "call_a", content = "int main(void) {\n  return 0;\n}" },
    { role = "tool", tool_call_id = "call_b", content = { matches = { { file = "a.c", line = 3 } }, total = 1 } },
    { role = "assistant", content = "Done: 2 files. \226\156\133" },
  }
  local claude = {
    { role = "user", content = {
      { type = "text", text = "Summarise the repo", cache_control = { type = "ephemeral" } },
    } },
    { role = "assistant", content = {
      { type = "thinking", thinking = "Let me look at the tree first." },
      { type = "text", text = "I will list the files." },
      { type = "tool_use", id = "toolu_1", name = "list_directory", input = { path = "src", options = { depth = 2 } } },
    } },
    { role = "user", content = { { type = "tool_result", tool_use_id = "toolu_1", content = {
      { type = "text", text = "main.c\nutil.c" },
      { type = "tool_use", id = "toolu_nested", name = "inner_tool", input = { deep = { deeper = { value = 1 } } } },
    } } } },
    { role = "assistant", content = { { type = "text", text = "The repo has 2 files." } } },
  }
  local huge = {}
  for i = 1, HUGE_LINES do huge[i] = string.format("line %05d of a very long tool output", i) end
  return {
    doc({ id = ID.claude, name = "claude-chat", tags = { "production" }, agent_name = "claude-agent",
      updated_at = NOW - 3 * MIN - 20000, total_tokens = 123456 }, claude, { cwd = "/w", plan = { "a", "b" } }),
    doc({ id = ID.openai, name = "openai-chat", tags = { "production", "team:core" }, agent_name = "code-agent",
      updated_at = NOW - 10 * MIN, total_tokens = 4200 }, openai, { cwd = "/home/user" }),
    doc({ id = ID.fork, name = "openai-chat (fork)", tags = { "experiment" }, agent_name = "code-agent",
      updated_at = NOW - 20 * MIN, parent_id = ID.openai }, { openai[1], openai[2] }),
    doc({ id = ID.huge, name = "huge", agent_name = "code-agent", updated_at = NOW - 30 * MIN },
      { { role = "tool", tool_call_id = "call_x", content = table.concat(huge, "\n") } }),
    doc({ id = ID.esc, name = "esc", agent_name = "code-agent", updated_at = NOW - 40 * MIN },
      { { role = "user", content = "red \27[31malert\27[0m bell\7 end" } }),
    doc({ id = ID.odd, updated_at = NOW - 50 * MIN }, { 42, "bare string", { no_role = true } }),
    doc({ id = ID.tie1, name = "tie", agent_name = "bot", updated_at = NOW - 60 * MIN }, { "one" }),
    doc({ id = ID.tie2, name = "tie", agent_name = "bot", updated_at = NOW - 60 * MIN }, { "two" }),
  }
end

-- A new SQLite file holding the sessions above; its path.
local function fixture_store()
  local path = cmd.path("fixture.db")
  local mgr = agentsession.sqlite(path)
  for _, d in ipairs(fixture_docs()) do mgr:import(d) end
  mgr:close()
  return path
end

local server
local function redis()
  if not server then server = rs.start() end
  return server
end
local prefixes = 0
-- (a generous wait for each reply: the command runs under the sanitizers and valgrind too,
-- on a machine other suites may share)
local function redis_uri()
  prefixes = prefixes + 1
  return redis():url(0, "cli" .. prefixes .. ":") .. "&timeout_ms=30000"
end

------------------------------------------------------------------------ the specs

describe("agentsession command", function()
  local store

  before_each(function() store = fixture_store() end)

  describe("usage", function()
    it("--help lists every command, and each command has its --help, all exiting 0", function()
      local r = ok(run({ "--help" }))
      assert.truthy(r.out:find("^Usage: agentsession"), r.out)
      for _, name in ipairs(COMMANDS) do
        assert.truthy(r.out:find("\n   " .. name .. " ", 1, true), name)
        local h = ok(run({ name, "--help" }))
        assert.truthy(h.out:find("^Usage: agentsession " .. name), h.out)
        assert.are.equal("", h.err)
      end
      assert.truthy(ok(run({ "-h" })).out:find("$AGENTSESSION_STORE", 1, true))
      assert.are.equal("agentsession " .. agentsession.VERSION .. "\n", ok(run({ "--version" })).out)
    end)

    it("exits 2 with one line for a missing command, an unknown command, option or value", function()
      assert_error(run({}), 2, "usage", "command")
      assert_error(run({ "--store", store, "frobnicate" }), 2, "usage", "unknown command 'frobnicate'")
      assert_error(run({ "--store", store, "list", "--bogus" }), 2, "usage", "unknown option '%-%-bogus'")
      assert_error(run({ "--store", store, "list", "--limit", "x" }), 2, "usage", "agentsession list %-%-help")
      assert_error(run({ "--store", store, "list", "--limit", "-1" }), 2, "usage")
      assert_error(run({ "--store", store, "show" }), 2, "usage", "missing argument")
      assert_error(run({ "--store", store, "rewind", ID.openai, "1.5" }), 2, "usage")
      assert_error(run({ "--store", store, "copy" }), 2, "usage", "%-%-to")
      assert_error(run({ "--store", store, "tag", ID.openai }), 2, "usage")
      assert_error(run({ "completion", "tcsh" }), 2, "usage")
    end)

    it("completion prints a script for bash, zsh and fish that knows every command", function()
      for _, shell in ipairs({ "bash", "zsh", "fish" }) do
        local r = ok(run({ "completion", shell }))
        for _, name in ipairs(COMMANDS) do assert.truthy(r.out:find(name, 1, true), shell .. ": " .. name) end
        assert.truthy(r.out:find(shell == "fish" and "-l store" or "--store", 1, true), shell)
        if shell == "bash" then
          local file = cmd.write(cmd.path("completion.bash"), r.out)
          assert.is_true(cmd.sh("bash -n " .. q(file)), "bash -n rejects the script")
          assert.is_true(cmd.sh("bash -c " .. q(". " .. q(file) .. " && complete -p agentsession >/dev/null")))
        end
      end
    end)
  end)

  describe("stores and errors", function()
    it("needs a store: --store, else $AGENTSESSION_STORE, else a usage error", function()
      assert_error(run({ "list" }), 2, "usage", "AGENTSESSION_STORE")
      local r = ok(run({ "list", "--json" }, { env = { AGENTSESSION_STORE = store } }))
      assert.are.equal(8, #json_lines(r.out))
      local other = cmd.path("other.db")
      agentsession.sqlite(other):close()
      r = ok(run({ "--store", other, "list", "--json" }, { env = { AGENTSESSION_STORE = store } }))
      assert.are.equal("", r.out)
      ok(run({ "--store", "sqlite:" .. store, "show", ID.odd }))
    end)

    it("a missing SQLite file is not_found (3) and is not created by a command that reads", function()
      local missing = cmd.path("missing.db")
      for _, args in ipairs({ { "list" }, { "show", "x" }, { "dump" }, { "stats" }, { "check" }, { "rm", "x" },
                              { "copy", "--to", "memory:" } }) do
        local full = { "--store", missing }
        for _, a in ipairs(args) do full[#full + 1] = a end
        assert_error(run(full), 3, "not_found", "no store at")
        assert.is_nil(cmd.read(missing), "created by " .. args[1])
      end
      assert_error(run({ "--store", "sqlite:" .. missing, "list" }), 3, "not_found")
    end)

    it("a bad URI, a file that is not a store and a Redis server that is down give one line and exit 1", function()
      assert_error(run({ "--store", "foo://x", "list" }), 1, "invalid", "scheme")
      assert_error(run({ "--store", "redis://127.0.0.1:99999/0", "list" }), 1, "invalid")
      local text = cmd.write(cmd.path("not-a-store.db"), string.rep("not a database\n", 100))
      assert_error(run({ "--store", text, "list" }), 1, "storage")
      local srv = rs.start()
      local uri = srv:url(0, "down:")
      srv:stop()
      assert_error(run({ "--store", uri, "list" }), 1, "unavailable")
      assert_error(run({ "--store", store, "copy", "--to", uri }), 1, "unavailable")
    end)

    it("memory: is a store that starts empty", function()
      assert.are.equal("", ok(run({ "--store", "memory:", "list" })).out)
      local file = cmd.write(cmd.path("doc.json"), fixture_docs()[1])
      assert.are.equal(ID.claude .. "\n", ok(run({ "--store", "memory:", "import", file })).out)
    end)
  end)

  describe("list", function()
    it("is a table of short id, name, agent, tags, turns, tokens and last update, newest first", function()
      local r = ok(run({ "--store", store, "list" }))
      local lines = cmd.lines(r.out)
      assert.are.equal(9, #lines, r.out)
      assert.truthy(lines[1]:find("^ID +NAME +AGENT +TAGS +TURNS +TOKENS +UPDATED$"), lines[1])
      assert_minutes_ago(lines[2]:match("^0a1b2c3d%-0000%-4000%-8000%-00000000000b +claude%-chat"
        .. " +claude%-agent +production +4 +123k +(%d+) min ago$"), NOW - 3 * MIN - 20000, lines[2])
      assert_minutes_ago(lines[3]:match("^0a1b2c3d%-0000%-4000%-8000%-00000000000a +openai%-chat"
        .. " +code%-agent +production,team:core +6 +4200 +(%d+) min ago$"), NOW - 10 * MIN, lines[3])
      assert.truthy(lines[4]:find("^5f5f5f5f", 1), lines[4])
      -- every column starts where its heading does (all ASCII here)
      local col = lines[1]:find("AGENT", 1, true)
      for i = 2, #lines do
        local before = lines[i]:sub(col - 2, col - 1)
        assert.are.equal("  ", before, "row " .. i .. " is not aligned: " .. lines[i])
      end
    end)

    it("shortens ids to 8 characters when their starts differ there", function()
      local path = cmd.path("short.db")
      local mgr = agentsession.sqlite(path)
      local ids = {}
      for i = 1, 3 do ids[i] = mgr:save(agentsession.session{ name = "n" .. i }).id end
      mgr:close()
      local lines = cmd.lines(ok(run({ "--store", path, "list" })).out)
      for i = 2, 4 do
        local short = lines[i]:match("^(%S+)")
        assert.are.equal(8, #short)
        local found = false
        for _, id in ipairs(ids) do found = found or id:sub(1, 8) == short end
        assert.is_true(found, short)
        -- and the short id stands for the session
        assert.truthy(ok(run({ "--store", path, "show", short })).out:find(short, 1, true))
      end
    end)

    it("--json gives JSON Lines of metadata, in list order, that read back", function()
      local r = ok(run({ "--store", store, "list", "--json" }))
      local metas = json_lines(r.out)
      local mgr = agentsession.sqlite(store)
      local want = mgr:list()
      mgr:close()
      assert.are.same(ids_of(want), ids_of(metas))
      for i, m in ipairs(metas) do
        for _, f in ipairs({ "id", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens", "version",
                             "parent_id" }) do
          assert.are.equal(want[i][f], m[f], f)
        end
        assert.are.equal(table.concat(want[i].tags, ","), table.concat(m.tags, ","))
        assert.are.equal(want[i].name == nil and null or want[i].name, m.name)
      end
      assert.truthy(cmd.lines(r.out)[1]:find('^{"id":'), r.out)
    end)

    it("filters by --tag (twice: both), --agent and --parent; pages with --limit and --offset", function()
      local function listed(...)
        local args = { "--store", store, "list", "--json" }
        for _, a in ipairs({ ... }) do args[#args + 1] = a end
        return ids_of(json_lines(ok(run(args)).out))
      end
      assert.are.same({ ID.claude, ID.openai }, listed("--tag", "production"))
      assert.are.same({ ID.openai }, listed("--tag", "production", "--tag", "team:core"))
      assert.are.same({}, listed("--tag", "production", "--tag", "experiment"))
      assert.are.same({ ID.tie2, ID.tie1 }, listed("--agent", "bot"))
      assert.are.same({ ID.fork }, listed("--parent", ID.openai))
      assert.are.same({ ID.openai, ID.fork }, listed("--limit", "2", "--offset", "1"))
      assert.are.same({ ID.fork }, listed("--agent", "code-agent", "--limit", "1", "--offset", "1"))
      assert.are.same({}, listed("--limit", "0"))
      assert.are.same({ ID.tie1 }, listed("--offset", "7"))
      assert.are.equal(3, #cmd.lines(ok(run({ "--store", store, "list", "--limit", "2" })).out))
    end)

    it("prints nothing for an empty store", function()
      local path = cmd.path("empty.db")
      agentsession.sqlite(path):close()
      local r = ok(run({ "--store", path, "list" }))
      assert.are.equal("", r.out)
      assert.are.equal("", r.err)
    end)
  end)

  describe("show", function()
    it("lays out an OpenAI conversation: roles, times, text, tool calls and their results", function()
      local r = ok(run({ "--store", store, "show", ID.openai }))
      local out = r.out
      assert.truthy(out:find("^session   " .. ID.openai:gsub("%-", "%%-") .. "\n"), out)
      assert.truthy(out:find("\nname      openai%-chat\n"), out)
      assert.truthy(out:find("\ntags      production, team:core\n", 1, true), out)
      assert.truthy(out:find("\nturns     6   tokens 4200   version 1\n", 1, true), out)
      assert_minutes_ago(out:match("\nupdated   [%d%- :]+ %((%d+) min ago%)\n"), NOW - 10 * MIN, out)
      assert.truthy(out:find('\nstate     {"cwd":"/home/user"}\n', 1, true), out)
      assert.truthy(out:find("\n#1 system\n  You are code%-agent%.\n"), out)
      local unicode = UNICODE:gsub("%p", "%%%0")
      assert.truthy(out:find("\n#2 user  %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d\n  " .. unicode .. "\n"), out)
      assert.truthy(out:find("\n#3 assistant\n  \226\134\146 read_file [call_a]\n"
        .. "    {\"path\":\"src/main.c\",\"max_lines\":40}\n  \226\134\146 search_code [call_b]\n", 1, true), out)
      assert.truthy(out:find("\n#4 tool  result of call_a (read_file)\n  int main(void) {\n    return 0;\n  }\n",
        1, true), out)
      assert.truthy(out:find("\n#5 tool  result of call_b (search_code)\n  {", 1, true), out)
      assert.truthy(out:find("\n#6 assistant\n  Done: 2 files. \226\156\133\n", 1, true), out)
      assert.is_nil(out:find("\27", 1, true), "colour without a terminal")
    end)

    it("lays out Anthropic blocks: thinking, text, tool_use, and a tool_result holding a nested call", function()
      local out = ok(run({ "--store", store, "show", ID.claude })).out
      assert.truthy(out:find("\n#1 user\n  Summarise the repo\n", 1, true), out)
      assert.truthy(out:find("\n#2 assistant\n  (thinking)\n    Let me look at the tree first.\n"
        .. "  I will list the files.\n  \226\134\146 list_directory [toolu_1]\n    {", 1, true), out)
      assert.truthy(out:find('"depth":2', 1, true), out)
      assert.truthy(out:find("\n#3 user\n  \226\134\144 result of toolu_1 (list_directory)\n    main.c\n    util.c\n"
        .. "    \226\134\146 inner_tool [toolu_nested]\n      {\"deep\":{\"deeper\":{\"value\":1}}}\n", 1, true), out)
      assert.truthy(out:find("\nturns     4   tokens 123456", 1, true), out)
    end)

    it("folds a huge message, --full shows it whole, and --last N shows the last N", function()
      local folded = ok(run({ "--store", store, "show", ID.huge })).out
      assert.is_true(#folded < 4000, "folded output of " .. #folded .. " bytes")
      assert.truthy(folded:find("  line 00001 of a very long tool output\n", 1, true))
      assert.truthy(folded:find("[" .. (HUGE_LINES - 12) .. " more lines, ", 1, true), folded)
      assert.truthy(folded:find("; --full shows all]", 1, true), folded)
      local full = ok(run({ "--store", store, "show", ID.huge, "--full" })).out
      assert.truthy(full:find(string.format("  line %05d of a very long tool output\n", HUGE_LINES), 1, true))
      local last = ok(run({ "--store", store, "show", ID.openai, "--last", "2" })).out
      assert.truthy(last:find("\nmessages  5 to 6 of 6\n", 1, true), last)
      assert.is_nil(last:find("\n#4 ", 1, true))
      assert.truthy(last:find("\n#5 tool", 1, true))
      assert.truthy(last:find("\n#6 assistant", 1, true))
    end)

    it("shows any message as JSON, and never sends a stored control character to the terminal", function()
      local out = ok(run({ "--store", store, "show", ID.odd })).out
      assert.truthy(out:find("\n#1\n  42\n\n#2\n  \"bare string\"\n\n#3\n", 1, true), out)
      assert.truthy(out:find('{"no_role":true}', 1, true), out)
      out = ok(run({ "--store", store, "show", ID.esc })).out
      assert.is_nil(out:find("[\1-\8\11-\31]"), out)
      assert.truthy(out:find("red ^[[31malert^[[0m bell^G end", 1, true), out)
    end)

    it("--json prints the export document; with --last, those messages and a window", function()
      local mgr = agentsession.sqlite(store)
      local want = json.decode(mgr:export(ID.fork))
      mgr:close()
      local out = ok(run({ "--store", store, "show", ID.fork, "--json" })).out
      assert_same(want, json.decode(out), "show --json")
      assert.are.equal(ID.openai, json.decode(out).metadata.parent_id)
      local w = json.decode(ok(run({ "--store", store, "show", ID.openai, "--json", "--last", "1" })).out)
      assert.are.equal(1, #w.messages)
      assert.are.equal("Done: 2 files. \226\156\133", w.messages[1].content)
      assert.are.same({ first = 6, total = 6 }, w.window)
      assert.are.equal("openai-chat", w.metadata.name)
    end)

    it("an unknown id is not_found (3); the start of one id stands for it; of several, not_found", function()
      assert_error(run({ "--store", store, "show", "nope-nope" }), 3, "not_found", "nope%-nope")
      assert.truthy(ok(run({ "--store", store, "show", "5f5f5f" })).out:find(ID.fork, 1, true))
      assert_error(run({ "--store", store, "show", "0a1b2c3d" }), 3, "not_found", "2 start with it")
      assert_error(run({ "--store", store, "show", "5f5" }), 3, "not_found")
    end)

    it("a damaged session is one line of storage (1)", function()
      local driver = require("luasql.sqlite3")
      local env = driver.sqlite3()
      local conn = assert(env:connect(store))
      assert(conn:execute("UPDATE messages SET body = '{\"a\":' WHERE slot = "
        .. "(SELECT rid FROM sessions WHERE id = '" .. ID.openai .. "') * 4294967296 + 1"))
      conn:close()
      env:close()
      assert_error(run({ "--store", store, "show", ID.openai }), 1, "storage")
      assert_error(run({ "--store", store, "export", ID.openai }), 1, "storage")
    end)
  end)

  describe("export and import", function()
    it("export writes the document to standard output or -o FILE (0600), import stores it and prints its id",
      function()
      local out = ok(run({ "--store", store, "export", ID.claude })).out
      local file = cmd.path("claude.json")
      ok(run({ "--store", store, "export", ID.claude, "-o", file }))
      assert.are.equal(out, cmd.read(file))
      local mode = assert(io.popen("stat -c %a " .. q(file))):read("*l")
      assert.are.equal("600", mode)
      local target = cmd.path("target.db")
      assert.are.equal(ID.claude .. "\n", ok(run({ "--store", target, "import", file })).out)
      local again = ok(run({ "--store", target, "import", "-", "--replace" }, { stdin = out }))
      assert.are.equal(ID.claude .. "\n", again.out)
      local docs = contents(target)
      assert_same(json.decode(out), docs[ID.claude], "imported")
    end)

    it("import: an existing id is conflict (4) unless --replace; bad JSON is invalid (1); a missing file io (1)",
      function()
      local file = cmd.write(cmd.path("doc.json"), fixture_docs()[2])
      assert_error(run({ "--store", store, "import", file }), 4, "conflict", ID.openai:gsub("%-", "%%-"))
      ok(run({ "--store", store, "import", file, "--replace" }))
      local bad = cmd.write(cmd.path("bad.json"), '{"metadata":')
      assert_error(run({ "--store", store, "import", bad }), 1, "invalid")
      assert_error(run({ "--store", store, "import", cmd.path("absent.json") }), 1, "io", "cannot read")
      assert_error(run({ "--store", store, "export", ID.openai, "-o", cmd.path("no/such/dir.json") }), 1, "io")
      assert_error(run({ "--store", store, "export", "nope-nope" }), 3, "not_found")
    end)
  end)

  describe("changes to one session", function()
    it("fork prints the new id (--name, --at); rewind, tag, untag and rename change the session", function()
      local r = ok(run({ "--store", store, "fork", ID.openai, "--name", "branch", "--at", "3" }))
      local new = r.out:match("^(%S+)\n$")
      assert.truthy(new, r.out)
      local mgr = agentsession.sqlite(store)
      local s = mgr:resume(new)
      assert.are.equal("branch", s.metadata.name)
      assert.are.equal(ID.openai, s.metadata.parent_id)
      assert.are.equal(3, #s.messages)
      local plain = ok(run({ "--store", store, "fork", ID.openai })).out:match("^(%S+)\n$")
      assert.are.equal("openai-chat (fork)", mgr:resume(plain).metadata.name)
      ok(run({ "--store", store, "rewind", ID.openai, "2" }))
      assert.are.equal(2, #mgr:resume(ID.openai).messages)
      assert.are.equal("production\nteam:core\nreviewed\nnew\n",
        ok(run({ "--store", store, "tag", ID.openai, "reviewed", "new", "production" })).out)
      assert.are.equal("team:core\nnew\n",
        ok(run({ "--store", store, "untag", ID.openai, "reviewed", "production" })).out)
      assert.are.equal("", ok(run({ "--store", store, "rename", ID.openai, "renamed \226\156\147" })).out)
      assert.are.equal("renamed \226\156\147", mgr:resume(ID.openai).metadata.name)
      mgr:close()
    end)

    it("each is not_found (3) for an unknown id and changes nothing", function()
      local before = contents(store)
      for _, args in ipairs({ { "fork", "nope-nope" }, { "rewind", "nope-nope", "1" }, { "tag", "nope-nope", "t" },
                              { "untag", "nope-nope", "t" }, { "rename", "nope-nope", "n" } }) do
        local full = { "--store", store }
        for _, a in ipairs(args) do full[#full + 1] = a end
        assert_error(run(full), 3, "not_found", "nope%-nope")
      end
      assert_same(before, contents(store), "the store")
    end)
  end)

  describe("rm", function()
    it("deletes without asking when standard input is not a terminal; an unknown id is reported (3)", function()
      local r = run({ "--store", store, "rm", ID.odd, "nope-nope", ID.tie1 })
      assert_error(r, 3, "not_found", "nope%-nope")
      local _, order = contents(store)
      assert.are.equal(6, #order)
      for _, id in ipairs(order) do assert.is_true(id ~= ID.odd and id ~= ID.tie1) end
      ok(run({ "--store", store, "rm", ID.tie2, "--yes" }))
      assert.are.equal(5, #select(2, contents(store)))
    end)

    it("asks first on a terminal: anything but yes deletes nothing (1); y deletes; --yes does not ask", function()
      local r = run_tty({ "--store", store, "rm", ID.odd, ID.tie1 }, { input = "n\n" })
      assert.are.equal(1, r.status, r.out)
      assert.truthy(r.out:find("Delete these 2 sessions? [y/N] ", 1, true), r.out)
      assert.truthy(r.out:find("  " .. ID.tie1 .. "  \"tie\"  1 turn, updated 1 h ago", 1, true), r.out)
      assert.truthy(r.out:find("agentsession: cancelled: nothing deleted", 1, true), r.out)
      assert.are.equal(8, #select(2, contents(store)))
      r = run_tty({ "--store", store, "rm", ID.odd }, { input = "" })
      assert.are.equal(1, r.status, r.out)
      r = run_tty({ "--store", store, "rm", ID.odd }, { input = "y\n" })
      assert.are.equal(0, r.status, r.out)
      assert.truthy(r.out:find("Delete this session? [y/N] ", 1, true), r.out)
      assert.are.equal(7, #select(2, contents(store)))
      r = run_tty({ "--store", store, "rm", ID.tie1, "--yes" })
      assert.are.equal(0, r.status, r.out)
      assert.is_nil(r.out:find("Delete", 1, true), r.out)
      assert.are.equal(6, #select(2, contents(store)))
    end)
  end)

  describe("search", function()
    it("is a table of short id, name, the message that matched, update and text, newest first", function()
      local r = ok(run({ "--store", store, "search", "FILES" }))
      local lines = cmd.lines(r.out)
      assert.are.equal(3, #lines, r.out)
      assert.truthy(lines[1]:find("^ID%s+NAME%s+AT%s+UPDATED%s+TEXT$"), lines[1])
      assert_minutes_ago(lines[2]:match("^0a1b2c3d%s+claude%-chat%s+#4%s+(%d+) min ago%s+The repo has 2 files%."),
        NOW - 3 * MIN - 20000, lines[2])
      assert_minutes_ago(lines[3]:match("^0a1b2c3d%s+openai%-chat%s+#6%s+(%d+) min ago%s+Done: 2 files%."),
        NOW - 10 * MIN, lines[3])
      -- a name matches as message 0, shown as "name"; nothing found prints nothing
      r = ok(run({ "--store", store, "search", "huge" }))
      assert.truthy(cmd.lines(r.out)[2]:find("^9e9e9e9e%s+huge%s+name%s"), r.out)
      assert.are.equal("", ok(run({ "--store", store, "search", "nowhere" })).out)
      -- a stored control character never reaches the terminal
      r = ok(run({ "--store", store, "search", "red bell" }))
      assert.truthy(r.out:find("red ^[[31malert^[[0m bell^G end", 1, true), r.out)
      assert.is_nil(r.out:find("\27", 1, true), r.out)
    end)

    it("--json gives { metadata, index, snippet } lines; --limit and the filters choose", function()
      local hits = json_lines(ok(run({ "--store", store, "search", "caf\195\169 fichiers", "--json" })).out)
      assert.are.same({ ID.openai, ID.fork }, { hits[1].metadata.id, hits[2].metadata.id })
      assert.are.same({ 2, 2 }, { hits[1].index, hits[2].index })
      assert.are.equal(UNICODE, hits[1].snippet:gsub("\nuser$", ""):gsub("^user\n", ""))
      assert.are.equal(2, #hits)
      assert.are.equal(1, hits[1].metadata.version)
      local function found(...)
        local out = {}
        for i, h in ipairs(json_lines(ok(run({ "--store", store, "search", ... })).out)) do out[i] = h.metadata.id end
        return out
      end
      assert.are.same({ ID.openai, ID.fork }, found('"code agent"', "--json"))
      assert.are.same({ ID.openai }, found("code", "--json", "--limit", "1"))
      assert.are.same({ ID.openai }, found("code", "--json", "--tag", "production"))
      assert.are.same({ ID.fork }, found("code", "--json", "--parent", ID.openai))
      assert.are.same({}, found("code", "--json", "--agent", "bot"))
      assert.are.same({ ID.tie2 }, found("two", "--json", "--agent", "bot"))
      assert_error(run({ "--store", store, "search", " - " }), 1, "invalid", "query: has no word")
      assert_error(run({ "--store", store, "search" }), 2, "usage")
      assert_error(run({ "--store", store, "search", "x", "--limit", "many" }), 2, "usage")
    end)
  end)

  describe("prune", function()
    local OLD = { ID.esc, ID.odd, ID.tie1, ID.tie2 } -- updated more than 35 minutes ago
    -- 35 minutes before the fixture's times, to the minute: the clock moves on while the file
    -- runs (for minutes under the sanitizers), so the cases that need OLD exactly say --before
    -- and --older-than is asked only what stays true however long that takes
    local CUT = os.date("!%Y-%m-%dT%H:%MZ", math.floor((NOW - 35 * MIN) / 1000))

    local function sorted(t)
      table.sort(t)
      return t
    end

    it("--dry-run prints what --older-than or --before would delete, and deletes nothing", function()
      local r = ok(run({ "--store", store, "prune", "--before", CUT, "--dry-run" }))
      assert.are.same(sorted({ ID.esc, ID.odd, ID.tie1, ID.tie2 }), sorted(cmd.lines(r.out)))
      assert.are.equal(8, #select(2, contents(store)))
      r = ok(run({ "--store", store, "prune", "--older-than", "55m", "--agent", "bot", "--dry-run" }))
      assert.are.same(sorted({ ID.tie1, ID.tie2 }), sorted(cmd.lines(r.out)))
      r = ok(run({ "--store", store, "prune", "--older-than", "2h", "--dry-run" }))
      assert.are.same({}, cmd.lines(r.out))
      local day = os.date("!%Y-%m-%d", math.floor(NOW / 1000) + 2 * 86400)
      r = ok(run({ "--store", store, "prune", "--before", day .. "T00:00Z", "--keep-tag", "production", "--dry-run" }))
      assert.are.same(sorted({ ID.fork, ID.huge, ID.esc, ID.odd, ID.tie1, ID.tie2 }), sorted(cmd.lines(r.out)))
      r = ok(run({ "--store", store, "prune", "--before", "2001-09-09", "--dry-run" }))
      assert.are.equal("", r.out)
    end)

    it("deletes without asking when standard input is not a terminal, printing the ids", function()
      local r = ok(run({ "--store", store, "prune", "--older-than", "35m", "--agent", "bot" }))
      assert.are.same(sorted({ ID.tie1, ID.tie2 }), sorted(cmd.lines(r.out)))
      r = ok(run({ "--store", store, "prune", "--older-than", "0s", "--keep-tag", "production",
        "--tag", "experiment" }))
      assert.are.same({ ID.fork }, cmd.lines(r.out))
      local _, order = contents(store)
      assert.are.same({ ID.claude, ID.openai, ID.huge, ID.esc, ID.odd }, order)
      assert.are.same({}, json_lines(ok(run({ "--store", store, "search", "two", "--json" })).out))
      ok(run({ "--store", store, "prune", "--before", CUT, "--yes" }))
      assert.are.equal(3, #select(2, contents(store)))
    end)

    it("needs one of --before and --older-than (2), and refuses a date or duration it cannot read (2)", function()
      assert_error(run({ "--store", store, "prune" }), 2, "usage", "%-%-before DATE or %-%-older%-than DURATION")
      assert_error(run({ "--store", store, "prune", "--before", "2024-01-01", "--older-than", "1d" }), 2, "usage")
      for _, bad in ipairs({ "yesterday", "2024-13-01", "2023-02-29", "2024-01-01T25:00", "2024-01-01T10:00+5" }) do
        assert_error(run({ "--store", store, "prune", "--before", bad }), 2, "usage", "%-%-before")
      end
      for _, bad in ipairs({ "30", "3x", "d", "1d 2h", "" }) do
        assert_error(run({ "--store", store, "prune", "--older-than", bad }), 2, "usage", "%-%-older%-than")
      end
      assert_error(run({ "--store", store, "prune", "--older-than", "1d", "--keep-tag", "" }), 1, "invalid",
        "keep_tag")
      assert.are.equal(8, #select(2, contents(store)))
    end)

    it("asks first on a terminal: anything but yes deletes nothing (1); y deletes, with progress", function()
      local r = run_tty({ "--store", store, "prune", "--before", CUT }, { input = "n\n" })
      assert.are.equal(1, r.status, r.out)
      assert.truthy(r.out:find("Delete these 4 sessions, last updated before ", 1, true), r.out)
      assert.truthy(r.out:find("  " .. ID.odd, 1, true), r.out)
      assert.truthy(r.out:find("agentsession: cancelled: nothing deleted", 1, true), r.out)
      assert.are.equal(8, #select(2, contents(store)))
      r = run_tty({ "--store", store, "prune", "--older-than", "35m", "--agent", "bot" }, { input = "y\n" })
      assert.are.equal(0, r.status, r.out)
      assert.truthy(r.out:find("prune: 2/2 sessions", 1, true), r.out)
      for _, id in ipairs({ ID.tie1, ID.tie2 }) do assert.truthy(r.out:find(id, 1, true), r.out) end
      assert.are.equal(6, #select(2, contents(store)))
      r = run_tty({ "--store", store, "prune", "--before", CUT, "--yes" })
      assert.are.equal(0, r.status, r.out)
      assert.is_nil(r.out:find("Delete", 1, true), r.out)
      assert.are.same(4, #select(2, contents(store)))
      for _, id in ipairs(OLD) do assert.is_nil(select(1, contents(store))[id]) end
    end)
  end)

  describe("dump and restore", function()
    it("dump | restore into an empty store gives the same sessions, listed in the same order", function()
      local dump = ok(run({ "--store", store, "dump" })).out
      assert.are.equal(8, #cmd.lines(dump))
      for i, d in ipairs(json_lines(dump)) do assert.is_table(d.metadata, "line " .. i) end
      local target = cmd.path("restored.db")
      local r = ok(run({ "--store", target, "restore", "-" }, { stdin = dump }))
      assert.are.equal("8 sessions restored, 0 skipped (their ids exist), 0 failed\n", r.out)
      assert.are.equal("", r.err)
      assert_same_stores(store, target)
      -- a fork's document carries its parent
      assert.truthy(dump:find('"parent_id":"' .. ID.openai .. '"', 1, true))
    end)

    it("dump -o FILE writes the same lines, oldest first; filters choose the sessions", function()
      local file = cmd.path("dump.jsonl")
      ok(run({ "--store", store, "dump", "-o", file }))
      local docs = json_lines(cmd.read(file))
      assert.are.equal(8, #docs)
      local mgr = agentsession.sqlite(store)
      local newest_first = ids_of(mgr:list())
      mgr:close()
      for i, d in ipairs(docs) do assert.are.equal(newest_first[#newest_first + 1 - i], d.metadata.id) end
      local tagged = json_lines(ok(run({ "--store", store, "dump", "--tag", "production" })).out)
      assert.are.same({ ID.openai, ID.claude }, { tagged[1].metadata.id, tagged[2].metadata.id })
      assert.are.equal(1, #json_lines(ok(run({ "--store", store, "dump", "--parent", ID.openai })).out))
      assert.are.equal(2, #json_lines(ok(run({ "--store", store, "dump", "--agent", "bot" })).out))
    end)

    it("restore run twice skips and reports every existing id, and --replace overwrites them", function()
      local file = cmd.path("dump.jsonl")
      ok(run({ "--store", store, "dump", "-o", file }))
      local target = redis_uri()
      ok(run({ "--store", target, "restore", file }))
      local r = ok(run({ "--store", target, "restore", file }))
      assert.are.equal("0 sessions restored, 8 skipped (their ids exist), 0 failed\n", r.out)
      local reported = cmd.lines(r.err)
      assert.are.equal(8, #reported, r.err)
      for _, line in ipairs(reported) do
        assert.truthy(line:find('^agentsession: conflict: session ".+" exists: skipped '
          .. '%(%-%-replace overwrites it%)$'), line)
      end
      assert_same_stores(store, target)
      r = ok(run({ "--store", target, "restore", file, "--replace" }))
      assert.are.equal("8 sessions restored, 0 skipped (their ids exist), 0 failed\n", r.out)
      assert_same_stores(store, target)
    end)

    it("restore reports a bad line by its number, stores the others, and exits 1", function()
      local lines = fixture_docs()
      local text = lines[1] .. "\n\n{not json}\n" .. lines[2] .. "\n"
      local target = cmd.path("partial.db")
      local r = run({ "--store", target, "restore", "-" }, { stdin = text })
      assert_error(r, 1, "invalid", "^agentsession: invalid: line 3: ")
      assert.are.equal("2 sessions restored, 0 skipped (their ids exist), 1 failed\n", r.out)
      assert_error(run({ "--store", target, "restore", cmd.path("absent.jsonl") }), 1, "io")
    end)

    it("dump reports a damaged session by id, writes the others and exits 1; check finds it", function()
      local driver = require("luasql.sqlite3")
      local env = driver.sqlite3()
      local conn = assert(env:connect(store))
      assert(conn:execute("UPDATE messages SET body = '{\"a\":' WHERE slot = "
        .. "(SELECT rid FROM sessions WHERE id = '" .. ID.claude .. "') * 4294967296 + 1"))
      conn:close()
      env:close()
      local r = run({ "--store", store, "dump" })
      assert_error(r, 1, "storage", 'session "' .. ID.claude:gsub("%-", "%%-") .. '": ')
      assert.are.equal(7, #json_lines(r.out))
      r = run({ "--store", store, "check" })
      assert_error(r, 1, "storage", 'session "' .. ID.claude:gsub("%-", "%%-") .. '": .*' .. store:gsub("%p", "%%%0"))
      assert.are.equal("8 sessions read, 1 damaged\n", r.out)
    end)

    it("check of a sound store reads every session and exits 0", function()
      assert.are.equal("8 sessions read, 0 damaged\n", ok(run({ "--store", store, "check" })).out)
      local uri = redis_uri()
      ok(run({ "--store", store, "copy", "--to", uri }))
      assert.are.equal("8 sessions read, 0 damaged\n", ok(run({ "--store", uri, "check" })).out)
      assert.are.equal("0 sessions read, 0 damaged\n", ok(run({ "--store", redis_uri(), "check" })).out)
    end)
  end)

  describe("copy", function()
    it("SQLite -> Redis -> SQLite keeps ids, lineage, tags, names, counts, times and order", function()
      local middle, back = redis_uri(), cmd.path("back.db")
      local r = ok(run({ "--store", store, "copy", "--to", middle }))
      assert.are.equal("8 sessions copied, 0 skipped (their ids exist in the target), 0 failed\n", r.out)
      ok(run({ "--store", middle, "copy", "--to", "sqlite:" .. back }))
      assert_same_stores(store, middle)
      assert_same_stores(store, back)
      local docs = contents(back)
      assert.are.equal(ID.openai, docs[ID.fork].metadata.parent_id)
      assert.are.equal(NOW - 10 * MIN, docs[ID.openai].metadata.updated_at)
      assert.are.equal(NOW - 3600000, docs[ID.openai].metadata.created_at)
    end)

    it("copies only what the filters match; run again, it skips and reports what is there", function()
      local target = redis_uri()
      ok(run({ "--store", store, "copy", "--to", target, "--tag", "production" }))
      assert.are.same({ ID.claude, ID.openai }, select(2, contents(target)))
      local r = ok(run({ "--store", store, "copy", "--to", target }))
      assert.are.equal("6 sessions copied, 2 skipped (their ids exist in the target), 0 failed\n", r.out)
      assert.are.equal(2, #cmd.lines(r.err))
      assert.truthy(r.err:find('session "' .. ID.openai .. '" exists in the target: skipped', 1, true), r.err)
      assert_same_stores(store, target)
      assert_error(run({ "--store", store, "copy", "--to", store }), 2, "usage")
    end)

    it("a copy killed midway, run again, completes without duplicates", function()
      local source = cmd.path("many.db")
      local mgr = agentsession.sqlite(source)
      for i = 1, 400 do
        mgr:save(agentsession.session{ name = "s" .. i, tags = { "t" .. i % 3 }, messages = { { role = "user", content =
          string.rep("x", 2000) .. i } } })
      end
      mgr:close()
      local target = redis_uri()
      local pidfile = cmd.path("copy.pid")
      os.execute("cd " .. q(cmd.tmpdir()) .. " && (env -u AGENTSESSION_STORE " .. q(cmd.command) .. " --store "
        .. q(source) .. " copy --to " .. q(target) .. " >/dev/null 2>&1 & echo $! >" .. q(pidfile) .. ")")
      local pid = cmd.read(pidfile):match("%d+")
      -- running: neither gone nor a zombie (the process that reaps it may not be quick)
      local function running()
        local stat = cmd.read("/proc/" .. pid .. "/stat")
        local state = stat and stat:match("^%d+ %b() (%a)")
        return state ~= nil and state ~= "Z" and state ~= "X"
      end
      local dst = agentsession.open(target)
      local polls = 0
      while #dst:list({ limit = 1 }) == 0 and running() and polls < 2000 do
        os.execute("sleep 0.01")
        polls = polls + 1
      end
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      polls = 0
      while running() and polls < 2000 do
        os.execute("sleep 0.01")
        polls = polls + 1
      end
      assert.is_false(running(), "the copy is still running after kill -9")
      local copied = #dst:list()
      local r = ok(run({ "--store", source, "copy", "--to", target }))
      local n, skipped = r.out:match("^(%d+) sessions? copied, (%d+) skipped")
      assert.are.equal(400, tonumber(n) + tonumber(skipped), r.out)
      assert.are.equal(copied, tonumber(skipped), r.out)
      assert.are.equal(400, #dst:list())
      dst:close()
      assert_same_stores(source, target)
    end)
  end)

  describe("stats", function()
    it("shows the kind, where, the number of sessions and the size; --json reads back", function()
      local out = ok(run({ "--store", store, "stats" })).out
      local where = store:gsub("%p", "%%%0")
      assert.truthy(out:find("^store     sqlite\nlocation  " .. where .. "\nsessions  8\nsize      "), out)
      assert.truthy(out:find("bytes: the file and its %-wal%)\n"), out)
      assert_minutes_ago(out:match("\nnewest    [%d%- :]+ %((%d+) min ago%)\n"), NOW - 3 * MIN - 20000, out)
      assert.truthy(out:find("\noldest    [%d%- :]+ %(1 h ago%)\n"), out)
      local s = json.decode(ok(run({ "--store", store, "stats", "--json" })).out)
      assert.are.equal("sqlite", s.store)
      assert.are.equal(8, s.sessions)
      assert.is_true(s.bytes > 2000000)
      assert.are.equal(NOW - 3 * MIN - 20000, s.newest)
      assert.are.equal(NOW - 60 * MIN, s.oldest)
      local srv = rs.start({ password = "s3cret" })
      local uri = srv:url(2, "st:")
      ok(run({ "--store", store, "copy", "--to", uri }))
      local r = ok(run({ "--store", uri, "stats", "--json" }))
      s = json.decode(r.out)
      assert.are.equal("redis", s.store)
      assert.are.equal(8, s.sessions)
      assert.is_nil(s.location:find("s3cret", 1, true), s.location)
      local bytes = 0
      for _, line in ipairs(cmd.lines(ok(run({ "--store", uri, "dump" })).out)) do bytes = bytes + #line + 1 end
      assert.are.equal(bytes, s.bytes)
      assert.truthy(ok(run({ "--store", "memory:", "stats" })).out:find("^store     memory\n"))
    end)
  end)

  describe("on a terminal", function()
    it("show colours each role, never with NO_COLOR, never when standard output is not a terminal", function()
      local r = run_tty({ "--store", store, "show", ID.openai })
      assert.are.equal(0, r.status, r.out)
      assert.truthy(r.out:find("\27[1;35m#1 system\27[0m", 1, true), r.out)
      assert.truthy(r.out:find("\27[1;32m#2 user\27[0m", 1, true), r.out)
      assert.truthy(r.out:find("\27[1;36m#3 assistant\27[0m", 1, true), r.out)
      assert.truthy(r.out:find("\27[1;33m#4 tool\27[0m", 1, true), r.out)
      r = run_tty({ "--store", store, "show", ID.openai }, { env = { NO_COLOR = "1" } })
      assert.are.equal(0, r.status, r.out)
      assert.truthy(r.out:find("#2 user", 1, true))
      assert.is_nil(r.out:find("\27", 1, true), r.out)
      r = run_tty({ "--store", store, "show", ID.openai, "--json" })
      assert.is_nil(r.out:find("\27", 1, true), r.out)
    end)

    it("dump, restore, copy and check show progress on standard error, only there", function()
      local file = cmd.path("dump.jsonl")
      local r = run_tty({ "--store", store, "dump", "-o", file })
      assert.are.equal(0, r.status, r.out)
      assert.truthy(r.out:find("dump: 8/8 sessions", 1, true), r.out)
      assert.truthy(r.out:find("\r", 1, true))
      assert.are.equal(8, #cmd.lines(cmd.read(file)))
      r = run_tty({ "--store", cmd.path("p.db"), "restore", file })
      assert.truthy(r.out:find("\rrestore: 1 session", 1, true), r.out)
      r = run_tty({ "--store", store, "copy", "--to", cmd.path("c.db") })
      assert.truthy(r.out:find("copy: 8/8 sessions", 1, true), r.out)
      r = run_tty({ "--store", store, "check" })
      assert.truthy(r.out:find("check: 8/8 sessions", 1, true), r.out)
      -- not a terminal: nothing but the summary
      r = ok(run({ "--store", store, "check" }))
      assert.are.equal("", r.err)
      r = ok(run({ "--store", store, "dump", "-o", cmd.path("quiet.jsonl") }))
      assert.are.equal("", r.err)
      assert.are.equal("", r.out)
    end)
  end)
end)

------------------------------------------------------------------------ memory

describe("agentsession dump on 20,000 sessions", function()
  -- Two stores of about the same size in bytes, so that SQLite's page cache (bounded, 2 MiB
  -- by default) fills the same in both: 20,000 small sessions, and 200 sessions a hundred
  -- times larger. What differs is the number of sessions, which memory must not follow.
  local function build(path, count, size)
    local mgr = agentsession.sqlite(path)
    local body = string.rep("x", size)
    for i = 1, count do
      mgr:save(agentsession.session{ name = "s" .. i, tags = { "t" .. i % 7 }, agent_name = "a" .. i % 3,
        messages = { { role = "user", content = body .. i } } })
    end
    mgr:close()
  end

  -- The peak resident memory (VmHWM, KiB) of a process that runs dump on a store.
  local function dump_peak(path)
    local script = cmd.write(cmd.path("peak.lua"), [[
      local status = require("agentsession.cli").main({ "--store", arg[1], "dump", "-o", "/dev/null" })
      assert(status == 0, "dump failed")
      local f = assert(io.open("/proc/self/status", "rb"))
      local s = f:read("*a")
      f:close()
      io.write(s:match("VmHWM:%s*(%d+)"))
    ]])
    -- (under AddressSanitizer, freed memory waits in its quarantine and is never reused: the
    -- peak would follow everything the dump ever allocated, so the quarantine is turned off)
    local asan = "ASAN_OPTIONS=" .. q((os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=0")
    local p = assert(io.popen("env " .. asan .. " " .. interp.env(cmd.root) .. " " .. interp.lua .. " "
      .. q(script) .. " " .. q(path)))
    local out = p:read("*a")
    p:close()
    local kib = tonumber(out)
    assert(kib, "no VmHWM: " .. out)
    return kib
  end

  it("peaks at most 1.5 times the memory of a dump of 200", function()
    local many, few = cmd.path("20000.db"), cmd.path("200.db")
    build(many, 20000, 100)
    build(few, 200, 20000)
    local dumped = 0
    for _ in (ok(run({ "--store", many, "dump" })).out):gmatch("\n") do dumped = dumped + 1 end
    assert.are.equal(20000, dumped)
    local peak_many = math.min(dump_peak(many), dump_peak(many))
    local peak_few = math.min(dump_peak(few), dump_peak(few))
    assert.is_true(peak_many <= 1.5 * peak_few,
      string.format("dump of 20,000 peaks at %d KiB, of 200 at %d KiB", peak_many, peak_few))
  end)
end)

------------------------------------------------------------------------ the walk

describe("agentsession.cli.walk", function()
  local walk = require("agentsession.cli.walk")

  -- A manager whose list calls are seen by `between` before they run: writes made there land
  -- between two pages of a walk.
  local function watched(mgr, between)
    return { list = function(_, f) between(); return mgr:list(f) end }
  end

  local function new_store(n)
    local mgr = agentsession.memory()
    local ids = {}
    for i = 1, n do
      ids[i] = mgr:save(agentsession.session{ name = "s" .. i, tags = { i % 2 == 0 and "even" or "odd" } }).id
    end
    return mgr, ids
  end

  it("counts the sessions a filter matches", function()
    local mgr = new_store(37)
    assert.are.equal(37, walk.count(mgr, {}))
    assert.are.equal(18, walk.count(mgr, { tag = "even" }))
    assert.are.equal(0, walk.count(mgr, { tag = "none" }))
    assert.are.equal(0, walk.count(agentsession.memory(), {}))
  end)

  it("visits every session once, oldest first (reverse list order, ties too), and newest first", function()
    for _, n in ipairs({ 0, 1, 5, 7, 8, 23 }) do
      local mgr = new_store(n)
      local listed = ids_of(mgr:list())
      local seen = {}
      walk.oldest_first(mgr, {}, function(m) seen[#seen + 1] = m.id end, { page = 3 })
      local reversed = {}
      for i = #listed, 1, -1 do reversed[#reversed + 1] = listed[i] end
      assert.are.same(reversed, seen)
      seen = {}
      walk.newest_first(mgr, {}, function(m) seen[#seen + 1] = m.id end, { page = 3 })
      assert.are.same(listed, seen)
      seen = {}
      walk.newest_first(mgr, {}, function(m) seen[#seen + 1] = m.id end, { page = 3, offset = 2, limit = 4 })
      local want = {}
      for i = 3, math.min(6, n) do want[#want + 1] = listed[i] end
      assert.are.same(want, seen)
    end
  end)

  it("with sessions written, added and deleted between its pages, visits each at most once and "
    .. "every untouched one exactly once", function()
    local seed = 7
    local function random(k)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % k + 1
    end
    for round = 1, 30 do
      local mgr, ids = new_store(40)
      local touched = {}
      local function between()
        for _ = 1, random(3) do
          local what, id = random(3), ids[random(#ids)]
          if what == 1 then
            touched[id] = true
            pcall(mgr.tag, mgr, id, "x")
          elseif what == 2 then
            touched[id] = true
            pcall(mgr.delete, mgr, id)
          else
            local new = mgr:save(agentsession.session{ name = "new" }).id
            touched[new] = true
            ids[#ids + 1] = new
          end
        end
      end
      local seen = {}
      local order = {}
      for _, direction in ipairs({ "oldest_first", "newest_first" }) do
        seen, order = {}, {}
        local before = {}
        for _, m in ipairs(mgr:list()) do before[m.id] = true end
        walk[direction](watched(mgr, between), {}, function(m)
          assert.is_nil(seen[m.id], "round " .. round .. ", " .. direction .. ": " .. m.id .. " visited twice")
          seen[m.id] = true
          order[#order + 1] = m
        end, { page = 4 })
        for id in pairs(before) do
          if not touched[id] then
            assert.is_true(seen[id], "round " .. round .. ", " .. direction .. ": untouched " .. id .. " not visited")
          end
        end
        if direction == "oldest_first" then
          for i = 2, #order do assert.is_true(order[i - 1].updated_at <= order[i].updated_at) end
        end
      end
    end
  end)
end)

------------------------------------------------------------------------ installed by luarocks

describe("agentsession installed by luarocks", function()
  it("runs from the rock's tree: import, list, show, dump | restore, copy, check, rm", function()
    -- the checkout's files as they are now, in a scratch copy (luarocks make builds in place)
    local work = cmd.path("rock")
    -- (a tree that is not a checkout's top, as make sanitize's copy, is taken whole but build/)
    assert(cmd.sh("mkdir -p " .. q(work .. "/src") .. " && cd " .. q(cmd.root)
      .. " && if git rev-parse --is-inside-work-tree >/dev/null 2>&1"
      .. " && [ -z \"$(git rev-parse --show-prefix)\" ]; then"
      .. " git ls-files -z --cached --others --exclude-standard"
      .. " | tar --null --ignore-failed-read -T - -cf - 2>/dev/null;"
      .. " else tar --exclude=./build -cf - .; fi"
      .. " | tar -xf - -C " .. q(work .. "/src")))
    local lv = interp.jit and "5.1" or interp.lua:match("^lua(%d%.%d)$")
    -- (the headers named, since luarocks looks for them beside the interpreter it finds first
    -- on PATH, which make sanitize's wrapper is)
    cmd.write(work .. "/config.lua", 'variables = { CFLAGS = "-O0 -fPIC", LUA_INCDIR = "/usr/include/lua'
      .. lv .. '" }')
    local tree = work .. "/tree"
    local built = cmd.sh("cd " .. q(work .. "/src") .. " && LUAROCKS_CONFIG=" .. q(work .. "/config.lua")
      .. " TMPDIR=" .. q(work) .. " luarocks --lua-version=" .. lv .. " --tree=" .. q(tree)
      .. " make --deps-mode=none agentsession-scm-1.rockspec >" .. q(work .. "/make.log") .. " 2>&1")
    assert(built, "luarocks make failed:\n" .. tostring(cmd.read(work .. "/make.log")))
    local paths = assert(io.popen("luarocks --lua-version=" .. lv .. " --tree=" .. q(tree) .. " path")):read("*a")
    local env = {}
    for name, value in paths:gmatch("export (LUA_C?PATH[_%d]*)='([^']*)'") do env[name] = value end
    assert.truthy(env.LUA_PATH, paths)
    local installed = tree .. "/bin/agentsession"
    local function rock(args, o)
      o = o or {}
      o.command, o.env = installed, env
      return run(args, o)
    end
    local source = fixture_store()
    local file = cmd.write(cmd.path("doc.json"), fixture_docs()[1])
    local target = cmd.path("rock-target.db")
    assert.are.equal(ID.claude .. "\n", ok(rock({ "--store", target, "import", file })).out)
    assert.are.equal(1, #json_lines(ok(rock({ "--store", target, "list", "--json" })).out))
    assert.truthy(ok(rock({ "--store", source, "show", ID.claude })).out:find("list_directory", 1, true))
    local dump = ok(rock({ "--store", source, "dump" })).out
    local restored = cmd.path("rock-restored.db")
    ok(rock({ "--store", restored, "restore", "-" }, { stdin = dump }))
    assert_same_stores(source, restored)
    local middle = redis_uri()
    ok(rock({ "--store", source, "copy", "--to", middle }))
    assert_same_stores(source, middle)
    assert.are.equal("8 sessions read, 0 damaged\n", ok(rock({ "--store", middle, "check" })).out)
    ok(rock({ "--store", middle, "rm", ID.odd }))
    assert_error(rock({ "--store", middle, "show", ID.odd }), 3, "not_found")
  end)
end)

------------------------------------------------------------------------ the benchmark

describe("bench/cli_bench.lua", function()
  it("runs in its short mode (a Lua 5.4 script, as bench/conversation.lua is)", function()
    local out = cmd.path("bench.out")
    local status = cmd.path("bench.status")
    os.execute("cd " .. q(cmd.root) .. " && BENCH_QUICK=1 LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;'"
      .. " LUA_CPATH=" .. q(cmd.root .. "/build/?.so;;") .. " lua5.4 bench/cli_bench.lua >" .. q(out)
      .. " 2>&1; echo $? >" .. q(status))
    local output = cmd.read(out)
    assert.are.equal("0", cmd.read(status):match("%d+"), output)
    for _, row in ipairs({ "dump of 2000 sessions", "peak memory, dump of 20 ", "copy of 200 sessions",
                           "dump to a file, then restore", "list %-%-limit 20 on 2000", "lua5.4 %-e" }) do
      assert.truthy(output:find("\n  " .. row), row .. " missing:\n" .. output)
    end
  end)
end)
