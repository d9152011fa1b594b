"""Bounds every request is held to, in one place: the app, its checks and the OpenAPI
document read them here."""

# Deeper JSON is refused before anything reads it: the forms of the pack nest a few levels.
MAX_JSON_DEPTH = 32
# Ids in URLs are database integers (32-bit on PostgreSQL): larger ones name nothing.
MAX_ID = 2**31 - 1
# A request body (uploads are at most 8 MiB once base64-encoded in JSON).
MAX_BODY_BYTES = 11 * 1024 * 1024
