-- agentsession.conformance.rewind: the checks of rewind: keeping the first k messages and the
-- rest of the session.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local array_mt = agentsession.array_mt
local show, eq, truthy, expect_error_in = support.show, support.eq, support.truthy, support.expect_error_in
local messages, is_table, resume = support.messages, support.is_table, support.resume
local snapshot, unchanged, rewind_source = support.snapshot, support.unchanged, support.rewind_source

local checks, check = support.family()

check("rewind: rewind(id, 3) keeps the first 3 messages", function(mgr)
  local id = rewind_source(mgr)
  mgr:rewind(id, 3)
  local r = resume(mgr, id)
  eq({ messages(5)[1], messages(5)[2], messages(5)[3] }, r.messages, "messages")
  eq(3, r.metadata.turn_count, "turn_count")
end)

check("rewind: returns the rewound session, equal to a later resume", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 2)
  is_table(rewound, "rewind()'s result")
  is_table(rewound.metadata, "rewind().metadata")
  eq({ messages(5)[1], messages(5)[2] }, rewound.messages, "rewind().messages")
  eq(2, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  eq(resume(mgr, id), rewound, "rewind() vs resume()")
end)

check("rewind: past the end keeps every message", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 10)
  eq(messages(5), rewound.messages, "rewind().messages")
  eq(5, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  eq(messages(5), resume(mgr, id).messages, "resume().messages")
end)

check("rewind: to 0 keeps no message", function(mgr)
  local id = rewind_source(mgr)
  local rewound = mgr:rewind(id, 0)
  truthy(next(rewound.messages) == nil, "rewind().messages: expected none, got %s", show(rewound.messages))
  eq(0, rewound.metadata.turn_count, "rewind().metadata.turn_count")
  local r = resume(mgr, id)
  truthy(next(r.messages) == nil and getmetatable(r.messages) == array_mt,
    "resume().messages: expected [], got %s", show(r.messages))
  eq({ cwd = "/r", list = { 1 } }, r.state, "state")
end)

check("rewind: keeps state, tags, name, agent_name, total_tokens and created_at", function(mgr)
  local id = rewind_source(mgr)
  local before = resume(mgr, id)
  local r = mgr:rewind(id, 2)
  eq(before.state, r.state, "state")
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "total_tokens", "created_at" }) do
    eq(before.metadata[field], r.metadata[field], "metadata." .. field)
  end
end)

check("rewind: a negative index is invalid and changes nothing", function(mgr)
  local id = rewind_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rewind(id, -1)", "invalid", function() return mgr:rewind(id, -1) end)
  unchanged(mgr, before, "rewind(id, -1)")
end)

check("rewind: a fractional index is invalid and changes nothing", function(mgr)
  local id = rewind_source(mgr)
  local before = snapshot(mgr)
  expect_error_in("rewind(id, 1.5)", "invalid", function() return mgr:rewind(id, 1.5) end)
  unchanged(mgr, before, "rewind(id, 1.5)")
end)

check("rewind: an integral float index counts as that integer", function(mgr)
  local id = rewind_source(mgr)
  local r = mgr:rewind(id, 2.0)
  eq(2, #r.messages, "#rewind(id, 2.0).messages")
  eq(2, r.metadata.turn_count, "rewind(id, 2.0).metadata.turn_count")
end)

return checks
