"""Shared test helpers, imported as `support.<module>` (fixtures stay in conftest.py)."""
