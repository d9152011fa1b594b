"""Running diagrams: SpiffWorkflow integration, the safe expression interpreter, the clock.

Specs and snapshots (`spiff`), the allow-listed interpreter every diagram expression and
script goes through (`expressions`), the injectable and pinned clock (`clock`), and the
recorded answers of reference functions that make re-execution deterministic (`recorded`).
May import `engine.errors` only; never the store, the pack, the audit trail or Flask.
"""
