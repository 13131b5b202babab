-- A small support agent, run by embed_lua.c: the host that embeds Lua gives
-- it `host.reply(text)` and the path of its store. Each turn is appended with
-- the agent's state; the agent then works on a window of its last lines.
-- luacheck: read globals host
local agentsession = require("agentsession")

local store = ...
local mgr <close> = agentsession.sqlite(store)
print("agentsession " .. agentsession.VERSION .. ", " .. mgr:stats().kind .. " store")

local meta = mgr:save(agentsession.session{
  name = "password help", agent_name = "support", tags = { "support" }, state = { step = 0 },
})

local questions = { "How do I reset my password?", "It says the link expired.", "Thanks!" }
for turn, question in ipairs(questions) do
  local answer = host.reply(question)
  meta = mgr:append(meta.id, {
    { role = "user", content = question },
    { role = "assistant", content = answer },
  }, { tokens = (#question + #answer) // 4, state = { step = turn } })
  print(("turn %d  user: %s\n        agent: %s"):format(turn, question, answer))
end
print(("%d messages, %d tokens, version %d"):format(meta.turn_count, meta.total_tokens, meta.version))

-- The agent reads its last two messages only, and rewrites its last answer.
local window = mgr:resume(meta.id, { last = 2 })
print(("window: messages %d-%d of %d, step %d"):format(window.window.first,
  window.window.first + #window.messages - 1, window.window.total, window.state.step))
window.messages[#window.messages].content = "Glad to help. Anything else?"
meta = mgr:save(window)

-- The same window again is stale: the store says so and keeps what it has.
local ok, err = pcall(mgr.save, mgr, window)
print(("saving a stale window: %s"):format(ok and "saved" or err.kind))

local whole = mgr:resume(meta.id)
print(("%d messages; the last: %s"):format(#whole.messages, whole.messages[#whole.messages].content))
mgr:delete(meta.id)
print("done")
