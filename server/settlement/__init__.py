"""Settlement worker: reads the gift stream and applies the Lua steps."""
