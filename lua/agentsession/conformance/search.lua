-- agentsession.conformance.search: the checks of search: words, phrases, what a message's text
-- is, the result's fields, its order, filters, limit and offset, and the index following every
-- kind of write.
local agentsession = require("agentsession")
local support = require("agentsession.conformance.support")

local show, eq, truthy = support.show, support.eq, support.truthy
local expect_error_in, make_session = support.expect_error_in, support.make_session
local is_table, meta_of, save, wait_past = support.is_table, support.meta_of, support.save, support.wait_past
local resume = support.resume

local checks, check = support.family()

-- search(query [, opts]) checked to be an array of { metadata, index, snippet }.
local function search(mgr, query, opts)
  local r
  if opts == nil then r = mgr:search(query) else r = mgr:search(query, opts) end
  is_table(r, "search(" .. show(query) .. ")")
  for i, hit in ipairs(r) do
    local what = "search(" .. show(query) .. ")[" .. i .. "]"
    is_table(hit, what)
    is_table(hit.metadata, what .. ".metadata")
    truthy(type(hit.index) == "number", "%s.index is %s, not a number", what, show(hit.index))
    truthy(type(hit.snippet) == "string", "%s.snippet is %s, not a string", what, show(hit.snippet))
  end
  return r
end

-- The ids of the sessions a search finds, in its order.
local function found(mgr, query, opts)
  local out = {}
  for i, hit in ipairs(search(mgr, query, opts)) do out[i] = hit.metadata.id end
  return out
end

-- A session of the given messages (strings become { role = "user", content = s }).
local function talk(mgr, texts, meta)
  local msgs = {}
  for i, t in ipairs(texts) do
    msgs[i] = type(t) == "string" and { role = "user", content = t } or t
  end
  return save(mgr, make_session(meta or { name = "talk", tags = {} }, msgs)).id
end

-- The characters of a UTF-8 string.
local function chars(s)
  local n = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 0x80 or b >= 0xC0 then n = n + 1 end
  end
  return n
end

