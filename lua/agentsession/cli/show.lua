--- A session as a transcript a person can follow: who spoke, when, what was said, which tools
-- were called with what, and what they returned. Reads the message shapes of the OpenAI chat
-- format (`content` as text or parts, `tool_calls`, role "tool" with `tool_call_id`) and of
-- the Anthropic messages format (`content` as blocks: text, thinking, tool_use, tool_result);
-- anything else is shown as JSON. Long texts are folded unless `full`.
local agentsession = require("agentsession")
local text = require("agentsession.cli.text")

local json, null = agentsession.json, agentsession.null

local M = {}

-- A text block is kept to these many lines and bytes unless `full`.
M.FOLD_LINES, M.FOLD_BYTES = 12, 1500
-- The state in the header: a shorter fold.
M.STATE_LINES, M.STATE_BYTES = 3, 300

local ROLE_COLOURS = {
  system = "35", developer = "35", user = "32", assistant = "36", tool = "33", ["function"] = "33",
}
local RIGHT, LEFT = "\226\134\146", "\226\134\144" -- → ←

-- Fields where messages commonly carry their time.
local TIME_FIELDS = { "timestamp", "created_at", "time", "ts" }

local function message_time(m)
  for _, k in ipairs(TIME_FIELDS) do
    local v = rawget(m, k)
    if type(v) == "number" then
      if v > 1e11 then return text.date(v) end -- milliseconds
      if v > 1e8 then return text.date(v * 1000) end -- seconds
    elseif type(v) == "string" and v ~= "" then
      return text.one_line(text.cut(v, 40))
    end
  end
  return nil
end

local function encode(v)
  local ok, s = pcall(json.encode, v)
  if ok then return s end
  return tostring(v)
end

-- What a transcript writes, with or without colour.
local function new_writer(write, opts)
  local w = {}
  local function paint(code, s)
    if opts.colour then return "\27[" .. code .. "m" .. s .. "\27[0m" end
    return s
  end
  function w.line(s) write(s, "\n") end
  function w.bold(s) return paint("1", s) end
  function w.dim(s) return paint("2", s) end
  function w.role(role, s) return paint("1;" .. (ROLE_COLOURS[role] or "39"), s) end
  -- A block of text under `indent` spaces, folded unless opts.full.
  function w.body(s, indent, dim)
    local note
    if not opts.full then s, note = text.fold(s, M.FOLD_LINES, M.FOLD_BYTES) end
    local pad = string.rep(" ", indent)
    for line in (text.printable(s) .. "\n"):gmatch("(.-)\r?\n") do
      w.line(pad .. (dim and w.dim(line) or line))
    end
    if note then w.line(pad .. w.dim("[" .. note .. "; --full shows all]")) end
  end
  return w
end

local render_value

-- One Anthropic content block, or one OpenAI content part.
local function render_block(w, b, indent, calls)
  local kind = rawget(b, "type")
  if kind == "text" or kind == "input_text" or kind == "output_text" then
    w.body(type(b.text) == "string" and b.text or encode(b.text), indent)
  elseif kind == "thinking" or kind == "redacted_thinking" then
    w.line(string.rep(" ", indent) .. w.dim("(thinking)"))
    w.body(type(b.thinking) == "string" and b.thinking or "[redacted]", indent + 2, true)
  elseif kind == "tool_use" or kind == "server_tool_use" then
    local name = type(b.name) == "string" and b.name or "?"
    if type(b.id) == "string" then calls[b.id] = name end
    w.line(string.rep(" ", indent) .. RIGHT .. " " .. w.bold(text.one_line(name))
      .. (type(b.id) == "string" and w.dim(" [" .. text.one_line(b.id) .. "]") or ""))
    if b.input ~= nil then w.body(encode(b.input), indent + 2) end
  elseif kind == "tool_result" then
    local id = type(b.tool_use_id) == "string" and b.tool_use_id or "?"
    local label = LEFT .. " result of " .. text.one_line(id)
    if calls[id] then label = label .. " (" .. text.one_line(calls[id]) .. ")" end
    if b.is_error == true then label = label .. ", an error" end
    w.line(string.rep(" ", indent) .. w.bold(label))
    render_value(w, b.content, indent + 2, calls)
  elseif kind == "image" or kind == "image_url" or kind == "input_image" or kind == "document" then
    w.line(string.rep(" ", indent) .. w.dim("[" .. kind .. "]"))
  else
    w.body(encode(b), indent)
  end
