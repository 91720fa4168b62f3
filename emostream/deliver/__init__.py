"""Deliver: one pub/sub subscription per node, fanned out to every connected browser."""
