-- chatlog: a chat history per project, kept by agentsession in one SQLite file.
--
-- A project is the nearest directory above the current one that holds a
-- marker (".git" by default), or the current directory. Each chat is an
-- agentsession session tagged with its project; its messages are
-- { role = "user" | "assistant" | …, content = "text" }. chatlog stores and
-- shows messages; it talks to no model. Whatever produces the assistant's
-- messages is yours: either call `append` from your own code, or give
-- `setup{ reply = function(messages, done) … end }`, which :ChatSay calls
-- with the chat's recent messages and which calls `done(text)` (at once or
-- later, from any callback) to append the reply.
local agentsession = require("agentsession")

local M = {}

local config = {
  path = nil, -- the SQLite file; nil: stdpath("data") .. "/agentsession/chatlog.db"
  window = 20, -- messages shown at once, and handed to `reply`
  markers = { ".git" }, -- a directory holding one of these is a project's root
  reply = nil, -- function(messages, done) producing the assistant's reply
}
local OPTIONS = { path = "string", window = "number", markers = "table", reply = "function" }

local store -- the manager, opened on first use
local current = {} -- project root -> id of the chat in use
local view -- what the chat buffer shows: { id =, first = }
local buf -- the chat buffer

--- Sets options (see `config` above); unknown options are an error.
function M.setup(opts)
  for k, v in pairs(opts or {}) do
    if OPTIONS[k] == nil then error("chatlog.setup: unknown option " .. tostring(k), 2) end
    if type(v) ~= OPTIONS[k] then error("chatlog.setup: " .. k .. " must be a " .. OPTIONS[k], 2) end
    if k == "path" then M.close() end
    config[k] = v
  end
end

local function manager()
  if store == nil then
    local path = config.path or (vim.fn.stdpath("data") .. "/agentsession/chatlog.db")
    vim.fn.mkdir(vim.fn.fnamemodify(path, ":h"), "p", 448) -- 448 = 0700
    store = agentsession.sqlite(path)
  end
  return store
end

--- Closes the store (the plugin does so when Neovim exits).
function M.close()
  if store then store:close() end
  store = nil
end

--- The project root of `dir` (default: the current directory).
function M.project(dir)
  dir = vim.fn.fnamemodify(dir or vim.fn.getcwd(), ":p")
  if #dir > 1 then dir = dir:gsub("/$", "") end
  local d = dir
  while true do
    for _, marker in ipairs(config.markers) do
      if vim.loop.fs_stat(d .. "/" .. marker) then return d end
    end
    local parent = vim.fn.fnamemodify(d, ":h")
    if parent == d then return dir end
    d = parent
  end
end

-- The tag of a project's chats: readable when the path makes a valid tag
-- (at most 255 bytes of printable ASCII here), else a digest of the path.
local function project_tag(root)
  local tag = "project:" .. root
  if #tag > 255 or root:find("[%c\128-\255]") then tag = "project:sha256:" .. vim.fn.sha256(root) end
  return tag
end

--- The chats of the current project, most recently updated first (metadata tables).
function M.chats()
  return manager():list{ tag = project_tag(M.project()) }
end

--- Starts a new chat in the current project and makes it the current one.
function M.new(name)
  local root = M.project()
  local meta = manager():save(agentsession.session{
    name = name or os.date("chat %Y-%m-%d %H:%M"),
    tags = { project_tag(root) },
    agent_name = "chatlog",
  })
  current[root] = meta.id
  return meta
end

--- The id of the current chat: the one opened last in this Neovim, else the
--- project's most recently updated one; nil when the project has none.
function M.current()
  local root = M.project()
  if current[root] == nil then
    local latest = M.chats()[1]
    current[root] = latest and latest.id
  end
  return current[root]
end

local function chat_id(id)
  return id or M.current() or error("chatlog: this project has no chat yet", 0)
end

--- A window of the last `n` messages of a chat (default: the current one).
function M.window(n, id)
  return manager():resume(chat_id(id), { last = n or config.window })
end

--- A window of `count` messages from the `from`-th (1-based).
function M.page(from, count, id)
  return manager():resume(chat_id(id), { from = from, count = count })
