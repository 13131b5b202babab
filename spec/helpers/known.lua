-- The known session of the bad-input specs (04 and 14): a valid session with
-- the given id, three messages, two tags, a name and counts. Each call returns
-- new tables, so a row may break one thing in it.
return function(id)
  return {
    metadata = {
      id = id, name = "known", tags = { "a", "b" }, agent_name = "code-agent",
      created_at = 1000, updated_at = 0, turn_count = 3, total_tokens = 10,
    },
    messages = {
      { role = "user", content = "one" },
      { role = "assistant", content = { { type = "text", text = "two" } } },
      { role = "user", content = "three" },
    },
    state = { cwd = "/home/user", depth = 1 },
  }
end
