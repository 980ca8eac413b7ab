"""``ImageRecordIter`` and its stages: order, parse and plan, decode and execute, batch, prefetch."""
