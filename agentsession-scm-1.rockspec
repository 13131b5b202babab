rockspec_format = "3.0"
package = "agentsession"
version = "scm-1"
source = {
  -- The project's canonical address; a release rockspec (make dist) points at its tarball.
  url = "git+https://github.com/agentsession/agentsession.git",
}
description = {
  summary = "Sessions of AI agents for Lua: create, persist, resume, fork, rewind, tag and list conversations",
  detailed = [[
    A C library with a Lua binding (Lua 5.1 to 5.4 and LuaJIT) that keeps the sessions of AI agents:
    an exact JSON codec, one store interface with an in-memory, a SQLite and a
    Redis store, stores written in Lua with a conformance suite to prove them,
    and a manager userdata with save, resume (whole or a window), append, list,
    fork, rewind, tag, untag, rename, delete, export and import.
  ]],
  homepage = "https://github.com/agentsession/agentsession",
  issues_url = "https://github.com/agentsession/agentsession/issues",
  labels = { "ai", "agent", "session", "json", "sqlite", "redis" },
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "argparse >= 0.7",
}
external_dependencies = {
  UUID = { header = "uuid/uuid.h", library = "uuid" },
  SQLITE = { header = "sqlite3.h", library = "sqlite3" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["agentsession"] = "lua/agentsession/init.lua",
    ["agentsession.cli"] = "lua/agentsession/cli.lua",
    ["agentsession.cli.commands"] = "lua/agentsession/cli/commands.lua",
    ["agentsession.cli.context"] = "lua/agentsession/cli/context.lua",
    ["agentsession.cli.retention"] = "lua/agentsession/cli/retention.lua",
    ["agentsession.cli.show"] = "lua/agentsession/cli/show.lua",
    ["agentsession.cli.text"] = "lua/agentsession/cli/text.lua",
    ["agentsession.cli.transfer"] = "lua/agentsession/cli/transfer.lua",
    ["agentsession.cli.walk"] = "lua/agentsession/cli/walk.lua",
    ["agentsession.conformance"] = "lua/agentsession/conformance/init.lua",
    ["agentsession.conformance.append"] = "lua/agentsession/conformance/append.lua",
    ["agentsession.conformance.close"] = "lua/agentsession/conformance/close.lua",
    ["agentsession.conformance.delete"] = "lua/agentsession/conformance/delete.lua",
    ["agentsession.conformance.errors"] = "lua/agentsession/conformance/errors.lua",
    ["agentsession.conformance.expect_version"] = "lua/agentsession/conformance/expect_version.lua",
    ["agentsession.conformance.export_import"] = "lua/agentsession/conformance/export_import.lua",
    ["agentsession.conformance.fork"] = "lua/agentsession/conformance/fork.lua",
    ["agentsession.conformance.labels"] = "lua/agentsession/conformance/labels.lua",
    ["agentsession.conformance.lineage"] = "lua/agentsession/conformance/lineage.lua",
    ["agentsession.conformance.op_id"] = "lua/agentsession/conformance/op_id.lua",
    ["agentsession.conformance.list"] = "lua/agentsession/conformance/list.lua",
    ["agentsession.conformance.prune"] = "lua/agentsession/conformance/prune.lua",
    ["agentsession.conformance.resume"] = "lua/agentsession/conformance/resume.lua",
    ["agentsession.conformance.rewind"] = "lua/agentsession/conformance/rewind.lua",
    ["agentsession.conformance.save"] = "lua/agentsession/conformance/save.lua",
    ["agentsession.conformance.search"] = "lua/agentsession/conformance/search.lua",
    ["agentsession.conformance.support"] = "lua/agentsession/conformance/support.lua",
    ["agentsession.conformance.timestamps"] = "lua/agentsession/conformance/timestamps.lua",
    ["agentsession.conformance.too_large"] = "lua/agentsession/conformance/too_large.lua",
    ["agentsession.conformance.values"] = "lua/agentsession/conformance/values.lua",
    ["agentsession.conformance.version"] = "lua/agentsession/conformance/version.lua",
    ["agentsession.conformance.window"] = "lua/agentsession/conformance/window.lua",
    ["agentsession.core"] = {
      sources = {
        "csrc/core/as_alloc.c",
        "csrc/core/as_buf.c",
        "csrc/core/as_digest.c",
        "csrc/core/as_error.c",
        "csrc/core/as_json.c",
        "csrc/core/as_manager.c",
        "csrc/core/as_search.c",
        "csrc/core/as_session.c",
        "csrc/core/as_store_memory.c",
        "csrc/core/as_store_redis.c",
        "csrc/core/as_store_sqlite.c",
        "csrc/core/as_utf8.c",
        "csrc/lua/lcommon.c",
        "csrc/lua/lcompat.c",
        "csrc/lua/lcustom.c",
        "csrc/lua/lerror.c",
        "csrc/lua/ljson.c",
        "csrc/lua/lmanager.c",
        "csrc/lua/lmemory.c",
        "csrc/lua/lmodule.c",
        "csrc/lua/lredis.c",
        "csrc/lua/lsession.c",
        "csrc/lua/lsqlite.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(UUID_INCDIR)", "$(SQLITE_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(UUID_LIBDIR)", "$(SQLITE_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      libraries = { "uuid", "sqlite3", "hiredis" },
    },
  },
  install = {
    -- the command for people who look after stores (docs/cli.md)
    bin = { agentsession = "bin/agentsession" },
  },
}
