"""The v1 reaction body decoded and checked with no Python work per reaction where it can.

msgspec decodes a UTF-8 JSON body straight into typed structs and checks in C what types can
say: one reaction object or an array of them, each with string ``user_id``, an ``emoji`` that
is one of Unicode's emoji forms (a ``Literal`` of every form, looked up in C; the strings it
gives are the Literal's own, so their hashes are already computed), an optional ``ts`` of a
JSON type a client time can have, and no other field. What types cannot say runs a column at
a time, as validation.py's ``_common_columns`` does: one regex over the joined user ids, one
dict lookup per emoji for its fully-qualified form, client times converted by ``map``.

Any body this path does not take whole (msgspec refuses it, a column check fails, an unknown
field, a ``ts`` string that is not a time, too many reactions) goes to the reference path,
``parse_body`` and ``validate_reactions``, which answers it, errors and field names included.
So this path only accepts what the reference accepts, with the same columns, and never
answers an error itself (tests/test_decoding.py compares the two over generated bodies).

Unknown fields are refused here rather than skipped because msgspec skips them without
checking their strings are UTF-8, where ``json.loads`` refuses the body.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from .validation import (
    FULLY_QUALIFIED_BY_BARE_FORM,
    JSON_TYPES,
    ReactionColumns,
    charset,
    media_type,
    parse_body,
    validate_reactions,
)

# Every form an emoji may be sent in that validation.py's rule maps to a fully-qualified
# emoji without a look at anything else: each fully-qualified sequence and its bare form.
# Other forms (selectors in unusual places) are valid too; the reference path takes them.
FULLY_QUALIFIED_BY_FORM: dict[str, str] = {
    **FULLY_QUALIFIED_BY_BARE_FORM,
    **{qualified: qualified for qualified in FULLY_QUALIFIED_BY_BARE_FORM.values()},
}

if TYPE_CHECKING:
    EmojiForm = str
else:
    EmojiForm = Literal[tuple(sorted(FULLY_QUALIFIED_BY_FORM))]


# contract.py's USER_ID, split: its lengths checked by msgspec in C, its characters by one
# regex over the joined column (newlines join it), with no counted repeat to slow it down.
# tests/test_decoding.py checks the two halves make USER_ID.
USER_ID_LENGTH = msgspec.Meta(min_length=1, max_length=64)
USER_ID_COLUMN = re.compile(r"[A-Za-z0-9_.:@\n-]*")


class _Reaction(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    # gc=False: a struct holds strings and numbers only, so it can be in no reference cycle,
    # and the collector need not track the hundreds a body makes.
    user_id: Annotated[str, USER_ID_LENGTH]
    emoji: EmojiForm
    ts: int | float | str | None = None


_DECODER = msgspec.json.Decoder(list[_Reaction] | _Reaction)
_PLAIN_JSON = "application/json"


def read_reactions(
    content_type: str | None, body: bytes, max_batch: int, allowed: Collection[str] = ()
) -> ReactionColumns:
    """``validate_reactions(parse_body(content_type, body), ...)``, the same answer for every
    body, with no Python work per reaction for the common one."""
    if content_type == _PLAIN_JSON or (
        media_type(content_type) in JSON_TYPES and charset(content_type) in (None, "utf-8", "utf8")
    ):
        try:
            decoded = _DECODER.decode(body)
        except ValueError:
            # msgspec's DecodeError and ValidationError, and UnicodeDecodeError for a string
            # that is not UTF-8: the reference path answers, naming the field.
            pass
        else:
            columns = _columns(decoded, max_batch, allowed)
            if columns is not None:
                return columns
    return validate_reactions(parse_body(content_type, body), max_batch, allowed)


def _columns(
    decoded: list[_Reaction] | _Reaction, max_batch: int, allowed: Collection[str]
) -> ReactionColumns | None:
    """The checked columns, or None when the reference path must decide."""
    if isinstance(decoded, list):
        if not decoded or len(decoded) > max_batch:
            return None
        items = decoded
    else:
        items = [decoded]
    users = [item.user_id for item in items]
    joined = "\n".join(users) + "\n"
    # A user id holding a newline would pass the regex as two: the count catches it.
    if joined.count("\n") != len(users) or not USER_ID_COLUMN.fullmatch(joined):
        return None
    qualified = FULLY_QUALIFIED_BY_FORM
    emojis = [qualified[item.emoji] for item in items]
    if allowed and not set(emojis).issubset(allowed):
        return None
    return ReactionColumns.with_client_times(users, emojis, [item.ts for item in items])
