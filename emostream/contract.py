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


def validate_event_id(event_id: object) -> str:
    return _matching("event_id", event_id, EVENT_ID, EVENT_ID_RULE)


def validate_client_id(client_id: object) -> str:
    return _matching("client_id", client_id, CLIENT_ID, CLIENT_ID_RULE)


def validate_cluster(cluster: object) -> str:
    return _matching("cluster", cluster, CLUSTER_NAME, CLUSTER_NAME_RULE)


def _matching(field: str, value: object, grammar: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not grammar.fullmatch(value):
        raise InvalidField(field, f"{field} must be {rule}")
    return value


def whole_number_as_text(value: object) -> object:
    """The seed aliases' ids: earlier EmoStream clients send user and group ids as numbers. A
    whole number becomes its decimal string (1 and 1.0 are both "1"); anything else is
    returned as it is, for the id's grammar to judge."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value
