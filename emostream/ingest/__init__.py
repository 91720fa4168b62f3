"""Ingest: validate reactions, answer 202, buffer in process, flush packed batches to Redis."""
