-- Backends for agentsession.custom, in plain Lua, for the specs: each session
-- kept as JSON texts in a table (metadata, each message, the state and the
-- op_ids apart, so a value nested as deep as the codec allows still fits), so
-- nothing the wrapper hands over is shared.
-- new() gives the four required functions; new{ fast = true } adds every
-- optional one. backend.calls counts the calls of each function.
local agentsession = require("agentsession")
local json = agentsession.json

local M = {}

function M.new(opts)
  opts = opts or {}
  local data = {}
  local function encode(s)
    local msgs = {}
    for i, m in ipairs(s.messages) do msgs[i] = json.encode(m) end
    return { metadata = json.encode(s.metadata), messages = msgs, state = json.encode(s.state),
      op_ids = s.op_ids and json.encode(s.op_ids) }
  end
  -- The session of the texts t, with `n` messages from the `from`-th on (default:
  -- all); a part of the messages is told in `window`.
  local function decode(t, from, n)
    local total = #t.messages
    from = from or 1
    local last = math.min(total, from + (n or total) - 1)
    local msgs = agentsession.array()
    for i = from, last do msgs[#msgs + 1] = json.decode(t.messages[i]) end
    local s = { metadata = json.decode(t.metadata), messages = msgs, state = json.decode(t.state),
      op_ids = t.op_ids and json.decode(t.op_ids) }
    if from > 1 or last < total then s.window = { first = math.min(from, total + 1), total = total } end
    return s
  end
  local b = { calls = setmetatable({}, { __index = function() return 0 end }) }
  local function count(name) b.calls[name] = b.calls[name] + 1 end

  function b.load(id, hint)
    count("load")
    local text = data[id]
    if text == nil then return nil end
    if opts.fast and hint then -- only the messages asked for
      if hint.last then return decode(text, math.max(1, #text.messages - hint.last + 1)) end
      return decode(text, hint.from, hint.count)
    end
    return decode(text)
  end
  function b.store(s)
    count("store")
    data[s.metadata.id] = encode(s)
  end
  function b.remove(id)
    count("remove")
    local had = data[id] ~= nil
    data[id] = nil
    return had
  end
  function b.list()
    count("list")
    local out = {}
    for _, text in pairs(data) do out[#out + 1] = json.decode(text.metadata) end
    return out
  end

  if opts.fast then
    function b.query(filter)
      count("query")
      local out = {}
      for _, text in pairs(data) do
        local m = json.decode(text.metadata)
        local ok = (filter.agent_name == nil or m.agent_name == filter.agent_name)
          and (filter.parent_id == nil or m.parent_id == filter.parent_id)
        for _, t in ipairs(filter.tags or {}) do
          ok = ok and agentsession.has_tag(m, t)
        end
        if ok then out[#out + 1] = m end
      end
      return out
    end
    function b.update(metadata)
      count("update")
      local t = assert(data[metadata.id])
      t.metadata = json.encode(metadata)
    end
    function b.rewind(id, keep, metadata)
      count("rewind")
      local t = assert(data[id])
      for i = #t.messages, keep + 1, -1 do t.messages[i] = nil end
      t.metadata = json.encode(metadata)
    end
    function b.fork(source, metadata, n)
      count("fork")
      local t = assert(data[source])
      local msgs = {}
      for i = 1, n do msgs[i] = t.messages[i] end
      data[metadata.id] = { metadata = json.encode(metadata), messages = msgs, state = t.state }
    end
    function b.append(id, msgs, metadata)
      count("append")
      local t = assert(data[id])
      for _, m in ipairs(msgs) do t.messages[#t.messages + 1] = json.encode(m) end
      t.metadata = json.encode(metadata)
    end
    function b.append_op(id, msgs, metadata, op_ids)
      count("append_op")
      local t = assert(data[id])
      for _, m in ipairs(msgs) do t.messages[#t.messages + 1] = json.encode(m) end
      t.metadata = json.encode(metadata)
      t.op_ids = json.encode(op_ids)
    end
    -- The sessions whose stored JSON texts hold every word, in any case: a
    -- few more than match (a word inside another, in a key), never fewer.
    function b.search(words, filter)
      count("search")
      local out = {}
      for _, m in ipairs(b.query(filter)) do
        local t = data[m.id]
        local text = (t.metadata .. "\n" .. table.concat(t.messages, "\n")):lower()
        local all = true
        for _, w in ipairs(words) do all = all and text:find(w, 1, true) ~= nil end
        if all then out[#out + 1] = m end
      end
      b.calls.query = b.calls.query - 1
      return out
    end
    function b.prune(o)
      count("prune")
      local gone = {}
      for _, m in ipairs(b.query(o)) do
        if m.updated_at < o.before and not (o.keep_tag and agentsession.has_tag(m, o.keep_tag)) then
          data[m.id] = nil
          gone[#gone + 1] = m.id
        end
      end
      b.calls.query = b.calls.query - 1
      return gone
    end
    function b.close()
      count("close")
    end
  end
  b.data = data
  return b
end

return M
