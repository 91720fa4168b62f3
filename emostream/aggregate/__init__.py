"""Aggregate: workers count raw batches into windows and close windows on time."""
