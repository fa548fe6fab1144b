"""Redis plumbing: key names, Lua loading, the embedded Valkey server."""
