-- The session that spec/nvim/write_rich.lua writes with Lua 5.4 and
-- spec/nvim/read_rich.lua reads inside Neovim: each interpreter evaluates
-- these literals itself, and what one wrote must equal what the other made.
-- Every number is exact in a double (integers up to 2^53), so the values are
-- the same on Lua 5.4 and LuaJIT; 1.0 is a float on 5.4 and 1 on LuaJIT.
return function(agentsession)
  local null, array = agentsession.null, agentsession.array
  return {
    metadata = {
      id = "rich-from-lua5.4",
      name = "caf\195\169 \240\159\152\128",
      tags = { "t\195\169", "2^53" },
      agent_name = "agent \226\130\172",
      created_at = 1700000000123,
      turn_count = 10,
      total_tokens = 9007199254740992,
    },
    messages = {
      { role = "user", content = "caf\195\169 \240\159\152\128 \226\130\172 \228\184\173\230\150\135",
        top = 9007199254740992, bottom = -9007199254740992, below = 9007199254740991 },
      { role = "assistant", content = null,
        calls = array{ { id = "c1", args = { depth = 3, path = array{ "a", "b" }, ratio = 0.1 } } } },
      array(),
      {},
      0.1,
      -0.0,
      1.0,
      array{ 1e300, 5e-324, 2.5, 1 / 3, -123456789.125, 2 ^ 53 },
      "a\0b\n\"quoted\" \\ tab\t",
      array{ true, false, null },
      { a = { b = { c = { d = array{ 1, array{ 2, array{ 3, {} } }, { e = "f" } } } } } },
    },
    state = { cwd = "/home/\195\169", list = array(), object = {}, none = null, half = 0.5,
      big = 9007199254740992 },
  }
end
