"""giftwire server: gateway, settlement worker, admin API, Redis plumbing."""
