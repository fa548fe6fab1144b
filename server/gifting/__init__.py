"""Note-card gifting: pure rules, Lua steps and the service that runs them."""
