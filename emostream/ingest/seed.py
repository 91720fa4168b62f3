"""What the seed's clients send to ``POST /send_emoji``, read leniently.

Earlier EmoStream clients post ``{"user_id", "emoji_type", "timestamp"}`` with numeric user
ids and times from ``datetime.now().isoformat()`` (no zone), and count any answer but 200 as a
failure. This alias takes what they send: a whole-number user id becomes its decimal string,
and a ``timestamp`` that cannot be read is dropped and counted, never a reason to refuse the
reaction (it is kept for analytics only). The user id and emoji rules are v1's. Reactions
are checked one at a time; the v1 endpoint keeps the column-at-a-time hot path.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..contract import USER_ID_RULE, whole_number_as_text
from .timestamps import read_seed_ts
from .validation import (
    SEED_FIELDS,
    ReactionColumns,
    as_reaction_list,
    reaction_object,
    user_and_emoji,
)

SEED_USER_ID_RULE = f"{USER_ID_RULE}, or a whole number"


def validate_seed_reactions(
    payload: Any, max_batch: int, allowed: Collection[str] = ()
) -> tuple[ReactionColumns, int]:
    """Every reaction of the payload (one object or an array, all-or-nothing) and how many
    timestamps were dropped as unreadable; an ApiError naming the first bad field."""
    items, is_array = as_reaction_list(payload, max_batch)
    columns = ReactionColumns()
    dropped = 0
    for index, raw in enumerate(items):
        where = f"[{index}]." if is_array else ""
        item = reaction_object(raw, where)
        user_id = whole_number_as_text(item.get(SEED_FIELDS.user_id))
        user_id, emoji = user_and_emoji(
            item, user_id, where, allowed, SEED_FIELDS, SEED_USER_ID_RULE
        )
        client_ts_ms, unreadable = read_seed_ts(item.get(SEED_FIELDS.ts))
        columns.users.append(user_id)
        columns.emojis.append(emoji)
        columns.client_ts_ms.append(client_ts_ms)
        dropped += unreadable
    return columns, dropped
