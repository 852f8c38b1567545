"""Task sources: generators of examples from libraries users already run (reasoning-gym)."""
