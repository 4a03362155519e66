"""Diff data: reading and validating records, splitting, encoding and batching."""
