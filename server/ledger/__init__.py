"""Ledger: system accounts, grants and revocations, the invariant audit."""
