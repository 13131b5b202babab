-- agentsession.conformance.export_import: the checks of export and import: the seed's serde
-- document out of one store and into another.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local null = agentsession.null
local now = agentsession.now
local json = agentsession.json
local fail, safe_tostring, show, eq = support.fail, support.safe_tostring, support.show, support.eq
local eq_json, truthy, expect_error_in = support.eq_json, support.truthy, support.expect_error_in
local MISSING, make_session, unnamed = support.MISSING, support.make_session, support.unnamed
local messages, deep_copy, is_table = support.messages, support.deep_copy, support.is_table
local resume, meta_of, list, list_ids = support.resume, support.meta_of, support.list, support.list_ids
local save, snapshot, unchanged = support.save, support.snapshot, support.unchanged
local two_sessions, append, concat = support.two_sessions, support.append, support.concat
local append_source = support.append_source
local HAS_INTEGERS, number_type, integer_text = support.HAS_INTEGERS, support.number_type, support.integer_text
local MAX_INTEGER, MIN_INTEGER = support.MAX_INTEGER, support.MIN_INTEGER

-- An odd integer above 2^53 and 2^62 + 1 where Lua has integers; 2^53 - 1 and 2^52 + 1 elsewhere.
local BIG_ODD = HAS_INTEGERS and 9007199254740993 or 9007199254740991
local BIG_62 = HAS_INTEGERS and 4611686018427387905 or 4503599627370497

local checks, check = support.family()

------------------------------------------------------------------ export

local function export(mgr, id)
  local text = mgr:export(id)
  truthy(type(text) == "string", "export() returned %s, not a string", show(text))
  return text
end

local function decode(text, what)
  local ok, doc = pcall(json.decode, text)
  if not ok then fail("%s is not JSON: %s", what, safe_tostring(doc)) end
  is_table(doc, what)
  return doc
end

local SEED_FIELDS = { "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens" }

-- The seed's metadata of a metadata table: its eight fields, name null when unset.
local function seed_meta(m)
  local out = {}
  for _, f in ipairs(SEED_FIELDS) do out[f] = m[f] end
  if out.name == nil then out.name = null end
  out.tags = agentsession.array(deep_copy(out.tags))
  return out
end

-- The text export gives for a session: the seed's fields in their order, no
-- space; messages and state as json.encode writes them (so only for values
-- whose objects have at most one key, where the order is not a choice).
local function seed_text(meta, msgs, state)
  local fields = {}
  local m = seed_meta(meta)
  for i, f in ipairs(SEED_FIELDS) do fields[i] = json.encode(f) .. ":" .. json.encode(m[f]) end
  return '{"metadata":{' .. table.concat(fields, ",") .. '},"messages":' .. json.encode(agentsession.array(msgs))
    .. ',"state":' .. json.encode(state) .. "}"
end

-- The metadata of a session's export: its seed's metadata, and parent_id when it has one.
local function export_meta(m)
  local out = seed_meta(m)
  out.parent_id = m.parent_id
  return out
end

-- A decoded export: exactly metadata, messages and state, the metadata the
-- seed's eight fields and, only when it has one, parent_id.
local function exported(mgr, id)
  local doc = decode(export(mgr, id), "export()")
  for k in pairs(doc) do
    truthy(k == "metadata" or k == "messages" or k == "state", "the document has an unknown key %s", show(k))
  end
  is_table(doc.metadata, "the document's metadata")
  is_table(doc.messages, "the document's messages")
  local known = {}
  for _, f in ipairs(SEED_FIELDS) do
    known[f] = true
    truthy(doc.metadata[f] ~= nil, "the document's metadata has no %s", f)
  end
  known.parent_id = true
  for k in pairs(doc.metadata) do
    truthy(known[k], "the document's metadata has a field %s, not one of the seed's eight or parent_id", show(k))
  end
  return doc
end

