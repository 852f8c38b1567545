"""Rubricon's ML core. Plain Python: never imports Django (see ARCHITECTURE.md)."""
