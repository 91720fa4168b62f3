"""The public contract both tiers share: id grammars with their messages, the default event and
the contract version (../shared/DESIGN.md, "Public contract (v1)").

Ingest, delivery and the settings check ids against the grammars written here once; neither
tier imports the other for them.
"""

from __future__ import annotations

import re

from .errors import InvalidField

CONTRACT_VERSION = 1

# Where `POST /send_emoji` counts a reaction that names no event, and what `/` shows.
DEFAULT_EVENT = "live"

EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
EVENT_ID_RULE = "1-64 characters of A-Za-z0-9_-"
USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
USER_ID_RULE = "1-64 characters of A-Za-z0-9_.:@-"
# User ids joined by newlines, each followed by one: a whole column checked in one match.
USER_IDS = re.compile(r"(?:[A-Za-z0-9_.:@-]{1,64}\n)*")
# A registered client is named like a user, a cluster of delivery nodes like an event.
CLIENT_ID = USER_ID
CLIENT_ID_RULE = USER_ID_RULE
CLUSTER_NAME = EVENT_ID
CLUSTER_NAME_RULE = EVENT_ID_RULE


def validate_event_id(event_id: str) -> str:
    if not EVENT_ID.fullmatch(event_id):
        raise InvalidField("event_id", f"event_id must be {EVENT_ID_RULE}")
    return event_id


def validate_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise InvalidField("client_id", f"client_id must be {CLIENT_ID_RULE}")
    return client_id


def validate_cluster(cluster: object) -> str:
    if not isinstance(cluster, str) or not CLUSTER_NAME.fullmatch(cluster):
        raise InvalidField("cluster", f"cluster must be {CLUSTER_NAME_RULE}")
    return cluster
