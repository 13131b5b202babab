-- bench/append_child.lua KIND WHERE N: times N appends of one message of about 1 KiB of text to
-- one session of a fresh store, after 100 untimed ones, and prints "NS <wall ns per append>".
-- KIND "sqlite": WHERE is the path of a new file; "redis": "PORT PREFIX". Run by
-- bench/index_bench.lua with the module of one build or another on LUA_CPATH.
local agentsession = require "agentsession"
local system = require "system"

local kind, where, n = arg[1], arg[2], tonumber(arg[3])

-- 64 messages of about 1 KiB: prose and code words of an agent's answer, none the same.
local WORDS = { "the", "parser", "returns", "a", "table", "of", "tokens", "when", "input", "is",
  "valid", "otherwise", "error", "with", "line", "and", "column", "we", "fixed", "quote", "handling",
  "in", "lexer.lua", "function", "local", "end", "test", "passes", "now", "after", "change", "to",
  "read_string", "escape", "sequence", "unicode", "buffer", "length", "check", "commit" }
local messages, seed = {}, 12345
for i = 1, 64 do
  local words, size = {}, 0
  while size < 1000 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    local w = WORDS[seed % #WORDS + 1]
    if seed % 11 == 0 then w = w .. (seed % 1000) end
    words[#words + 1] = w
    size = size + #w + 1
  end
  messages[i] = { { role = "assistant", content = table.concat(words, " ") .. " (" .. i .. ")" } }
end

local mgr
if kind == "sqlite" then
  mgr = agentsession.sqlite(where)
else
  local port, prefix = where:match("^(%d+) (%S+)$")
  mgr = agentsession.redis{ port = tonumber(port), prefix = prefix }
end
local id = mgr:save(agentsession.session{ name = "append bench" }).id
for i = 1, 100 do mgr:append(id, messages[i % 64 + 1]) end
local t0 = system.monotime()
for i = 1, n do mgr:append(id, messages[i % 64 + 1]) end
local t1 = system.monotime()
mgr:close()
print(string.format("NS %.1f", (t1 - t0) / n * 1e9))
