"""The audit trail: hash-chained events, history, replay and offline-verifiable exports.

`chain` appends events per stream with a SHA-256 chain over canonical JSON; `history`
rebuilds a case step by step for auditors; `export` writes a case's history as one file that
`zerorun verify-export` checks without a database. Verification against a re-execution lives
with the engine's front door (`engine.cases.verification`).
"""
