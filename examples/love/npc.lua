-- Mira, an NPC who remembers: her dialogue tree is fixed, and everything said
-- to her and by her is appended to one agentsession session, which outlives
-- the game. Plain Lua over a manager; main.lua gives it a window or a script.
local agentsession = require("agentsession")

local FAREWELL = "Farewell."

-- Each node: what Mira says, and the player's options (text, next node).
-- A node without options ends the conversation.
local TREE = {
  start = { "Hello, traveller. I am Mira, keeper of this well.", {
    { "Who are you?", "who" }, { "Is there any work?", "work" }, { FAREWELL, "bye" } } },
  who = { "I draw water for the village, and I remember every face.", {
    { "Is there any work?", "work" }, { FAREWELL, "bye" } } },
  work = { "Wolves took my bucket into the forest. Bring it back?", {
    { "I will.", "accept" }, { "Not today.", "bye" } } },
  accept = { "Thank you. The forest path starts behind the mill.", {
    { FAREWELL, "bye" } } },
  bye = { "Safe roads." },
}

local Npc = {}
Npc.__index = Npc

--- Mira, with her memory in session `id` of `mgr` (made on the first visit).
function Npc.meet(mgr, id)
  local ok, recent = pcall(mgr.resume, mgr, id, { last = 10 })
  if not ok then
    if not agentsession.is_error(recent, "not_found") then error(recent, 0) end
    mgr:save{ metadata = { id = id, name = "Mira", agent_name = "npc" }, state = { visits = 0 } }
    recent = mgr:resume(id, { last = 10 })
  end
  local self = setmetatable({ mgr = mgr, id = id, node = "start", visits = recent.state.visits + 1 }, Npc)
  self.line = TREE.start[1]
  if self.visits > 1 then
    self.line = string.format("Welcome back, traveller. This is your visit number %d.", self.visits)
    -- What the player said last, before leaving: a visit is at most ten messages.
    for i = #recent.messages, 1, -1 do
      local m = recent.messages[i]
      if m.role == "player" and m.content ~= FAREWELL then
        self.line = self.line .. string.format(" Last time you said: \"%s\"", m.content)
        break
      end
    end
  end
  self:record({ { role = "npc", content = self.line } })
  return self
end

-- Appends messages and the visit count in one write.
function Npc:record(messages)
  self.mgr:append(self.id, messages, { state = { visits = self.visits } })
end

--- The player's options now: an array of strings (empty when the talk is over).
function Npc:options()
  local out = {}
  for i, o in ipairs(TREE[self.node][2] or {}) do out[i] = o[1] end
  return out
end

--- The player picks option `i`; returns Mira's reply.
function Npc:choose(i)
  local option = (TREE[self.node][2] or {})[i]
  if option == nil then error("no option " .. tostring(i) .. " here", 2) end
  self.node = option[2]
  self.line = TREE[self.node][1]
  self:record({ { role = "player", content = option[1] }, { role = "npc", content = self.line } })
  return self.line
end

--- Whether the conversation is over.
function Npc:done()
  return #self:options() == 0
end

return Npc
