--- The `agentsession` command: look into any store, move sessions between stores, keep stores
-- sound. A user of the library like any other: every command is calls of a manager.
--
--   local status = require("agentsession.cli").main({ "--store", "a.db", "list" })
--
-- `main(argv [, sys])` runs one command line and returns its exit status: 0 on success, 1 for
-- a failed operation, 2 for a usage error, 3 for not_found, 4 for conflict. `sys` gives what
-- the command reads and writes (default: the process's): `stdin`, `stdout`, `stderr` (files),
-- `getenv(name)` and `isatty(name)` ("stdin", "stdout" or "stderr"). `bin/agentsession` runs
-- it on the process's arguments.
local argparse = require("argparse")
local agentsession = require("agentsession")
local context = require("agentsession.cli.context")

local M = {}

local function count_arg(what)
  return function(s)
    if s:match("^%d+$") and #s <= 15 then return tonumber(s) end
    return nil, what .. " must be a whole number (0, 1, 2, …), got \"" .. s .. "\""
  end
end

local FILTERS = [[
Filters: --tag T (given twice: both tags), --agent A, --parent ID.]]

local STORE_NOTE = [==[
The store is --store URI, or $AGENTSESSION_STORE: a SQLite file ("sqlite:PATH" or
a path), "redis://[[user]:password@]host[:port][/db][?prefix=P&timeout_ms=N]",
"redis+cluster://[[user]:password@]host:port,host:port/[?prefix=P]" or "memory:".
Commands that only read never create a SQLite file.]==]

local function add_filters(cmd)
  cmd:option("--tag", "Only sessions with this tag (again: all of them).")
    :count("*"):argname("<tag>")
  cmd:option("--agent", "Only sessions of this agent."):argname("<name>")
  cmd:option("--parent", "Only the forks of this session."):argname("<id>")
end

-- The parser of the command line. Help and completion end the parse through `stop`, which
-- raises after noting what to print: argparse's own actions would exit the process.
local function new_parser(stop)
  local parser = argparse("agentsession")
    :description("Look into a store of agent sessions, move sessions between stores, keep stores sound.")
    :epilog(STORE_NOTE .. "\n\nExit status: 0 success, 1 a failed operation, 2 a usage error, "
      .. "3 not found, 4 conflict.\nagentsession COMMAND --help tells more of each command.")
    :command_target("command")
  local function help_of(p)
    p:add_help({ action = function() stop(p:get_help() .. "\n") end })
  end
  help_of(parser)
  parser:flag("--version", "Print the version and exit.")
    :action(function() stop("agentsession " .. agentsession.VERSION .. "\n") end)
  parser:option("--store", "The store (default: $AGENTSESSION_STORE)."):argname("<uri>")

  local function command(name, summary, details, example)
    local cmd = parser:command(name, summary .. (details and "\n" .. details or ""))
      :summary(summary)
    if example then cmd:epilog("Example:\n   " .. example) end
    help_of(cmd)
    return cmd
  end

  local c = command("list", "List sessions, most recently updated first.",
    "A table for people: short id, name, agent, tags, turns, tokens, last update.\n"
    .. "--json: one JSON object of metadata a line. A short id stands for the\n"
    .. "session wherever an id is asked for.\n" .. FILTERS, "agentsession list --tag production --limit 20")
  add_filters(c)
  c:option("--limit", "At most this many sessions."):argname("<n>"):convert(count_arg("--limit"))
  c:option("--offset", "Skip this many sessions first."):argname("<k>"):convert(count_arg("--offset"))
  c:flag("--json", "JSON Lines of metadata.")

  c = command("show", "Show a session as a transcript.",
    "Who spoke, when, what was said, which tools were called and what they\n"
    .. "returned; long texts are folded. Colour by role when standard output is a\n"
    .. "terminal (never with NO_COLOR). --json prints the export document (with\n"
    .. "--last N: only those messages, and a \"window\").",
    "agentsession show 3f2c1a2b --last 10")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:option("--last", "Only the last N messages."):argname("<n>"):convert(count_arg("--last"))
  c:flag("--full", "Do not fold long texts.")
  c:flag("--json", "The export document.")

  c = command("export", "Write a session as one JSON document.",
    "The export document: metadata (with parent_id), messages and state.",
    "agentsession export 3f2c1a2b -o session.json")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:option("-o --output", "Write to this file (default: standard output)."):argname("<file>")

  c = command("import", "Store a session from an export document.",
    "Prints the id stored. A session with that id must not exist, unless --replace.",
    "agentsession import session.json")
  c:argument("file", "The document's file, or - for standard input."):argname("<file>")
  c:flag("--replace", "Overwrite a session with the same id.")

  c = command("dump", "Write every session as JSON Lines.",
    "One export document a line (parent_id kept), oldest first; restore reads\n"
    .. "it back. Reads one session at a time.\n" .. FILTERS,
    "agentsession --store sessions.db dump -o sessions.jsonl")
  add_filters(c)
  c:option("-o --output", "Write to this file (default: standard output)."):argname("<file>")

  c = command("restore", "Store every session of a dump.",
    "Keeps ids, lineage, tags, names, counts and times. A session whose id\n"
    .. "exists is reported and skipped, unless --replace: a restore can be run\n"
    .. "again.",
    "agentsession --store redis://127.0.0.1:6379/0 restore sessions.jsonl")
  c:argument("file", "The dump, or - for standard input."):argname("<file>")
  c:flag("--replace", "Overwrite sessions with the same ids.")

  c = command("copy", "Copy sessions into another store.",
    "Every matching session, one at a time, oldest first, as restore would\n"
    .. "store a dump. A session whose id exists in the target is reported and\n"
    .. "skipped, unless --replace: a copy can be run again.\n" .. FILTERS,
    "agentsession --store sessions.db copy --to redis://127.0.0.1:6379/0")
  c:option("--to", "The target store's URI."):argname("<uri>"):count(1)
  add_filters(c)
  c:flag("--replace", "Overwrite sessions with the same ids.")

  c = command("fork", "Copy a session under a new id; prints the new id.",
    "The copy's name is --name, or \"<name> (fork)\"; its parent_id is the source's id.",
    "agentsession fork 3f2c1a2b --name experiment --at 10")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:option("--name", "The copy's name."):argname("<name>")
  c:option("--at", "Keep only the first K messages."):argname("<k>"):convert(count_arg("--at"))

  c = command("rewind", "Keep only the first K messages of a session.", nil, "agentsession rewind 3f2c1a2b 4")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:argument("k", "How many messages to keep."):argname("<k>"):convert(count_arg("K"))

  c = command("tag", "Add tags to a session; prints its tags.", nil, "agentsession tag 3f2c1a2b reviewed")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:argument("tags", "The tags."):argname("<tag>"):args("+")

  c = command("untag", "Remove tags from a session; prints its tags.", nil, "agentsession untag 3f2c1a2b wip")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:argument("tags", "The tags."):argname("<tag>"):args("+")

  c = command("rename", "Rename a session.", nil, "agentsession rename 3f2c1a2b \"final delivery\"")
  c:argument("id", "The session's id (or the start of it)."):argname("<id>")
  c:argument("name", "The new name."):argname("<name>")

  c = command("rm", "Delete sessions.",
    "Asks first when standard input is a terminal, unless --yes.", "agentsession rm 3f2c1a2b 9d0e4f5a --yes")
  c:argument("ids", "The sessions' ids (or the start of them)."):argname("<id>"):args("+")
  c:flag("-y --yes", "Do not ask.")

  c = command("search", "Find the sessions that hold every word of a query.",
    "A session matches when one of its messages, or its name and tags taken\n"
    .. "together, hold every word: words are letters and digits, ASCII letters\n"
    .. "match in any case, \"words in quotes\" must follow each other. Most\n"
    .. "recently updated first: id, name, the message that matched (its number,\n"
    .. "or name), last update, and its text around the words. --json: one\n"
    .. "object { metadata, index, snippet } a line.\n" .. FILTERS,
    "agentsession search 'parser \"fixed the\"' --tag production")
  c:argument("query", "The words."):argname("<query>")
  c:option("--limit", "At most this many sessions (default 20)."):argname("<n>"):convert(count_arg("--limit"))
  add_filters(c)
  c:flag("--json", "JSON Lines of { metadata, index, snippet }.")

  c = command("prune", "Delete the sessions last updated before a time.",
    "Sessions updated before --before DATE (YYYY-MM-DD, the start of that day,\n"
    .. "or YYYY-MM-DDTHH:MM[:SS]; local time, or UTC with Z, or +HH:MM) or more than\n"
    .. "--older-than DURATION ago (30d, 12h, 1d12h; units s m h d w), that the\n"
    .. "filters keep and that do not carry --keep-tag. Prints the ids deleted.\n"
    .. "Asks first when standard input is a terminal, unless --yes; --dry-run\n"
    .. "prints the ids it would delete, deleting nothing. Nothing is ever\n"
    .. "deleted but by prune and rm.\n" .. FILTERS,
    "agentsession prune --older-than 90d --keep-tag keep --dry-run")
  c:option("--before", "Sessions last updated before this date."):argname("<date>")
  c:option("--older-than", "Sessions last updated longer ago than this."):argname("<duration>")
  c:option("--keep-tag", "Keep the sessions carrying this tag."):argname("<tag>")
  add_filters(c)
  c:flag("--dry-run", "Print the ids it would delete; delete nothing.")
  c:flag("-y --yes", "Do not ask.")

  c = command("stats", "Show the store: its kind, where it is, its sessions and its size.",
    "The size of a SQLite store is its file's (with its -wal); of another\n"
    .. "store, the size of its sessions as JSON, which reads every session.", "agentsession --store sessions.db stats")
  c:flag("--json", "One JSON object.")

  command("check", "Read every session and report each damaged one.",
    "Each damaged session is reported by id with the store's error; the exit\n"
    .. "status is 1 when any is. Reads one session at a time.", "agentsession --store sessions.db check")

  c = command("completion", "Print a shell completion script.", nil,
    "agentsession completion bash > /etc/bash_completion.d/agentsession")
  c:argument("shell", "bash, zsh or fish."):argname("<shell>"):choices({ "bash", "zsh", "fish" })
  return parser
end

-- The command named in argv, for the hint of a usage error.
local function command_in(parser, argv)
  local names = {}
  for _, cmd in ipairs(parser._commands) do names[cmd._name] = true end
  for _, a in ipairs(argv) do
    if names[a] then return a end
  end
  return nil
end

-- The module of each command, loaded when that command runs: a command starts fast.
local MODULE_OF = {
  list = "commands", show = "commands", export = "commands", import = "commands", fork = "commands",
  rewind = "commands", tag = "commands", untag = "commands", rename = "commands", rm = "commands",
  stats = "commands", dump = "transfer", restore = "transfer", copy = "transfer", check = "transfer",
  search = "retention", prune = "retention",
}

--- Runs one command line.
-- @tparam table argv the arguments, without the command's name
-- @tparam[opt] table sys `stdin`, `stdout`, `stderr`, `getenv`, `isatty` (default: the process's)
-- @treturn number the exit status
function M.main(argv, sys)
  local ctx = context.new(sys)
  local printed
  local STOP = {}
  local function stop(text)
    printed = text
    error(STOP, 0)
  end
  local status = ctx.guard(function()
    local parser = new_parser(stop)
    local ok, parsed, why = pcall(parser.pparse, parser, argv)
    if printed then
      ctx.write(printed)
      return 0
    end
    if not ok then error(parsed, 0) end
    if not parsed then
      local cmd = command_in(parser, argv)
      ctx.fail("usage", why .. " (agentsession " .. (cmd and cmd .. " " or "") .. "--help)")
    end
    local args = why
    if args.command == "completion" then
      ctx.write(parser["get_" .. args.shell .. "_complete"](parser))
      return 0
    end
    ctx.set_store(args.store)
    return require("agentsession.cli." .. MODULE_OF[args.command])[args.command](ctx, args) or 0
  end)
  ctx.close()
  return status
end

return M