end

-- A content value: text, parts or blocks, or any JSON value.
function render_value(w, v, indent, calls)
  if v == nil or v == null then return end
  if type(v) == "string" then
    if v ~= "" then w.body(v, indent) end
  elseif type(v) == "table" and #v > 0 and type(v[1]) == "table" and type(rawget(v[1], "type")) == "string" then
    for _, b in ipairs(v) do
      if type(b) == "table" and type(rawget(b, "type")) == "string" then
        render_block(w, b, indent, calls)
      else
        w.body(encode(b), indent)
      end
    end
  else
    w.body(encode(v), indent)
  end
end

-- OpenAI's tool_calls of an assistant message (and the older function_call).
local function render_calls(w, m, indent, calls)
  local list = rawget(m, "tool_calls")
  if type(list) ~= "table" then list = {} end
  local legacy = rawget(m, "function_call")
  if type(legacy) == "table" then list = { { ["function"] = legacy } } end
  for _, c in ipairs(list) do
    local f = type(c) == "table" and c["function"]
    if type(f) == "table" then
      local name = type(f.name) == "string" and f.name or "?"
      if type(c.id) == "string" then calls[c.id] = name end
      w.line(string.rep(" ", indent) .. RIGHT .. " " .. w.bold(text.one_line(name))
        .. (type(c.id) == "string" and w.dim(" [" .. text.one_line(c.id) .. "]") or ""))
      local args = f.arguments
      if args ~= nil and args ~= null and args ~= "" then
        w.body(type(args) == "string" and args or encode(args), indent + 2)
      end
    else
      w.body(encode(c), indent)
    end
  end
end

local function render_message(w, m, index, calls)
  if type(m) ~= "table" or type(rawget(m, "role")) ~= "string" then
    w.line(w.bold("#" .. index))
    w.body(encode(m), 2)
    return
  end
  local role = m.role
  local head = { w.role(role, "#" .. index .. " " .. text.one_line(role)) }
  local when = message_time(m)
  if when then head[#head + 1] = w.dim(when) end
  local call_id = rawget(m, "tool_call_id")
  if type(call_id) == "string" then
    local name = calls[call_id] or (type(m.name) == "string" and m.name) or nil
    local label = "result of " .. text.one_line(call_id)
    if name then label = label .. " (" .. text.one_line(name) .. ")" end
    head[#head + 1] = w.dim(label)
  elseif type(m.name) == "string" then
    head[#head + 1] = w.dim(text.one_line(m.name))
  end
  w.line(table.concat(head, "  "))
  render_value(w, m.content, 2, calls)
  render_calls(w, m, 2, calls)
end

--- Writes the transcript of a session (whole, or a window of it).
-- @tparam table session as resume returns it
-- @tparam function write called with the strings to print
-- @tparam table opts `colour` (ANSI colours by role), `full` (no folding), `now` (Unix ms)
function M.transcript(session, write, opts)
  local w = new_writer(write, opts)
  local meta = session.metadata
  local function field(name, value)
    w.line(w.bold(text.pad(name, 10)) .. value)
  end
  field("session", text.one_line(meta.id))
  if meta.name then field("name", text.one_line(meta.name)) end
  field("agent", meta.agent_name ~= "" and text.one_line(meta.agent_name) or w.dim("(none)"))
  if #meta.tags > 0 then field("tags", text.one_line(table.concat(meta.tags, ", "))) end
  if meta.parent_id then field("parent", text.one_line(meta.parent_id)) end
  field("created", text.date(meta.created_at))
  field("updated", text.date(meta.updated_at) .. " (" .. text.ago(meta.updated_at, opts.now) .. ")")
  field("turns", string.format("%d   tokens %d   version %d", meta.turn_count, meta.total_tokens, meta.version))
  local first, total = 1, #session.messages
  if session.window then
    first, total = session.window.first, session.window.total
    field("messages", string.format("%d to %d of %d", first, first + #session.messages - 1, total))
  else
    field("messages", string.format("%d", total))
  end
  local state, note = encode(session.state), nil
  if not opts.full then state, note = text.fold(state, M.STATE_LINES, M.STATE_BYTES) end
  field("state", text.one_line(state) .. (note and " " .. w.dim("[" .. note .. "]") or ""))
  local calls = {}
  for i, m in ipairs(session.messages) do
    w.line("")
    render_message(w, m, first + i - 1, calls)
  end
end

return M
