-- Inside Neovim, with examples/nvim on the runtimepath (the init file of
-- spec/20-nvim_spec.lua): one run of the plugin, named by AGENTSESSION_NVIM_STEP.
-- Projects: CHATLOG_A (it holds .git; the runs start in it or below it) and
-- CHATLOG_B (no marker). The runs are a1, b1, a2, a3, in that order, each in a
-- new Neovim. Reports "ok <check>" or "fail <check> <why>" for each check.
return function(report)
  local A, B = os.getenv("CHATLOG_A"), os.getenv("CHATLOG_B")

  local function same(name, expected, actual)
    if vim.deep_equal(expected, actual) then
      report("ok", name)
    else
      report("fail", name, vim.inspect(expected) .. " expected, got " .. vim.inspect(actual))
    end
  end

  -- What :Chat* commands say through vim.notify.
  local notes = {}
  vim.notify = function(msg) notes[#notes + 1] = msg end

  same("the plugin's commands are defined", 2, vim.fn.exists(":ChatSay"))
  local chatlog = require("chatlog")

  local function texts(messages)
    local out = {}
    for i, m in ipairs(messages) do out[i] = m.role .. ": " .. m.content end
    return out
  end
  local function names()
    local out = {}
    for i, c in ipairs(chatlog.chats()) do out[i] = c.name end
    return out
  end
  local function buffer_lines()
    return vim.api.nvim_buf_get_lines(chatlog.buffer(), 0, -1, false)
  end
  local function wait_for_messages(n)
    return vim.wait(10000, function() return chatlog.window(1).window.total >= n end, 10)
  end

  local steps = {}

  function steps.a1()
    same("project of a directory below .git", A, chatlog.project())
    same("a new project has no chat", {}, names())
    local ok, err = pcall(chatlog.window)
    same("window without a chat raises", { false, "chatlog: this project has no chat yet" }, { ok, err })
    chatlog.setup{ window = 3, reply = function(messages, done)
      local last = messages[#messages].content
      vim.defer_fn(function() done("heard " .. last .. " among " .. #messages) end, 20)
    end }
    vim.cmd("ChatNew first chat")
    same("ChatNew names the chat", { "first chat" }, names())
    vim.cmd("ChatSay hello")
    same("the reply arrives", true, wait_for_messages(2))
    chatlog.append("assistant", "from my own agent code")
    chatlog.append("user", "line one\nline two")
    vim.cmd("ChatSay how are you")
    same("the second reply arrives", true, wait_for_messages(6))
    same("the chat holds every message in order", {
      "user: hello", "assistant: heard hello among 1", "assistant: from my own agent code",
      "user: line one\nline two", "user: how are you", "assistant: heard how are you among 3",
    }, texts(chatlog.page(1, 100).messages))
    vim.cmd("ChatShow")
    same("ChatShow shows the last 3", {
      "# first chat (messages 4-6 of 6)", "user: line one", "  line two", "user: how are you",
      "assistant: heard how are you among 3",
    }, buffer_lines())
    vim.cmd("ChatOlder")
    same("ChatOlder shows the 3 before", {
      "# first chat (messages 1-3 of 6)", "user: hello", "assistant: heard hello among 1",
      "assistant: from my own agent code",
    }, buffer_lines())
    vim.cmd("ChatOlder")
    same("ChatOlder at the first message says so", "chatlog: this is the first message", notes[#notes])
    same("and leaves the buffer", "# first chat (messages 1-3 of 6)", buffer_lines()[1])
  end

  function steps.b1()
    same("project without a marker is the directory", B, chatlog.project())
    same("another project has no chat", {}, names())
    vim.cmd("ChatSay in project b")
    local chats = chatlog.chats()
    same("ChatSay starts a chat", 1, #chats)
    same("with a dated name", true, chats[1].name:match("^chat %d%d%d%d%-%d%d%-%d%d %d%d:%d%d$") ~= nil)
    same("without reply, only the user's message", { "user: in project b" }, texts(chatlog.window().messages))
  end

  function steps.a2()
    chatlog.setup{ window = 4 }
    same("project of the directory holding .git", A, chatlog.project())
    local chats = chatlog.chats()
    same("the chat survived the restart", { "first chat" }, names())
    same("with its six messages", 6, chats[1].turn_count)
    local w = chatlog.window()
    same("window: the last 4", { "assistant: from my own agent code", "user: line one\nline two",
      "user: how are you", "assistant: heard how are you among 3" }, texts(w.messages))
    same("window: where it starts", { 3, 6 }, { w.window.first, w.window.total })
    same("page(2, 2)", { "assistant: heard hello among 1", "assistant: from my own agent code" },
      texts(chatlog.page(2, 2).messages))
    same("window(1)", { "assistant: heard how are you among 3" }, texts(chatlog.window(1).messages))
    local first = chats[1].id
    vim.cmd("ChatNew second")
    vim.cmd("ChatSay x")
    same("the newest chat lists first", { "second", "first chat" }, names())
    vim.cmd("ChatOpen " .. first:sub(1, 8))
    same("ChatOpen makes a chat current", first, chatlog.current())
    same("and shows it", "# first chat (messages 3-6 of 6)", buffer_lines()[1])
    vim.cmd("ChatDelete")
    same("ChatDelete without ! deletes nothing", 2, #chatlog.chats())
    same("and says how", true, notes[#notes]:find(":ChatDelete! " .. first:sub(1, 8), 1, true) ~= nil)
    vim.cmd("ChatDelete!")
    same("ChatDelete! deletes the current chat", { "second" }, names())
    same("the latest chat becomes current", chatlog.chats()[1].id, chatlog.current())
    vim.cmd("ChatRename second, renamed")
    same("ChatRename", { "second, renamed" }, names())
    vim.cmd("ChatOpen " .. first:sub(1, 8))
    same("a deleted chat cannot be opened", "chatlog: no chat of this project starts with " .. first:sub(1, 8),
      notes[#notes])
  end

  function steps.a3()
    same("after a restart, the deletion and the rename hold", { "second, renamed" }, names())
    same("and the messages", { "user: x" }, texts(chatlog.window().messages))
    vim.cmd("cd " .. vim.fn.fnameescape(B))
    same("changing directory changes project", B, chatlog.project())
    same("the other project's chat", { "user: in project b" }, texts(chatlog.window().messages))
    vim.cmd("ChatShow")
    vim.api.nvim_win_close(vim.fn.bufwinid(chatlog.buffer()), true)
    chatlog.append("assistant", "while the chat is closed")
    same("an append leaves a closed chat buffer closed", -1, vim.fn.bufwinid(chatlog.buffer()))
  end

  local step = os.getenv("AGENTSESSION_NVIM_STEP")
  assert(steps[step], "no step named " .. tostring(step))()
end