check("search: finds a word, with the metadata, the message's index and a snippet", function(mgr)
  talk(mgr, { "nothing here" })
  local id = talk(mgr, { "hello", "we fixed the parser today", "thanks" })
  local r = search(mgr, "parser")
  eq(1, #r, "#search('parser')")
  eq(meta_of(mgr, id), r[1].metadata, "metadata")
  eq(2, r[1].index, "index")
  truthy(r[1].snippet:find("we fixed the parser today", 1, true),
    "snippet %s does not hold the message's text", show(r[1].snippet))
end)

check("search: matches whole words, ASCII letters in any case", function(mgr)
  local a = talk(mgr, { "The Parser broke" })
  talk(mgr, { "a category of errors" })
  eq({ a }, found(mgr, "PARSER"), "search('PARSER')")
  eq({ a }, found(mgr, "parser BROKE"), "search('parser BROKE')")
  eq({}, found(mgr, "cat"), "search('cat'): a part of a word")
  eq({}, found(mgr, "pars"), "search('pars')")
  eq({}, found(mgr, "parser fixed"), "search('parser fixed'): a word it lacks")
end)

check("search: UTF-8 letters are letters, and punctuation separates words", function(mgr)
  local a = talk(mgr, { "un café, s’il vous plaît" })
  local b = talk(mgr, { "“quoted”—dash 東京タワー。" })
  eq({ a }, found(mgr, "café"), "search('café')")
  eq({ a }, found(mgr, "plaît vous"), "search('plaît vous')")
  eq({}, found(mgr, "caf"), "search('caf')")
  eq({ b }, found(mgr, "quoted"), "search('quoted')")
  eq({ b }, found(mgr, "dash"), "search('dash')")
  eq({ b }, found(mgr, "東京タワー"), "search('東京タワー')")
end)

check("search: a phrase in double quotes matches its words in that order", function(mgr)
  local a = talk(mgr, { "we fixed the parser" })
  local b = talk(mgr, { "the parser fixed itself" })
  eq({ b, a }, found(mgr, "parser fixed"), "search('parser fixed')")
  eq({ a }, found(mgr, '"fixed the parser"'), "search('\"fixed the parser\"')")
  eq({ b }, found(mgr, '"parser fixed"'), "search('\"parser fixed\"')")
  eq({}, found(mgr, '"fixed parser"'), "search('\"fixed parser\"')")
  eq({ a }, found(mgr, 'we "THE parser"'), "search('we \"THE parser\"')")
end)

check("search: every word in one message, or in the name and tags together", function(mgr)
  talk(mgr, { "alpha", "beta" }, { name = "n", tags = {} })
  local b = talk(mgr, { "other" }, { name = "alpha", tags = { "beta" } })
  local r = search(mgr, "alpha beta")
  eq({ b }, { r[1] and r[1].metadata.id }, "search('alpha beta')")
  eq(1, #r, "#search('alpha beta')")
  eq(0, r[1].index, "index of a name and tags match")
  truthy(r[1].snippet:find("alpha", 1, true), "snippet %s holds no word of the name", show(r[1].snippet))
end)

check("search: a message's text is its string values, not its keys or numbers", function(mgr)
  local a = talk(mgr, { { role = "tool", content = { { kind = "text", value = "deep words" } }, count = 42 } })
  eq({ a }, found(mgr, "deep words"), "search('deep words'): a nested string")
  eq({ a }, found(mgr, "tool"), "search('tool'): a string value")
  eq({}, found(mgr, "kind"), "search('kind'): a key")
  eq({}, found(mgr, "42"), "search('42'): a number")
end)

check("search: gives the last message that matched", function(mgr)
  local id = talk(mgr, { "needle one", "hay", "needle two", "hay again" })
  local r = search(mgr, "needle")
  eq(3, r[1] and r[1].index, "index")
  truthy(r[1].snippet:find("needle two", 1, true), "snippet %s is not message 3's", show(r[1].snippet))
  eq(1, search(mgr, "one")[1].index, "index of 'one'")
  eq(id, r[1].metadata.id, "id")
end)

check("search: snippets hold at most 200 characters, cut between characters", function(mgr)
  local text = string.rep("é", 300) .. " needle " .. string.rep("ü", 300)
  talk(mgr, { text })
  local r = search(mgr, "needle")
  local s = r[1] and r[1].snippet or ""
  truthy(s:find("needle", 1, true), "snippet %s lacks the word", show(s))
  truthy(chars(s) <= 200, "snippet of %d characters", chars(s))
  truthy(chars(s) >= 150, "snippet of only %d characters from a long text", chars(s))
  truthy(s:find("^[\128-\191]") == nil and s:find("[\192-\255]$") == nil,
    "snippet %s is cut inside a character", show(s))
  local ok = pcall(function() return agentsession.json.encode(s) end)
  truthy(ok, "snippet %s is not UTF-8", show(s))
end)

check("search: the most recently updated first, with limit and offset", function(mgr)
  local ids = {}
  for i = 1, 5 do
    local id = talk(mgr, { "common word " .. i })
    ids[i] = id
    wait_past(meta_of(mgr, id).updated_at)
  end
  talk(mgr, { "no match" })
  eq({ ids[5], ids[4], ids[3], ids[2], ids[1] }, found(mgr, "common"), "search('common')")
  eq({ ids[4], ids[3] }, found(mgr, "common", { offset = 1, limit = 2 }), "offset = 1, limit = 2")
  eq({}, found(mgr, "common", { offset = 5 }), "offset = 5")
  eq({}, found(mgr, "common", { limit = 0 }), "limit = 0")
  mgr:rename(ids[2], "renamed")
  eq(ids[2], found(mgr, "common")[1], "search('common')[1] after renaming the second")
end)

check("search: gives 20 by default", function(mgr)
  for i = 1, 23 do talk(mgr, { "many " .. i }) end
  eq(20, #search(mgr, "many"), "#search('many')")
  eq(23, #search(mgr, "many", { limit = 100 }), "#search('many', { limit = 100 })")
end)

check("search: the filters of list combine with the query", function(mgr)
  local a = talk(mgr, { "shared" }, { name = "a", tags = { "x", "y" }, agent_name = "one" })
  local b = talk(mgr, { "shared" }, { name = "b", tags = { "x" }, agent_name = "two" })
  talk(mgr, { "other" }, { name = "c", tags = { "x", "y" }, agent_name = "one" })
  local f = mgr:fork(b, "fork of b").id
  eq({ f, b, a }, found(mgr, "shared"), "no filter")
  eq({ f, b, a }, found(mgr, "shared", { tag = "x" }), "tag = 'x'")
  eq({ a }, found(mgr, "shared", { tags = { "x", "y" } }), "tags = {'x', 'y'}")
  eq({ a }, found(mgr, "shared", { agent_name = "one" }), "agent_name = 'one'")
  eq({ f }, found(mgr, "shared", { parent_id = b }), "parent_id = b")
  eq({}, found(mgr, "shared", { agent_name = "one", tag = "absent" }), "agent_name and a tag nobody has")
end)

check("search: finds every session that matches among many", function(mgr)
  local want = {}
  for i = 1, 40 do
    local text = i % 4 == 0 and ("rare marker in session " .. i) or ("plain session " .. i)
    local id = talk(mgr, { "hello", text, "bye" })
    if i % 4 == 0 then want[#want + 1] = id end
  end
  local got = found(mgr, "marker", { limit = 100 })
  local seen = {}
  for _, id in ipairs(got) do seen[id] = true end
  for _, id in ipairs(want) do truthy(seen[id], "search('marker') misses %s", show(id)) end
  eq(#want, #got, "#search('marker')")
end)

check("search: follows every kind of write", function(mgr)
  local id = talk(mgr, { "first words", "second words" })
  mgr:append(id, { { role = "user", content = "appended words" } })
  eq({ id }, found(mgr, "appended"), "after append")
  mgr:rewind(id, 1)
  eq({}, found(mgr, "second"), "a message rewound away")
  eq({}, found(mgr, "appended"), "an appended message rewound away")
  eq({ id }, found(mgr, "first"), "the message kept by rewind")
  local f = mgr:fork(id, "copy").id
  eq({ f, id }, found(mgr, "first"), "a fork, under its own id")
  mgr:delete(f)
  eq({ id }, found(mgr, "first"), "after deleting the fork")
  local s = resume(mgr, id)
  s.messages = { { role = "user", content = "replaced entirely" } }
  save(mgr, s)
  eq({}, found(mgr, "first"), "a message a save replaced")
  eq({ id }, found(mgr, "replaced"), "the message of the save")
  mgr:tag(id, "labelword")
  eq({ id }, found(mgr, "labelword"), "after tag")
  mgr:untag(id, "labelword")
  eq({}, found(mgr, "labelword"), "after untag")
  mgr:delete(id)
  eq({}, found(mgr, "replaced"), "after delete")
end)

check("search: a window's save replaces what the window held", function(mgr)
  local id = talk(mgr, { "kept one", "kept two", "old tail" })
  local w = resume(mgr, id, { last = 1 })
  w.messages[1] = { role = "user", content = "new tail" }
  save(mgr, w)
  eq({}, found(mgr, "old"), "the replaced message")
  eq({ id }, found(mgr, "new tail"), "the window's message")
  eq({ id }, found(mgr, "kept two"), "a message before the window")
end)

check("search: an import is found, and replacing it drops its old text", function(mgr)
  local id = talk(mgr, { "exported text" })
  local doc = mgr:export(id)
  mgr:delete(id)
  mgr:import(doc)
  eq({ id }, found(mgr, "exported"), "after import")
  local s = make_session({ id = id, name = "n", tags = { "t" } }, { "other text" })
  mgr:import(agentsession.json.encode({ metadata = s.metadata, messages = s.messages, state = s.state }),
    { replace = true })
  eq({}, found(mgr, "exported"), "after import with replace")
  eq({ id }, found(mgr, "other"), "the replacing text")
end)

check("search: an empty query is invalid", function(mgr)
  talk(mgr, { "words" })
  expect_error_in("search('')", "invalid", function() return mgr:search("") end)
  expect_error_in("search(' ,.;')", "invalid", function() return mgr:search(" ,.;") end)
  expect_error_in("search('\"\"')", "invalid", function() return mgr:search('""') end)
end)

return checks
