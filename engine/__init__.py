"""zerorun's generic BPMN case engine: durable cases on SpiffWorkflow, audited and replayable.

Subpackages: `cases` (the front door: commands and queries), `runtime` (SpiffWorkflow,
safe expressions, clock), `pack` (process definitions and their library), `audit` (hash
chain, history, export), `store` (models, database, migrations, files). Top-level modules
are shared by all of them: `errors`, `actors`, `config`, `accounts`, `hooks`.
The engine never imports Flask, `webapp` or `agency`; services built on it register hooks.
"""
