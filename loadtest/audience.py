"""What a live-match audience sends: the emoji mix and user ids shared by every load generator.

Kept free of imports so the locustfile (which runs under gevent) and the asyncio benchmarks
can share it.
"""

from __future__ import annotations

import random

# A few emojis dominate, a long tail follows; skin tones, a flag and a VS16 heart included
# so validation sees the multi-code-point forms real clients send.
EMOJI_MIX = {
    "\U0001f525": 30,  # fire
    "\U0001f602": 20,  # face with tears of joy
    "\U0001f44f": 15,  # clapping hands
    "\u2764\ufe0f": 10,  # red heart
    "\U0001f62e": 8,  # face with open mouth
    "\U0001f389": 6,  # party popper
    "\U0001f622": 4,  # crying face
    "\U0001f64f\U0001f3fd": 4,  # folded hands, medium skin tone
    "\U0001f3cf": 2,  # cricket game
    "\U0001f1ee\U0001f1f3": 1,  # flag of India
}
AUDIENCE = 1_000_000


def reactions(rng: random.Random, count: int) -> list[dict[str, str]]:
    emojis, weights = list(EMOJI_MIX), list(EMOJI_MIX.values())
    return [
        {"user_id": f"u-{rng.randrange(AUDIENCE)}", "emoji": emoji}
        for emoji in rng.choices(emojis, weights, k=count)
    ]
