"""Getting events in: parse → validate → redact → enrich → EventRecord → storage."""
