-- What the SQLite store's specs (spec/08-sqlite_*_spec.lua) share: each test's
-- temporary directory, the managers it opens and the children it starts (all
-- closed, killed or removed after it), and the assertions on store files and
-- on the output of the child processes (spec/helpers/sqlite_child.lua).
--
--   local sqlite_case = require("helpers.sqlite_case")
--   local dir, managers
--   before_each(function() dir, managers = sqlite_case.start() end)
--   after_each(sqlite_case.finish)
local agentsession = require("agentsession")
local assert = require("luassert")
local h = require("helpers.sqlite")

local M = {}

local dir          -- this test's temporary directory
local children     -- pids of the children started in the background
local managers     -- managers to close after the test

--- Starts a test: returns its new temporary directory and the array of
--- managers that finish() closes (open() adds to it; a test may too).
function M.start()
  dir = h.tmpdir()
  children, managers = {}, {}
  return dir, managers
end

--- Ends a test: closes its managers, kills its children, removes its directory.
function M.finish()
  for _, mgr in ipairs(managers) do pcall(mgr.close, mgr) end
  for _, pid in ipairs(children) do pcall(h.kill9, pid) end
  h.rmdir(dir)
end

function M.open(path, opts)
  local mgr = agentsession.sqlite(path, opts)
  managers[#managers + 1] = mgr
  return mgr
end

function M.spawn(args, name)
  local pid = h.spawn_child(args, dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".err")
  children[#children + 1] = pid
  return pid
end

function M.output_of(name)
  return (h.read(dir .. "/" .. name .. ".out") or "") .. (h.read(dir .. "/" .. name .. ".err") or "")
end

function M.wait_gone(pids, seconds, what)
  h.wait_until(function()
    for _, pid in ipairs(pids) do
      if h.alive(pid) then return false end
    end
    return true
  end, seconds, what)
end

-- The lines of a child's output, as { name = …, outcome = "ok" | "error", kind = …, message = … }.
function M.outcomes(output)
  local list = {}
  for line in output:gmatch("[^\n]+") do
    local name = line:match("^(.-) ok$")
    if name then
      list[#list + 1] = { name = name, outcome = "ok", line = line }
    else
      local n, kind, message = line:match("^(.-) error (%S+) (.*)$")
      if n then list[#list + 1] = { name = n, outcome = "error", kind = kind, message = message, line = line } end
    end
  end
  return list
end

-- A child's outcome line must be a storage error naming the path.
function M.assert_storage_line(o, path, context)
  assert.are.equal("error", o.outcome, context .. ": " .. o.name .. " worked, expected a storage error")
  assert.are.equal("storage", o.kind, context .. ": " .. o.line)
  assert.truthy(o.message:find(path, 1, true), context .. ": the message does not name " .. path .. ": " .. o.line)
end

-- The output of `probe` on a file the store must refuse: it ran to its end
-- (no crash), and either the constructor raised storage or every operation did.
function M.assert_refused(path, ok, output, context)
  assert.is_true(ok, context .. ": the probe did not end normally (crash?):\n" .. output)
  assert.truthy(output:find("\nEND\n", 1, true) or output:find("^END\n"), context .. ": no END (crash?):\n" .. output)
  local list = M.outcomes(output)
  assert.is_true(#list >= 1 and list[1].name == "sqlite", context .. ": unexpected output:\n" .. output)
  if list[1].outcome == "error" then
    M.assert_storage_line(list[1], path, context)
    assert.are.equal(1, #list, context)
  else
    assert.are.equal(6, #list, context .. ": not every operation ran:\n" .. output)
    for i = 2, #list do M.assert_storage_line(list[i], path, context) end
  end
end

function M.probe(path, opts)
  return h.run_child({ "probe", path }, opts)
end

function M.session(fields)
  return agentsession.session(fields)
end

function M.msgs(n, prefix)
  local list = agentsession.array()
  for i = 1, n do list[i] = { role = i % 2 == 1 and "user" or "assistant", content = (prefix or "m") .. i } end
  return list
end

function M.assert_sound(path, context)
  assert.are.equal("ok", h.integrity(path), context .. ": PRAGMA integrity_check")
  local problems = h.schema_problems(path)
  assert.are.same({}, problems, context .. ": " .. table.concat(problems, "; "))
  local fts = h.with_db(path, function(conn)
    if #h.rows(conn, "SELECT name FROM sqlite_master WHERE name = 'search'") == 0 then return "ok" end
    local done, err = conn:execute("INSERT INTO search (search, rank) VALUES ('integrity-check', 0)")
    return done and "ok" or tostring(err)
  end)
  assert.are.equal("ok", fts, context .. ": the search index's integrity-check")
end

--- The search index of the file agrees with its texts: each query finds the
--- sessions, and the messages, that a memory manager holding the same sessions
--- finds by reading them.
function M.assert_search_sound(path, queries, context)
  local mgr = agentsession.sqlite(path)
  local reference = agentsession.memory()
  local listed = mgr:list()
  -- imported oldest first: ties on updated_at go to the later write in both
  for i = #listed, 1, -1 do reference:import(mgr:export(listed[i].id)) end
  local function found(m, q)
    local out = {}
    for i, hit in ipairs(m:search(q, { limit = 1000000 })) do out[i] = hit.metadata.id .. "#" .. hit.index end
    return out
  end
  local results = {}
  for i, q in ipairs(queries) do results[i] = { found(reference, q), found(mgr, q) } end
  mgr:close()
  reference:close()
  for i, q in ipairs(queries) do
    assert.are.same(results[i][1], results[i][2], context .. ": search('" .. q .. "')")
  end
end

-- Every row of a store file (sessions, messages, tags, counter), to show that a call changed nothing.
function M.snapshot(path)
  return h.with_db(path, function(conn)
    return {
      sessions = h.rows(conn, "SELECT * FROM sessions ORDER BY rid"),
      messages = h.rows(conn, "SELECT slot, digest, body, typeof(body) AS type FROM messages ORDER BY slot"),
      tags = h.rows(conn, "SELECT * FROM tags ORDER BY rid, pos"),
      counter = h.rows(conn, "SELECT * FROM counter"),
    }
  end)
end

return M