check("export: writes the seed's serde form, its fields in order", function(mgr)
  local msgs = { { role = "user" }, { content = { 1, 2.5, "three", null, true } }, agentsession.array(), {}, 42,
    "text with \"quotes\" and é" }
  local s = make_session({ name = "naïve", tags = { "b", "a" }, turn_count = 6, total_tokens = 1234,
    created_at = 1000 }, msgs, { cwd = "/home/user" })
  save(mgr, s)
  local r = resume(mgr, s.metadata.id)
  eq(seed_text(r.metadata, msgs, { cwd = "/home/user" }), export(mgr, s.metadata.id), "export()")
end)

check("export: begins with {\"metadata\":{\"id\":", function(mgr)
  local s = two_sessions(mgr)
  local text = export(mgr, s.metadata.id)
  local head = '{"metadata":{"id":'
  truthy(text:sub(1, #head) == head, "export() begins with %s", show(text:sub(1, 40)))
end)

check("export: metadata has the seed's eight fields, equal to the stored ones", function(mgr)
  local s = two_sessions(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" }, { tokens = 5 })
  local doc = exported(mgr, id)
  eq(seed_meta(meta_of(mgr, id)), doc.metadata, "the document's metadata")
  for _, f in ipairs({ "created_at", "updated_at", "turn_count", "total_tokens" }) do
    truthy(number_type(doc.metadata[f]) == "integer", "metadata.%s is %s, not an integer", f, show(doc.metadata[f]))
  end
end)

check("export: a fork's document has its parent_id after the seed's eight fields, and no version", function(mgr)
  local s = two_sessions(mgr)
  local fork = mgr:fork(s.metadata.id, "child")
  mgr:tag(fork.id, "t")
  local meta = meta_of(mgr, fork.id)
  local doc = exported(mgr, fork.id)
  eq(export_meta(meta), doc.metadata, "the fork's document's metadata")
  local tail = '"total_tokens":' .. integer_text(meta.total_tokens) .. ',"parent_id":' .. json.encode(s.metadata.id)
    .. '},'
  local text = export(mgr, fork.id)
  truthy(text:find(tail, 1, true), "export() of a fork has no %s: %s", show(tail), show(text))
  eq(nil, exported(mgr, s.metadata.id).metadata.parent_id, "parent_id in the source's document")
end)

check("export: an unset name is null", function(mgr)
  local s = unnamed(make_session())
  save(mgr, s)
  local text = export(mgr, s.metadata.id)
  truthy(text:find('"name":null,', 1, true), "export() has no \"name\":null: %s", show(text))
  truthy(rawequal(decode(text, "export()").metadata.name, null), "name is not null")
end)

check("export: messages and state are exact (integers, floats, null, [] and {})", function(mgr)
  local msgs = { MAX_INTEGER, MIN_INTEGER, BIG_ODD, 1.0, 0.1, 1e300, null, agentsession.array(), {},
    { list = agentsession.array(), object = {}, n = 3, f = 3.0 }, "a\0b" }
  local state = { list = agentsession.array(), object = {}, big = BIG_62, half = 0.5 }
  local s = make_session(nil, msgs, state)
  save(mgr, s)
  local doc = exported(mgr, s.metadata.id)
  eq_json(msgs, doc.messages, "the document's messages")
  eq_json(state, doc.state, "the document's state")
  -- 1.0 and 3.0 are floats where Lua has integers; elsewhere the numbers 1 and 3, written as 1 and 3
  local integral = HAS_INTEGERS and "float" or "integer"
  truthy(number_type(doc.messages[4]) == integral, "messages[4] (1.0) is %s", show(doc.messages[4]))
  truthy(number_type(doc.messages[10].f) == integral, "messages[10].f (3.0) is %s", show(doc.messages[10].f))
end)

check("export: empty tags and messages are [], an empty state {}", function(mgr)
  local s = make_session({ tags = {} })
  s.messages, s.state = nil, nil
  save(mgr, s)
  local text = export(mgr, s.metadata.id)
  truthy(text:find('"tags":[]', 1, true), "export() has no \"tags\":[]: %s", show(text))
  truthy(text:find('"messages":[]', 1, true), "export() has no \"messages\":[]: %s", show(text))
  truthy(text:sub(-12) == ',"state":{}}', "export() does not end with ,\"state\":{}}: %s", show(text:sub(-40)))
  local t = make_session(nil, {}, agentsession.array())
  save(mgr, t)
  local other = export(mgr, t.metadata.id)
  truthy(other:sub(-12) == ',"state":[]}', "export() of state [] does not end with ,\"state\":[]}: %s",
    show(other:sub(-40)))
end)

check("export: follows the session's writes", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  mgr:tag(id, "c")
  mgr:rename(id, "renamed")
  mgr:rewind(id, 2)
  append(mgr, id, { "y" }, { tokens = 1 })
  local r = resume(mgr, id)
  local doc = exported(mgr, id)
  eq(seed_meta(r.metadata), doc.metadata, "the document's metadata")
  eq({ messages(3)[1], messages(3)[2], "y" }, doc.messages, "the document's messages")
  eq(r.state, doc.state, "the document's state")
end)

check("export: changes nothing", function(mgr)
  local s = two_sessions(mgr)
  local before = snapshot(mgr)
  export(mgr, s.metadata.id)
  export(mgr, list(mgr)[2].id)
  unchanged(mgr, before, "export")
end)

check("export: a missing id is not_found", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local err = expect_error_in("export of a missing id", "not_found", function() return mgr:export(MISSING) end)
  eq(MISSING, err.id, "err.id")
  unchanged(mgr, before, "a failed export")
end)

------------------------------------------------------------------ import

local function import(mgr, text, opts)
  local meta
  if opts == nil then meta = mgr:import(text) else meta = mgr:import(text, opts) end
  is_table(meta, "import()'s result")
  return meta
end

-- A document in the seed's serde form, written by hand: what serde_json
-- writes for the Rust types (no name, so "name":null).
local function serde_document(id)
  return '{"metadata":{"id":"' .. id .. '","name":null,"tags":["imported","rust"],"agent_name":"code-agent",'
    .. '"created_at":1700000000000,"updated_at":1700000005000,"turn_count":2,"total_tokens":345},'
    .. '"messages":[{"role":"user","content":"List the files."},{"role":"assistant","content":null,'
    .. '"tool_calls":[{"id":"call_1","args":{"path":".","depth":1,"ratio":0.5}}]}],'
    .. '"state":{"cwd":"/home/user","history":[],"options":{}}}'
end

local SERDE_MESSAGES = {
  { role = "user", content = "List the files." },
  { role = "assistant", content = null,
    tool_calls = { { id = "call_1", args = { path = ".", depth = 1, ratio = 0.5 } } } },
}

-- A document from seed fields, messages and state (tables); json.encode
-- writes it.
local function document(meta, msgs, state)
  local m = {}
  for k, v in pairs(meta) do m[k] = v end
  return json.encode({ metadata = m, messages = agentsession.array(msgs or {}), state = state or {} })
end

local function doc_meta(id, extra)
  local m = { id = id, name = "doc", tags = agentsession.array({ "x" }), agent_name = "importer",
    created_at = 1000, updated_at = 2000, turn_count = 1, total_tokens = 10 }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- Checks that session `id` of `mgr` is `src` (a session table) in everything
-- an export carries (parent_id too), and is at `version`.
local function same_as(mgr, id, src, version, what)
  local r = resume(mgr, id)
  eq(seed_meta(src.metadata), seed_meta(r.metadata), what .. " metadata")
  eq(version, r.metadata.version, what .. " version")
  eq(src.metadata.parent_id, r.metadata.parent_id, what .. " parent_id")
  eq_json(src.messages, r.messages, what .. " messages")
  eq_json(src.state, r.state, what .. " state")
end

check("import: an exported session comes back equal in another store", function(mgr, ctx)
  local named = make_session({ tags = { "b", "a" }, turn_count = 9, total_tokens = MAX_INTEGER, created_at = 1000 },
    { { role = "user", n = BIG_ODD, f = 1.0 }, agentsession.array(), {}, null, "é\0" },
    { list = agentsession.array(), object = {}, nested = { 0.1, { true } } })
  save(mgr, named)
  append(mgr, named.metadata.id, { "appended" }, { tokens = 0 })
  local fork = mgr:fork(named.metadata.id, "fork", { at = 2 })
  local plain = unnamed(make_session({ tags = {} }, {}))
  save(mgr, plain)
  local other = ctx.open()
  for _, id in ipairs({ named.metadata.id, fork.id, plain.metadata.id }) do
    local src = resume(mgr, id)
    local meta = import(other, export(mgr, id))
    eq(id, meta.id, "import().id")
    same_as(other, id, src, 1, "the imported session's")
  end
  eq(3, #list(other), "#list() of the other store")
end)

check("import: keeps timestamps, counts, tags and name as given", function(mgr)
  local meta = import(mgr, document(doc_meta("given", { tags = agentsession.array({ "z", "a" }),
    created_at = 1000, updated_at = 2000, turn_count = 7, total_tokens = 99 }), { "one" }, { k = 1 }))
  local r = resume(mgr, "given")
  eq(meta, r.metadata, "import() vs resume().metadata")
  for field, v in pairs({ id = "given", name = "doc", agent_name = "importer", created_at = 1000, updated_at = 2000,
    turn_count = 7, total_tokens = 99, version = 1 }) do
    eq(v, r.metadata[field], "metadata." .. field)
  end
  eq({ "z", "a" }, r.metadata.tags, "metadata.tags")
  eq({ "one" }, r.messages, "messages")
  eq({ k = 1 }, r.state, "state")
end)

check("import: reads a document in the seed's serde form, name null", function(mgr)
  local meta = import(mgr, serde_document("serde-1"))
  eq(nil, meta.name, "import().name")
  local r = resume(mgr, "serde-1")
  eq(meta, r.metadata, "import() vs resume().metadata")
  eq(nil, r.metadata.name, "metadata.name")
  eq({ "imported", "rust" }, r.metadata.tags, "metadata.tags")
  eq(1700000000000, r.metadata.created_at, "metadata.created_at")
  eq(1700000005000, r.metadata.updated_at, "metadata.updated_at")
  eq(2, r.metadata.turn_count, "metadata.turn_count")
  eq(345, r.metadata.total_tokens, "metadata.total_tokens")
  eq(SERDE_MESSAGES, r.messages, "messages")
  eq_json({ cwd = "/home/user", history = agentsession.array(), options = {} }, r.state, "state")
end)

check("import: returns the stored metadata, equal to resume(id).metadata and list's", function(mgr)
  local meta = import(mgr, document(doc_meta("ret", { updated_at = now() + 60000 })))
  eq(meta_of(mgr, "ret"), meta, "import() vs resume().metadata")
  eq(meta, list(mgr)[1], "import() vs list()[1]")
  eq(1, meta.version, "import().version")
end)

check("import: an existing id is conflict and changes nothing", function(mgr)
  local known = two_sessions(mgr)
  local id = known.metadata.id
  local text = export(mgr, id)
  local before = snapshot(mgr)
  local err = expect_error_in("import of an existing id", "conflict", function() return mgr:import(text) end)
  eq(id, err.id, "err.id")
  expect_error_in("import of an existing id with replace = false", "conflict", function()
    return mgr:import(document(doc_meta(id)), { replace = false })
  end)
  unchanged(mgr, before, "a failed import")
end)

check("import: replace = true overwrites the session and bumps its version", function(mgr)
  local s = append_source(mgr)
  local id = s.metadata.id
  append(mgr, id, { "x" })
  local meta = import(mgr, document(doc_meta(id, { name = "replaced", turn_count = 1 }), { "only" }, { new = true }),
    { replace = true })
  eq(3, meta.version, "import{ replace = true }.version")
  local r = resume(mgr, id)
  eq(meta, r.metadata, "import() vs resume().metadata")
  eq("replaced", r.metadata.name, "name")
  eq({ "x" }, r.metadata.tags, "tags")
  eq(1000, r.metadata.created_at, "created_at")
  eq(2000, r.metadata.updated_at, "updated_at")
  eq({ "only" }, r.messages, "messages")
  eq({ new = true }, r.state, "state")
  eq({ id }, list_ids(mgr), "list() ids")
  eq(1, import(mgr, document(doc_meta("fresh")), { replace = true }).version, "replace of a missing id: version")
end)

check("import: malformed JSON is invalid and stores nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local good = document(doc_meta("bad-json"))
  for _, text in ipairs({ "", "{", good:sub(1, -2), good .. " x", good:gsub('"id"', "id", 1),
    (good:gsub("}$", ",}")), "\255" }) do
    expect_error_in("import of " .. show(text), "invalid", function() return mgr:import(text) end)
  end
  unchanged(mgr, before, "a failed import")
  expect_error_in("resume of the id", "not_found", function() return mgr:resume("bad-json") end)
end)

check("import: a document that is not an object of metadata, messages and state is invalid", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  for _, text in ipairs({ "[]", "5", '"x"', "null", "{}", '{"metadata":[]}', '{"metadata":"x"}',
    (document(doc_meta("doc-msgs")):gsub('"messages":%[%]', '"messages":{"a":1}')) }) do
    expect_error_in("import of " .. show(text), "invalid", function() return mgr:import(text) end)
  end
  unchanged(mgr, before, "a failed import")
end)

check("import: unknown fields are invalid and store nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local cases = {
    { "version in metadata", document(doc_meta("u1", { version = 3 })) },
    { "an unknown metadata field", document(doc_meta("u3", { bogus = 1 })) },
    { "an unknown top-level field", json.encode({ metadata = doc_meta("u4"), messages = agentsession.array(),
      state = {}, extra = true }) },
  }
  for _, row in ipairs(cases) do
    expect_error_in("import with " .. row[1], "invalid", function() return mgr:import(row[2]) end)
  end
  unchanged(mgr, before, "an import with an unknown field")
end)

check("import: bad field values are invalid and store nothing", function(mgr)
  two_sessions(mgr)
  local before = snapshot(mgr)
  local cases = {
    { "an empty id", doc_meta("") },
    { "a numeric id", doc_meta(5) },
    { "a negative turn_count", doc_meta("b1", { turn_count = -1 }) },
    { "turn_count 2^32", doc_meta("b2", { turn_count = 4294967296 }) },
    { "a fractional created_at", doc_meta("b3", { created_at = 1.5 }) },
    { "tags as a string", doc_meta("b4", { tags = "x" }) },
    { "an empty tag", doc_meta("b5", { tags = agentsession.array({ "" }) }) },
    { "a numeric name", doc_meta("b6", { name = 5 }) },
    { "a control character in agent_name", doc_meta("b7", { agent_name = "a\nb" }) },
    { "an empty parent_id", doc_meta("b8", { parent_id = "" }) },
    { "a numeric parent_id", doc_meta("b9", { parent_id = 5 }) },
    { "a 256-byte parent_id", doc_meta("b10", { parent_id = string.rep("p", 256) }) },
    { "a control character in parent_id", doc_meta("b11", { parent_id = "a\nb" }) },
  }
  for _, row in ipairs(cases) do
    expect_error_in("import with " .. row[1], "invalid", function() return mgr:import(document(row[2])) end)
  end
  unchanged(mgr, before, "an import with a bad value")
end)

check("import: a fork keeps its parent_id through export and import", function(mgr, ctx)
  local s = append_source(mgr)
  local id = s.metadata.id
  local fork = mgr:fork(id, "child")
  local grandchild = mgr:fork(fork.id, nil, { at = 1 })
  local other = ctx.open()
  eq(nil, import(other, export(mgr, id)).parent_id, "import() of the source: parent_id")
  eq(id, import(other, export(mgr, fork.id)).parent_id, "import() of the fork: parent_id")
  eq(fork.id, import(other, export(mgr, grandchild.id)).parent_id, "import() of the fork's fork: parent_id")
  eq(id, meta_of(other, fork.id).parent_id, "resume() of the imported fork: parent_id")
  eq({ fork.id }, list_ids(other, { parent_id = id }), "list{ parent_id = source } in the other store")
  eq({ grandchild.id }, list_ids(other, { parent_id = fork.id }), "list{ parent_id = fork } in the other store")
  eq(id, import(mgr, document(doc_meta("p-given", { parent_id = id }))).parent_id, "import() with parent_id")
  eq(nil, import(mgr, document(doc_meta("p-none"))).parent_id, "import() without parent_id")
  eq(nil, import(mgr, document(doc_meta("p-null", { parent_id = null }))).parent_id, "import() of parent_id null")
  eq(nil, meta_of(mgr, "p-null").parent_id, "resume() after an import of parent_id null")
end)

check("import: the session takes its place in list by its updated_at", function(mgr)
  local a = save(mgr, make_session({ tags = { "t" } })).id
  local b = save(mgr, make_session({ tags = { "t" } })).id
  import(mgr, document(doc_meta("old", { updated_at = 2000, tags = agentsession.array({ "t" }) })))
  eq({ b, a, "old" }, list_ids(mgr), "list() ids")
  eq({ b, a, "old" }, list_ids(mgr, { tag = "t" }), "list{ tag = 't' } ids")
  append(mgr, "old", { "now" })
  eq({ "old", b, a }, list_ids(mgr), "list() ids after an append to the imported session")
end)

-- The numbers of "import: values stay exact": the 64-bit extremes, 2^53 + 1 and
-- 1.0 where Lua has integers; elsewhere 2^53, 2^53 - 1 and 1.5 (where 1.0 is
-- the number 1, which a store that re-encodes it writes as 1).
local EXACT = HAS_INTEGERS and { "9223372036854775807", "9007199254740993", "1.0", "-9223372036854775808", 1.0 }
  or { "9007199254740992", "9007199254740991", "1.5", "-9007199254740992", 1.5 }

check("import: values stay exact", function(mgr)
  local text = '{"metadata":{"id":"exact","name":"n","tags":[],"agent_name":"","created_at":1,"updated_at":2,'
    .. '"turn_count":0,"total_tokens":' .. EXACT[1] .. '},"messages":[' .. EXACT[2] .. ',' .. EXACT[3] .. ',0.1,[],{},'
    .. 'null,"é😀",' .. EXACT[4] .. '],"state":[]}'
  import(mgr, text)
  local r = resume(mgr, "exact")
  eq(MAX_INTEGER, r.metadata.total_tokens, "total_tokens")
  eq_json({ BIG_ODD, EXACT[5], 0.1, agentsession.array(), {}, null, "é😀", MIN_INTEGER }, r.messages,
    "messages")
  eq_json(agentsession.array(), r.state, "state")
  eq(text, export(mgr, "exact"), "export() of the imported document")
end)

check("import: the session can be written like any other", function(mgr)
  import(mgr, serde_document("serde-w"))
  eq(2, append(mgr, "serde-w", { "more" }, { tokens = 5 }).version, "append().version")
  local fork = mgr:fork("serde-w", nil, { at = 1 })
  eq(nil, fork.name, "fork().name")
  eq("serde-w", fork.parent_id, "fork().parent_id")
  eq({ SERDE_MESSAGES[1] }, resume(mgr, fork.id).messages, "the fork's messages")
  local r = resume(mgr, "serde-w")
  eq(concat(SERDE_MESSAGES, { "more" }), r.messages, "messages")
  eq(3, r.metadata.turn_count, "turn_count")
  eq(350, r.metadata.total_tokens, "total_tokens")
end)

return checks
