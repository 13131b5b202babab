-- The stores every contract spec runs against: one entry per store.
local agentsession = require("agentsession")

return {
  { name = "memory", new = function(opts) return agentsession.memory(opts) end },
}
