"""WebSocket gateway: endpoint, auth, per-connection send queue, hub."""
