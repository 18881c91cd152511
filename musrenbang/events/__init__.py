"""The event log: schema, canonical encoding, hashing, the append path, reads, verification and
projections. It is the audit record: append-only at every layer, hash-chained per region."""
