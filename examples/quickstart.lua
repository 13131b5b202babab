-- The walkthrough of "How to: Manage Agent Sessions", in Lua, on a SQLite file:
-- create, save, resume, list, fork, rewind, tag, rename and delete sessions,
-- and the cheap way to keep a long conversation: append each turn, read back
-- only the recent messages, and save such a window without touching the rest.
--
-- The sessions outlive the script: run it twice and the second run resumes,
-- lists and forks what the first one left. The store is ./agentsession-demo.db,
-- or the one $AGENTSESSION_STORE names for agentsession.open: a path, or a URI
-- such as "redis://127.0.0.1:6379/0?prefix=demo:".
--
-- Run from the repository root with `make demo`.

local agentsession = require("agentsession")

local function show(label, value)
  print(string.format("%-8s %s", label, value))
end

local path = os.getenv("AGENTSESSION_STORE")
if path == nil or path == "" then path = "agentsession-demo.db" end
-- On Lua 5.4, `local mgr <close> = agentsession.open(path)` closes it at the end
-- of the scope; this walkthrough runs on every Lua, so it calls mgr:close() last.
local mgr = agentsession.open(path)
show("store", path)

-- What earlier runs left in the file: sessions survive the process.
local earlier = mgr:list{ tag = "quickstart" }
if #earlier == 0 then
  show("earlier", "none yet; run the quickstart again to resume this run's session")
else
  show("earlier", string.format("%d session(s) left by earlier runs", #earlier))
  for i = 1, math.min(#earlier, 3) do
    show("list", string.format("%s %q turns=%d tags=%s", earlier[i].id, earlier[i].name,
      earlier[i].turn_count, table.concat(earlier[i].tags, ",")))
  end
  local last = mgr:resume(earlier[1].id)
  show("resume", string.format("%q from an earlier run: %d messages, the first asks %q, cwd=%s",
    last.metadata.name, #last.messages, last.messages[1].content, last.state.cwd))
  local branch = mgr:fork(last.metadata.id, "follow-up of " .. last.metadata.name)
  show("fork", string.format("%s %q parent=%s", branch.id, branch.name, branch.parent_id))
end

-- Construct a new session and save it.
local session = agentsession.session{
  name = "my-task",
  tags = { "production", "quickstart" },
  agent_name = "code-agent",
  state = { cwd = "/home/user" },
}
session.messages = {
  { role = "user", content = "List the Lua files in this project." },
  { role = "assistant", content = agentsession.null,
    tool_calls = { { id = "call_1", type = "function",
                     ["function"] = { name = "glob", arguments = '{"pattern":"**/*.lua"}' } } } },
  { role = "tool", tool_call_id = "call_1", content = { files = { "init.lua", "quickstart.lua" }, count = 2 } },
}
local id = session.metadata.id
local meta = mgr:save(session)
show("save", string.format("%s %q updated_at=%d", meta.id, meta.name, meta.updated_at))

-- Later, in the same or a new process, resume by id.
local loaded = mgr:resume(id)
-- Integers stay integers (math.type on Lua 5.3 and 5.4; elsewhere numbers are
-- doubles, exact up to 2^53).
local count = loaded.messages[3].content.count
show("resume", string.format("%d messages, cwd=%s, tool result count=%d (%s)",
  #loaded.messages, loaded.state.cwd, count, math.type and math.type(count) or type(count)))

-- Each turn, append the new messages, the tokens they cost and the agent's new
-- state, in one atomic write: the history is never handed over again, so a
-- turn costs the same on the 10th message as on the 10,000th.
meta = mgr:append(id, {
  { role = "assistant", content = "There are 2 Lua files: init.lua and quickstart.lua." },
}, { tokens = 42, state = { cwd = "/home/user", files_seen = 2 } })
show("append", string.format("turn_count=%d total_tokens=%d version=%d", meta.turn_count,
  meta.total_tokens, meta.version))

-- A long conversation: read only the recent messages (a window), add the
-- reply, save. The stored messages before the window are kept as they are.
local recent = mgr:resume(id, { last = 2 })
show("window", string.format("messages %d..%d of %d, read at version %d", recent.window.first,
  recent.window.first + recent.window.count - 1, recent.window.total, recent.window.version))
recent.messages[#recent.messages + 1] = { role = "user", content = "Thanks!" }
recent.metadata.turn_count = recent.metadata.turn_count + 1 -- save keeps the counts it is given
meta = mgr:save(recent)
show("save", string.format("the window: now %d messages, version %d", #mgr:resume(id).messages,
  meta.version))

-- Two writers: expect_version turns "last writer wins" into a conflict that the
-- loser handles by its kind (here: read again and retry).
local stale = mgr:resume(id, { last = 0 })
mgr:tag(id, "busy") -- another writer gets in first
local ok, err = pcall(mgr.append, mgr, id, { { role = "user", content = "And the tests?" } },
  { expect_version = stale.metadata.version })
if not ok and agentsession.is_error(err, "conflict") then
  show("conflict", err.message)
  local fresh = mgr:resume(id, { last = 0 })
  mgr:append(id, { { role = "user", content = "And the tests?" } },
    { expect_version = fresh.metadata.version })
elseif not ok then
  error(err, 0)
end
mgr:untag(id, "busy")

-- List sessions, most recently active first.
for _, s in ipairs(mgr:list{ limit = 5 }) do
  show("list", string.format("%s %q turns=%d", s.id, s.name, s.turn_count))
end

-- Fork: an independent copy under a new id; nil name gives "<name> (fork)".
local fork_meta = mgr:fork(id, "experiment-branch")
assert(fork_meta.id ~= id)
show("fork", string.format("%s %q parent=%s", fork_meta.id, fork_meta.name, fork_meta.parent_id))
local named_fork = mgr:fork(id)
show("fork", string.format("%q", named_fork.name))

-- Rewind: keep only the first 3 messages.
local rewound = mgr:rewind(id, 3)
assert(#rewound.messages == 3)
show("rewind", string.format("%d messages, turn_count=%d", #rewound.messages, rewound.metadata.turn_count))

-- Tag without duplicates; existing tags are kept.
local tags = mgr:tag(id, { "reviewed", "archived", "production" })
show("tag", table.concat(tags, ", "))
show("list", string.format("%d session(s) tagged reviewed", #mgr:list{ tag = "reviewed" }))

-- Rename.
mgr:rename(id, "final-delivery")
show("rename", mgr:resume(id).metadata.name)

-- Delete the forks; a later resume raises a not_found error, which names the
-- line that made the call. The session itself stays in the file for the next run.
mgr:delete(fork_meta.id)
mgr:delete(named_fork.id)
ok, err = pcall(function() return mgr:resume(fork_meta.id) end)
assert(not ok and agentsession.is_error(err, "not_found"))
show("delete", tostring(err))

mgr:close()
