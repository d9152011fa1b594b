"""Process definitions: reading and validating BPMN, DMN and forms, and their library.

`xml` parses user XML safely; `loader` validates a whole pack (every element the engine can
run, owners, due rules, forms); `forms` validates submissions against JSON Schemas; `library`
stores immutable versions, drafts and publications; `diff` compares two versions element by
element; `migration` moves running cases between versions; `dmn_table` edits decision tables.
May import `engine.runtime`, `engine.store` and `engine.audit.chain`; never `engine.cases`
except the library, which saves through the engine's front door.
"""
