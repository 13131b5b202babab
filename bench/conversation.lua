-- bench/conversation.lua: a deterministic, realistic agent conversation for benchmarks.
--
--   local conversation = require "conversation"
--   local session = conversation.session{ null = agentsession.null }  -- { metadata, messages, state }
--   local messages = conversation.messages{ seed = 42, count = 120 }
--
-- The same seed always gives the same tables (and the same JSON strings inside them): the
-- generator uses its own PRNG and serialises embedded JSON strings with sorted keys, so neither
-- math.random nor Lua's per-process string hash seed changes the output.
--
-- Shapes follow the OpenAI / Anthropic chat formats an agent stores: a system prompt, user turns
-- (plain strings or arrays of content blocks), assistant turns with text and `tool_calls`
-- ({ id, type = "function", ["function"] = { name, arguments = <JSON text> } }) and token usage,
-- and tool results (role "tool") whose content is either a JSON text (file listings, search
-- results) or a nested table (integers, floats, booleans, null, short and long strings).
--
-- Only values that lua-cjson 2.1.0 also encodes faithfully are produced: no empty tables,
-- integers well below 2^53 (and below 10^14, cjson's 14 significant digits), floats with at most
-- three decimals, valid UTF-8.

local M = {}

M.DEFAULT_SEED = 20240917
M.DEFAULT_COUNT = 120

---------------------------------------------------------------------------------------------------
-- PRNG: 64-bit LCG (Knuth MMIX constants), high bits used. Deterministic across platforms and
-- Lua versions: the 64-bit state is kept as four 16-bit limbs (least significant first), whose
-- products and sums stay exact in a double, so Lua 5.1, 5.2 and LuaJIT draw the very numbers
-- Lua 5.3 and 5.4 do (and math.floor keeps them integers there).

local LIMB = 65536

-- The limbs of an integer 0 <= n < 2^53.
local function limbs(n)
  local t = {}
  for i = 1, 4 do
    t[i] = n % LIMB
    n = math.floor(n / LIMB)
  end
  return t
end

-- (a * b + c) mod 2^64, on limbs.
local function mul_add(a, b, c)
  local r, carry = {}, 0
  for i = 1, 4 do
    local sum = carry + c[i]
    for j = 1, i do sum = sum + a[j] * b[i - j + 1] end
    r[i] = sum % LIMB
    carry = math.floor(sum / LIMB)
  end
  return r
end

local SEED_MUL = { 45309, 34736, 12006, 10171 } -- 2862933555777941757
local SEED_ADD = { 62253, 46340, 0, 0 } -- 3037000493
local MUL = { 32557, 19605, 62509, 22609 } -- 6364136223846793005
local ADD = { 33103, 63335, 31614, 5125 } -- 1442695040888963407

local function new_rng(seed)
  assert(seed >= 0 and seed < 2 ^ 53 and seed == math.floor(seed), "conversation: seed must be an integer in [0, 2^53)")
  local state = mul_add(limbs(seed), SEED_MUL, SEED_ADD)
  local rng = {}
  local function next32()
    state = mul_add(state, MUL, ADD)
    return state[4] * LIMB + state[3]
  end
  -- integer in [lo, hi]
  function rng.int(lo, hi)
    return lo + next32() % (hi - lo + 1)
  end
  -- true with probability p (0..1)
  function rng.chance(p)
    return next32() < p * 4294967296
  end
  function rng.pick(list)
    return list[1 + next32() % #list]
  end
  -- float with few decimals: whole part in [lo, hi], 1..3 decimals, never integral
  function rng.float(lo, hi, decimals)
    decimals = decimals or 3
    local scale = 10 ^ decimals
    local n = rng.int(lo * scale, hi * scale)
    if n % scale == 0 then n = n + 1 end
    return n / scale
  end
  function rng.hex(n)
    local t = {}
    for i = 1, n do t[i] = string.format("%x", next32() % 16) end
    return table.concat(t)
  end
  return rng
end
M.new_rng = new_rng

---------------------------------------------------------------------------------------------------
-- A small JSON serialiser with sorted object keys, used to build the JSON *strings* embedded in
-- messages (tool call arguments, JSON tool results). It is not the codec under test.

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function escape_char(c)
  return escapes[c] or string.format("\\u%04x", c:byte())
end

local function to_json(v, null, out)
  local tv = type(v)
  if v == null then
    out[#out + 1] = "null"
  elseif tv == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', escape_char) .. '"'
  elseif tv == "number" then
    if v == math.floor(v) then -- the generator's floats are never integral
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.14g", v)
    end
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "table" then
    if v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        to_json(v[i], null, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        to_json(k, null, out)
        out[#out + 1] = ":"
        to_json(v[k], null, out)
      end
      out[#out + 1] = "}"
    end
  else
    error("conversation: cannot serialise a " .. tv)
  end
end

function M.to_json(v, null)
  local out = {}
  to_json(v, null, out)
  return table.concat(out)
end

---------------------------------------------------------------------------------------------------
-- Vocabulary

local words = {
  "the", "function", "returns", "a", "table", "with", "every", "session", "stored", "in", "memory",
  "when", "we", "call", "save", "on", "manager", "test", "fails", "because", "timestamp", "is",
  "not", "monotonic", "please", "check", "buffer", "length", "before", "copying", "into", "array",
  "error", "message", "should", "name", "field", "path", "user", "expects", "list", "sorted",
  "by", "most", "recent", "update", "first", "then", "fork", "rewind", "keep", "only", "three",
  "messages", "config", "file", "module", "build", "flag", "compiler", "warning", "pointer",
  "null", "string", "escape", "unicode", "valid", "parser", "encoder", "decoder", "benchmark",
  "faster", "slower", "allocation", "latency", "request", "response", "retry", "timeout",
  "connection", "database", "index", "query", "transaction", "commit", "rollback", "lock",
}
local intl = {
  "café", "naïve", "résumé", "Straße", "Ångström", "façade", "señor", "crème brûlée",
  "Zürich", "São Paulo", "Dvořák", "Łódź", "日本語のテキスト", "中文字符", "한국어 문장",
  "テスト", "数据库", "Привет", "Ελληνικά", "🚀", "✅", "🔥", "👍", "🙂", "⚠️", "→", "…", "—",
}
local file_names = {
  "main.c", "session.c", "session.h", "json.c", "json.h", "store_memory.c", "uuid.c", "clock.c",
  "init.lua", "conformance.lua", "session_spec.lua", "json_spec.lua", "Makefile", "README.md",
  "agentsession-scm-1.rockspec", "bench.lua", "harness.lua", "config.toml", "package.json",
  "server.py", "utils.py", "test_api.py", "index.ts", "App.tsx", "handler.go", "lib.rs",
}
local dirs = {
  "src", "csrc", "lua/agentsession", "spec", "spec/helpers", "bench", "examples", "docs",
  "tests/unit", "tests/integration", "internal/store", "pkg/api", "web/components",
}
local tools = { "read_file", "list_directory", "search_code", "run_command", "write_file",
  "edit_file", "web_search", "get_diagnostics" }
local languages = { "c", "lua", "python", "typescript", "go", "rust", "shell" }

local code_snippets = {
  'static int encode_string(buf_t *b, const char *s, size_t n) {\n' ..
  '\tfor (size_t i = 0; i < n; i++) {\n' ..
  '\t\tunsigned char c = (unsigned char)s[i];\n' ..
  '\t\tif (c == \'"\' || c == \'\\\\\') { buf_putc(b, \'\\\\\'); buf_putc(b, c); }\n' ..
  '\t\telse if (c < 0x20) buf_printf(b, "\\\\u%04x", c);\n' ..
  '\t\telse buf_putc(b, c);\n\t}\n\treturn 0;\n}\n',
  'local function save(mgr, session)\n' ..
  '  local ok, err = pcall(mgr.save, mgr, session)\n' ..
  '  if not ok then\n    io.stderr:write("save failed: ", tostring(err), "\\n")\n' ..
  '    return nil, err\n  end\n  return true\nend\n',
  'def load_config(path: str) -> dict:\n' ..
  '    """Load the "agent" section from a TOML file."""\n' ..
  '    with open(path, "r", encoding="utf-8") as fh:\n' ..
  '        data = toml.load(fh)\n' ..
  '    return data.get("agent", {})\n',
  'export async function fetchSession(id: string): Promise<Session> {\n' ..
  '  const res = await fetch(`/api/sessions/${encodeURIComponent(id)}`);\n' ..
  '  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);\n' ..
  '  return (await res.json()) as Session;\n}\n',
  'func (s *Store) Get(ctx context.Context, id string) (*Session, error) {\n' ..
  '\trow := s.db.QueryRowContext(ctx, "SELECT data FROM sessions WHERE id = ?", id)\n' ..
  '\tvar data []byte\n\tif err := row.Scan(&data); err != nil {\n' ..
  '\t\treturn nil, fmt.Errorf("get %q: %w", id, err)\n\t}\n' ..
  '\treturn decode(data)\n}\n',
  'impl Display for SessionError {\n' ..
  '    fn fmt(&self, f: &mut Formatter<\'_>) -> fmt::Result {\n' ..
  '        write!(f, "session {}: {}", self.id, self.kind)\n    }\n}\n',
  '#!/bin/sh\nset -eu\nfor f in "$@"; do\n\tprintf \'%s\\t%s\\n\' "$(wc -c < "$f")" "$f"\n' ..
  'done | sort -rn | head -n 20\n',
  'C:\\Users\\dev\\AppData\\Local\\agent\\sessions\\index.db\n' ..
  'regex: ^\\s*(\\w+)\\s*=\\s*"([^"\\\\]*(?:\\\\.[^"\\\\]*)*)"\\s*$\n',
}

---------------------------------------------------------------------------------------------------
-- Text builders

local function sentence(rng)
  local n = rng.int(6, 18)
  local t = {}
  for i = 1, n do
    if rng.chance(0.06) then
      t[i] = rng.pick(intl)
    elseif rng.chance(0.05) then
      t[i] = "`" .. rng.pick(file_names) .. "`"
    else
      t[i] = rng.pick(words)
    end
  end
  local s = table.concat(t, " ")
  s = s:sub(1, 1):upper() .. s:sub(2)
  return s .. rng.pick({ ".", ".", ".", "?", "!", ":" })
end

local function paragraph(rng, lo, hi)
  local t = {}
  for i = 1, rng.int(lo, hi) do t[i] = sentence(rng) end
  return table.concat(t, " ")
end

local function paragraphs(rng, lo, hi, plo, phi)
  local t = {}
  for i = 1, rng.int(lo, hi) do t[i] = paragraph(rng, plo or 2, phi or 5) end
  return table.concat(t, "\n\n")
end

local function code_block(rng, lines_lo, lines_hi)
  local t = {}
  local target = rng.int(lines_lo, lines_hi)
  local lines = 0
  while lines < target do
    local s = rng.pick(code_snippets)
    t[#t + 1] = s
    for _ in s:gmatch("\n") do lines = lines + 1 end
  end
  return table.concat(t, "\n")
end

local function a_path(rng)
  return rng.pick(dirs) .. "/" .. rng.pick(file_names)
end

---------------------------------------------------------------------------------------------------
-- Message builders

local function system_message(rng)
  local rules = {}
  for i = 1, 14 do
    rules[i] = string.format("%d. %s", i, paragraph(rng, 1, 2))
  end
  return {
    role = "system",
    content = "You are code-agent, an autonomous software engineering assistant working in a " ..
      "sandboxed repository. You can read and write files, search the code and run commands " ..
      "through the tools provided. Follow these rules:\n\n" .. table.concat(rules, "\n") ..
      "\n\nAlways answer in the user's language (français, 日本語, Español…) and keep answers " ..
      "short unless asked for detail. Paths use forward slashes, e.g. /home/user/project/src.",
  }
end

local function user_message(rng)
  local r = rng.int(1, 10)
  local text
  if r <= 4 then
    text = sentence(rng)
  elseif r <= 8 then
    text = paragraph(rng, 2, 6)
  else
    text = paragraphs(rng, 2, 4) .. "\n\n```" .. rng.pick(languages) .. "\n" ..
      code_block(rng, 5, 20) .. "```"
  end
  if rng.chance(0.3) then
    -- Anthropic-style content blocks
    local blocks = { { type = "text", text = text } }
    if rng.chance(0.4) then
      blocks[2] = { type = "text", text = sentence(rng), cache_control = { type = "ephemeral" } }
    end
    return { role = "user", content = blocks }
  end
  return { role = "user", content = text }
end

local function tool_arguments(rng, name)
  if name == "read_file" then
    return { path = a_path(rng), start_line = rng.int(1, 200), max_lines = rng.int(50, 400) }
  elseif name == "list_directory" then
    return { path = rng.pick(dirs), recursive = rng.chance(0.3) }
  elseif name == "search_code" then
    return { query = rng.pick(words) .. " " .. rng.pick(words), path = rng.pick(dirs),
      regex = rng.chance(0.2), max_results = rng.int(5, 50) }
  elseif name == "run_command" then
    return { command = rng.pick({ "make", "make test", "lua5.4 /usr/bin/busted",
      "git status --short", "grep -rn \"TODO\" src/", "ls -la build/" }),
      timeout_ms = rng.int(1000, 120000), cwd = "/home/user/project" }
  elseif name == "write_file" or name == "edit_file" then
    return { path = a_path(rng), content = code_block(rng, 4, 30),
      create_dirs = rng.chance(0.5) }
  elseif name == "web_search" then
    return { query = sentence(rng), num_results = rng.int(3, 10) }
  else
    return { files = { a_path(rng), a_path(rng) }, severity = "warning" }
  end
end

local function usage(rng)
  local input = rng.int(1200, 90000)
  local output = rng.int(20, 2500)
  return {
    prompt_tokens = input,
    completion_tokens = output,
    total_tokens = input + output,
    cached_tokens = rng.int(0, input),
  }
end

local function assistant_with_calls(rng, ncalls)
  local calls = {}
  for i = 1, ncalls do
    local name = rng.pick(tools)
    calls[i] = {
      id = "call_" .. rng.hex(24),
      type = "function",
      ["function"] = { name = name, arguments = M.to_json(tool_arguments(rng, name)) },
    }
  end
  local msg = { role = "assistant", tool_calls = calls, usage = usage(rng),
    model = "gpt-4o-2024-08-06", finish_reason = "tool_calls" }
  if rng.chance(0.7) then msg.content = paragraph(rng, 1, 3) end
  return msg
end

local function assistant_text(rng)
  local text
  if rng.chance(0.3) then
    text = paragraphs(rng, 1, 3) .. "\n\n```" .. rng.pick(languages) .. "\n" ..
      code_block(rng, 6, 40) .. "```\n\n" .. paragraph(rng, 1, 3)
  else
    text = paragraphs(rng, 1, 3)
  end
  return { role = "assistant", content = text, usage = usage(rng),
    model = "gpt-4o-2024-08-06", finish_reason = "stop" }
end

-- Tool result bodies ----------------------------------------------------------------------------

local function file_listing(rng, null)
  local entries = {}
  for i = 1, rng.int(4, 40) do
    local is_dir = rng.chance(0.2)
    entries[i] = {
      name = is_dir and rng.pick(dirs) or rng.pick(file_names),
      type = is_dir and "directory" or "file",
      size = is_dir and null or rng.int(0, 250000),
      mtime = 1700000000000 + rng.int(0, 60000000) * 1000,
      executable = rng.chance(0.1),
      mode = rng.pick({ "0644", "0755", "0600" }),
    }
  end
  return M.to_json({ path = "/home/user/project/" .. rng.pick(dirs), entries = entries,
    truncated = rng.chance(0.1) }, null)
end

local function search_results(rng, null)
  local matches = {}
  for i = 1, rng.int(2, 30) do
    matches[i] = {
      file = a_path(rng),
      line = rng.int(1, 3000),
      column = rng.int(1, 80),
      text = sentence(rng),
      score = rng.float(0, 1),
    }
  end
  return M.to_json({ query = rng.pick(words), matches = matches, total = #matches +
    rng.int(0, 100), elapsed_ms = rng.float(0, 90, 2), next_page = null }, null)
end

local function command_result(rng, null)
  local lines = {}
  for i = 1, rng.int(3, 60) do
    lines[i] = string.format("%s:%d:%d: %s", a_path(rng), rng.int(1, 900), rng.int(1, 80),
      rng.chance(0.3) and ("warning: " .. sentence(rng)) or sentence(rng))
  end
  local failed = rng.chance(0.3)
  return {
    exit_code = failed and rng.int(1, 2) or 0,
    success = not failed,
    duration_s = rng.float(0, 40),
    stdout = table.concat(lines, "\n"),
    stderr = failed and ("error: " .. sentence(rng) .. "\n\tat " .. a_path(rng)) or null,
    truncated = rng.chance(0.15),
    signal = null,
  }
end

local function read_result(rng, null)
  local body = code_block(rng, 8, 190)
  return {
    path = a_path(rng),
    encoding = "utf-8",
    total_lines = rng.int(10, 4000),
    content = body,
    sha256 = rng.hex(64),
    binary = false,
    language = rng.pick(languages),
    last_commit = rng.chance(0.5) and { hash = rng.hex(40), author = "Zoë Müller",
      message = sentence(rng), timestamp = 1700000000 + rng.int(0, 3000000) } or null,
  }
end

local function web_results(rng, null)
  local results = {}
  for i = 1, rng.int(3, 8) do
    results[i] = {
      rank = i,
      title = sentence(rng),
      url = "https://example.org/" .. rng.pick(words) .. "/" .. rng.int(1, 99999),
      snippet = paragraph(rng, 1, 3),
      relevance = rng.float(0, 1),
      published = rng.chance(0.6) and ("2024-0" .. rng.int(1, 9) .. "-1" .. rng.int(0, 9)) or null,
    }
  end
  return { results = results, cached = rng.chance(0.5), latency_ms = rng.float(10, 900, 1) }
end

local function tool_message(rng, call, null)
  local name = call["function"].name
  local content
  if name == "list_directory" then
    content = file_listing(rng, null)
  elseif name == "search_code" or name == "get_diagnostics" then
    content = search_results(rng, null)
  elseif name == "run_command" then
    content = command_result(rng, null)
  elseif name == "read_file" then
    if rng.chance(0.5) then
      content = read_result(rng, null)
    else
      content = code_block(rng, 10, 120)   -- raw file text
    end
  elseif name == "web_search" then
    content = web_results(rng, null)
  else
    content = M.to_json({ ok = true, bytes_written = rng.int(10, 20000),
      path = a_path(rng), backup = null }, null)
  end
  return { role = "tool", tool_call_id = call.id, name = name, content = content }
end

---------------------------------------------------------------------------------------------------
-- Public API

-- messages{ seed =, count =, null = } -> array of `count` messages (default 120).
function M.messages(opts)
  opts = opts or {}
  local rng = new_rng(opts.seed or M.DEFAULT_SEED)
  local count = opts.count or M.DEFAULT_COUNT
  local null = opts.null
  if null == nil then null = require("cjson").null end

  local msgs = { system_message(rng) }
  while #msgs < count do
    msgs[#msgs + 1] = user_message(rng)
    -- one to four tool rounds, then a final answer
    for _ = 1, rng.int(1, 3) do
      if #msgs >= count - 1 then break end
      local ncalls = math.min(rng.int(1, 3), count - #msgs - 1)
      local a = assistant_with_calls(rng, ncalls)
      msgs[#msgs + 1] = a
      for _, call in ipairs(a.tool_calls) do
        msgs[#msgs + 1] = tool_message(rng, call, null)
      end
    end
    if #msgs < count then msgs[#msgs + 1] = assistant_text(rng) end
  end
  return msgs
end

-- session{ seed =, count =, null = } -> { metadata = {...}, messages = {...}, state = {...} }
-- in the shape of API.md (created_at/updated_at 0, so save sets them).
function M.session(opts)
  opts = opts or {}
  local rng = new_rng((opts.seed or M.DEFAULT_SEED) + 1)
  local msgs = M.messages(opts)
  local total_tokens, open_files = 0, {}
  for _, m in ipairs(msgs) do
    if m.usage then total_tokens = total_tokens + m.usage.total_tokens end
  end
  for i = 1, 6 do open_files[i] = a_path(rng) end
  local id = string.format("%s-%s-4%s-%s%s-%s", rng.hex(8), rng.hex(4), rng.hex(3),
    rng.pick({ "8", "9", "a", "b" }), rng.hex(3), rng.hex(12))
  return {
    metadata = {
      id = id,
      name = "refactor-json-codec",
      tags = { "production", "benchmark", "team:core" },
      agent_name = "code-agent",
      created_at = 0,
      updated_at = 0,
      turn_count = #msgs,
      total_tokens = total_tokens,
    },
    messages = msgs,
    state = {
      cwd = "/home/user/project",
      open_files = open_files,
      counters = { tool_calls = rng.int(30, 80), retries = rng.int(1, 5),
        files_written = rng.int(1, 20) },
      model = { name = "gpt-4o-2024-08-06", temperature = 0.2, max_tokens = 4096 },
      env = { LANG = "fr_FR.UTF-8", TERM = "xterm-256color", HOME = "/home/user" },
      approved = true,
      plan = { "read the failing spec", "fix the encoder", "run the benchmark ✅" },
    },
  }
end

return M
