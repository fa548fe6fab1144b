"""The platform backend's HTTP admin API."""