end

-- Lines of one message: "role: text", later lines indented.
local function message_lines(m, lines)
  local text, role
  if type(m) == "table" and type(m.content) == "string" then
    role, text = tostring(m.role), m.content
  else
    role, text = "?", agentsession.json.encode(m)
  end
  local prefix = role .. ": "
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = prefix .. line
    prefix = "  "
  end
end

local function visible()
  return buf ~= nil and vim.api.nvim_buf_is_valid(buf) and vim.fn.bufwinid(buf) ~= -1
end

-- Puts the window `s` in the chat buffer, and the buffer in a window unless
-- it is in one.
local function render(s)
  local w, title = s.window, s.metadata.name or s.metadata.id
  local lines = { string.format("# %s (messages %d-%d of %d)", title, w.first, w.first + #s.messages - 1, w.total) }
  if #s.messages == 0 then lines[1] = "# " .. title .. " (no messages yet)" end
  for _, m in ipairs(s.messages) do message_lines(m, lines) end
  if buf == nil or not vim.api.nvim_buf_is_valid(buf) then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, "chatlog://chat")
  end
  vim.api.nvim_buf_set_option(buf, "modifiable", true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, "modifiable", false)
  if not visible() then
    vim.cmd("botright split")
    vim.api.nvim_win_set_buf(0, buf)
  end
  view = { id = s.metadata.id, first = w.first }
  return s
end

--- Shows the last `n` messages of the current chat in the chat buffer.
function M.show(n)
  return render(M.window(n))
end

--- Shows the messages before those shown (the last ones when the buffer
--- shows another chat or none); false when the first message is shown.
function M.older()
  if view == nil or view.id ~= M.current() then return M.show() end
  if view.first <= 1 then return false end
  local from = math.max(1, view.first - config.window)
  return render(M.page(from, view.first - from, view.id))
end

--- The chat buffer's number (nil before anything was shown).
function M.buffer()
  return buf
end

--- Appends one message to a chat (default: the current one, made when the
--- project has none); returns the chat's metadata. A chat buffer in view
--- that shows this chat moves to its last messages.
function M.append(role, content, id)
  vim.validate{ role = { role, "string" }, content = { content, "string" } }
  id = id or M.current() or M.new().id
  local meta = manager():append(id, { { role = role, content = content } })
  if view and view.id == id and visible() then render(M.window(config.window, id)) end
  return meta
end

--- Appends the user's `text` to the current chat, then hands the chat's
--- recent messages to `config.reply`, if any; its `done(text)` appends the
--- assistant's reply to that same chat.
function M.say(text)
  local meta = M.append("user", text)
  if config.reply then
    local id, answered = meta.id, false
    config.reply(M.window(config.window, id).messages, function(reply)
      if answered then error("chatlog: done called twice", 2) end
      answered = true
      if reply ~= nil then
        vim.schedule(function() M.append("assistant", reply, id) end)
      end
    end)
  end
  return meta
end

--- The metadata of the project's one chat whose id starts with `prefix`.
function M.find(prefix)
  local found
  for _, c in ipairs(M.chats()) do
    if c.id:sub(1, #prefix) == prefix then
      if found then error("chatlog: more than one chat starts with " .. prefix, 0) end
      found = c
    end
  end
  return found or error("chatlog: no chat of this project starts with " .. prefix, 0)
end

--- Makes the chat whose id starts with `prefix` the current one.
function M.open(prefix)
  local found = M.find(prefix)
  current[M.project()] = found.id
  return found
end

--- Renames a chat (default: the current one).
function M.rename(name, id)
  manager():rename(chat_id(id), name)
end

--- Deletes a chat (default: the current one) and every message of it.
function M.delete(id)
  id = chat_id(id)
  manager():delete(id)
  for root, c in pairs(current) do
    if c == id then current[root] = nil end
  end
  if view and view.id == id then
    view = nil
    if buf and vim.api.nvim_buf_is_valid(buf) then vim.api.nvim_buf_delete(buf, { force = true }) end
    buf = nil
  end
end

return M
