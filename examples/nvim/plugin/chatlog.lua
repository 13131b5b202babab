-- The commands of chatlog (lua/chatlog/init.lua). The module, and with it
-- agentsession, loads on the first command.
if vim.g.loaded_chatlog then return end
vim.g.loaded_chatlog = true

local function chatlog()
  return require("chatlog")
end

-- A command running fn(opts); an error becomes a message, not a traceback.
local function command(name, fn, opts)
  vim.api.nvim_create_user_command(name, function(o)
    local ok, err = pcall(fn, o)
    if not ok then vim.notify(tostring(err), vim.log.levels.ERROR) end
  end, opts)
end

local function complete_ids(lead)
  local ids = {}
  for _, c in ipairs(chatlog().chats()) do
    if c.id:sub(1, #lead) == lead then ids[#ids + 1] = c.id end
  end
  return ids
end

command("ChatSay", function(o) chatlog().say(o.args) end,
  { nargs = "+", desc = "chatlog: append a message of yours to the project's chat" })
command("ChatShow", function(o) chatlog().show(tonumber(o.args)) end,
  { nargs = "?", desc = "chatlog: show the last [N] messages" })
command("ChatOlder", function()
  if chatlog().older() == false then vim.notify("chatlog: this is the first message") end
end, { nargs = 0, desc = "chatlog: show the messages before those shown" })
command("ChatNew", function(o) chatlog().new(o.args ~= "" and o.args or nil) chatlog().show() end,
  { nargs = "?", desc = "chatlog: start a new chat in this project" })
command("ChatOpen", function(o) chatlog().open(o.args) chatlog().show() end,
  { nargs = 1, complete = complete_ids, desc = "chatlog: make the chat with this id current" })
command("ChatRename", function(o) chatlog().rename(o.args) end,
  { nargs = "+", desc = "chatlog: rename the current chat" })
command("ChatDelete", function(o)
  local m = chatlog()
  local chat = o.args ~= "" and m.find(o.args) or m.current() and m.find(m.current())
  if chat == nil then error("chatlog: this project has no chat yet", 0) end
  if not o.bang then
    error(string.format("chatlog: :ChatDelete! %s deletes %q and its %d messages", chat.id:sub(1, 8),
      chat.name or chat.id, chat.turn_count), 0)
  end
  m.delete(chat.id)
end, { nargs = "?", bang = true, complete = complete_ids, desc = "chatlog: delete a chat" })
command("ChatList", function()
  local m = chatlog()
  local chats, now = m.chats(), m.current()
  if #chats == 0 then vim.notify("chatlog: this project has no chat yet") end
  for _, c in ipairs(chats) do
    vim.api.nvim_echo({ { string.format("%s %s  %-24s %4d messages  %s", c.id == now and "*" or " ",
      c.id:sub(1, 8), c.name or "", c.turn_count, os.date("%Y-%m-%d %H:%M", math.floor(c.updated_at / 1000))) } },
      true, {})
  end
end, { nargs = 0, desc = "chatlog: list the project's chats, the current one starred" })

vim.api.nvim_create_autocmd("VimLeavePre", {
  desc = "chatlog: close its store",
  callback = function()
    if package.loaded.chatlog then package.loaded.chatlog.close() end
  end,
})
