"""The audit trail: hash-chained events, history, replay and offline-verifiable exports.

`chain` appends events per stream with a SHA-256 chain over canonical JSON; `history`
rebuilds a case step by step for auditors; `export` writes a case's history as one file that
`zerorun verify-export` checks without a database; `merkle` hashes trees as certificate
transparency does, `seals` signs a Merkle root over every stream's head with a key kept
outside the database, and `sealcheck` checks the database against seals auditors hold.
Verification against a re-execution lives with the engine's front door
(`engine.cases.verification`).
"""
