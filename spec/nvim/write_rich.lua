-- Run by lua5.4 with the 5.4 build: writes into the SQLite file arg[1] the
-- session of rich_values.lua and two sessions holding integers above 2^53 (a
-- message's value and the metadata's total_tokens), which a Lua without
-- integers reads as its big_integers option says. Prints "written".
local agentsession = require("agentsession")
local rich = dofile(arg[0]:gsub("[^/]*$", "") .. "rich_values.lua")(agentsession)

local mgr = agentsession.sqlite(arg[1])
local s = rich
local later = table.remove(s.messages)
mgr:save(s)
mgr:append(s.metadata.id, { later })
mgr:save{ metadata = { id = "big-message", agent_name = "" },
  messages = { "small", { n = 9007199254740993 } } }
mgr:save{ metadata = { id = "big-tokens", agent_name = "", total_tokens = 1152921504606846977 },
  messages = { "small" } }
mgr:close()
print("written")
