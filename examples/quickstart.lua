-- The walkthrough of "How to: Manage Agent Sessions", in Lua: create, save,
-- resume, list, fork, rewind, tag, rename and delete a session.
--
-- Run from the repository root with `make demo`.

local agentsession = require("agentsession")

local function show(label, value)
  print(string.format("%-8s %s", label, value))
end

local mgr = agentsession.memory()

-- Construct a new session and save it.
local session = agentsession.session{
  name = "my-task",
  tags = { "production" },
  agent_name = "code-agent",
  state = { cwd = "/home/user" },
}
session.messages = {
  { role = "user", content = "List the Lua files in this project." },
  { role = "assistant", content = agentsession.null,
    tool_calls = { { id = "call_1", type = "function",
                     ["function"] = { name = "glob", arguments = '{"pattern":"**/*.lua"}' } } } },
  { role = "tool", tool_call_id = "call_1", content = { files = { "init.lua", "quickstart.lua" }, count = 2 } },
  { role = "assistant", content = "There are 2 Lua files: init.lua and quickstart.lua." },
}
local id = session.metadata.id
local meta = mgr:save(session)
show("save", string.format("%s %q updated_at=%d", meta.id, meta.name, meta.updated_at))

-- Later, in the same or a new call, resume by id.
local loaded = mgr:resume(id)
show("resume", string.format("%d messages, cwd=%s, tool result count=%d (%s)",
  #loaded.messages, loaded.state.cwd, loaded.messages[3].content.count,
  math.type(loaded.messages[3].content.count)))

-- List sessions, most recently active first.
for _, s in ipairs(mgr:list()) do
  show("list", string.format("%s %q turns=%d", s.id, s.name, s.turn_count))
end

-- Fork: an independent copy under a new id; nil name gives "<name> (fork)".
local fork_meta = mgr:fork(id, "experiment-branch")
assert(fork_meta.id ~= id)
show("fork", string.format("%s %q parent=%s", fork_meta.id, fork_meta.name, fork_meta.parent_id))
show("fork", string.format("%q", mgr:fork(id).name))

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

-- Delete; a later resume raises a not_found error.
mgr:delete(id)
local ok, err = pcall(mgr.resume, mgr, id)
assert(not ok and agentsession.is_error(err, "not_found"))
show("delete", tostring(err))

mgr:close()
