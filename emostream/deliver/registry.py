"""Delivery nodes in Redis: each node's heartbeat, and client registration on a cluster.

A node writes ``delivery_node(id)`` with a TTL every third of it and its load into its
cluster's sorted set. A node is live exactly while its key exists: a killed node stops
being chosen once its TTL runs out; a stopped one removes itself at once. A registration picks
the lowest load among the cluster's live nodes and adds one to it at once, so a burst of
registrations spreads over the nodes before their next heartbeats report real counts.

A registration is given a random token, stored only as its digest with the assignment.
Unregistering needs it, and so does registering the same client id again: a client id is
claimed with HSETNX, so nobody can take over (and then unregister) another's registration.
Registrations through the seed's ``/register`` are open (its protocol has no token), as the
seed's were.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..auth import new_token, same_secret, token_digest
from ..connection import REDIS_FAULTS
from ..errors import Conflict, Forbidden, InvalidField, NotFound, Unauthorized, Unavailable
from ..lifecycle import instance_id, sleep_unless
from ..settings import Settings
from .hub import Hub

log = logging.getLogger(__name__)

# A registration is forgotten a day after it was made unless the client registers again.
CLIENT_REGISTRATION_TTL_S = 24 * 3600
# The field of a stored registration holding its token's digest (never answered).
TOKEN_DIGEST_FIELD = "token_sha256"


@dataclass(frozen=True)
class Node:
    node: str
    cluster: str
    url: str
    # Connections at its last heartbeat, as the node reported them.
    connections: int
    # What assignment balances on: those connections plus the clients assigned since.
    load: int = 0

    def describe(self) -> dict[str, Any]:
        return {"node": self.node, "cluster": self.cluster, "url": self.url} | {
            "connections": self.connections
        }


async def live_nodes(redis: Redis, cluster: str, prune: bool = True) -> list[Node]:
    """The cluster's live nodes, least loaded first (by the load the cluster's sorted set
    holds: the connections at each node's last heartbeat plus clients assigned since); with
    ``prune``, nodes whose registration expired are removed on the way."""
    loads: Any = await redis.zrange(keys.cluster_nodes(cluster), 0, -1, withscores=True)
    if not loads:
        return []
    ids = [member.decode() for member, _load in loads]
    found: Any = await redis.mget([keys.delivery_node(node) for node in ids])
    live, dead = [], []
    for (node, (_member, load)), raw in zip(zip(ids, loads, strict=True), found, strict=True):
        if raw is None:
            dead.append(node)
            continue
        info = json.loads(raw)
        live.append(Node(node, info["cluster"], info["url"], int(info["connections"]), int(load)))
    if dead and prune:
        await redis.zrem(keys.cluster_nodes(cluster), *dead)
    return sorted(live, key=lambda n: (n.load, n.node))


@dataclass(eq=False)
class Registry:
    redis: Redis
    settings: Settings
    hub: Hub
    node_id: str = field(init=False, default_factory=instance_id)

    # -- this node ---------------------------------------------------------------------------

    def me(self) -> Node:
        return Node(
            self.node_id, self.settings.cluster, self.settings.node_url, self.hub.connections
        )

    async def beat(self) -> None:
        me = self.me()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(
            keys.delivery_node(me.node), json.dumps(me.describe()), px=self.settings.node_ttl_ms
        )
        pipe.zadd(keys.cluster_nodes(me.cluster), {me.node: me.connections})
        pipe.sadd(keys.CLUSTERS, me.cluster)
        await pipe.execute()

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat until ``stop``, then leave the cluster at once."""
        every_s = self.settings.node_ttl_ms / 3000
        while not stop.is_set():
            try:
                await self.beat()
            except REDIS_FAULTS as exc:
                log.warning("delivery heartbeat failed: %s", exc)
            await sleep_unless(stop, every_s)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(keys.delivery_node(self.node_id))
            pipe.zrem(keys.cluster_nodes(self.settings.cluster), self.node_id)
            await pipe.execute()
        except REDIS_FAULTS as exc:
            log.warning("could not unregister this node (its TTL will): %s", exc)

    # -- every node ----------------------------------------------------------------------------

    async def assign(
        self,
        event_id: str,
        client_id: str,
        cluster: str,
        token: str | None = None,
        open_registration: bool = False,
    ) -> dict[str, Any]:
        """Assign ``client_id`` to the least-loaded live node of ``cluster``.

        The answer carries a new token, which unregistering and registering the id again
        need; ``token`` is the client's current one when it registers again. An open
        registration (the seed's ``/register``, whose protocol has no token) carries none:
        like an id nobody holds, anyone may register it again or remove it. Conflict when the
        id is held with a token that ``token`` does not match."""
        nodes = await live_nodes(self.redis, cluster)
        if not nodes:
            # A cluster no node ever joined is the client's mistake (4xx); a known cluster
            # whose nodes are all gone is ours, and may come back (503).
            if not await self.redis.sismember(keys.CLUSTERS, cluster):
                message = f"no delivery node has joined cluster {cluster!r}"
                raise InvalidField("cluster", message, code="unknown_cluster")
            raise Unavailable(f"no live delivery node in cluster {cluster!r}", code="no_live_node")
        chosen = nodes[0]
        assignment = {
            "client_id": client_id,
            "event_id": event_id,
            "cluster": cluster,
            "node": chosen.node,
            "stream_url": f"{chosen.url}/v1/events/{event_id}/stream",
        }
        clients = keys.event_clients(keys.shard_of(event_id, self.settings.shards), event_id)
        given = token
        token = None if open_registration else new_token()
        claimed: Any = await self.redis.hsetnx(clients, client_id, _record(assignment, token))
        if not claimed:
            stored: Any = await self.redis.hget(clients, client_id)
            holder = None if stored is None else _token_digest_of(stored)
            if holder is not None:
                if given is None or not same_secret(token_digest(given), holder):
                    raise Conflict(
                        f"client_id {client_id!r} is registered; registering it again needs "
                        "its token (Authorization: Bearer)",
                        "client_id",
                        code="client_id_taken",
                    )
                token = given  # the same client again: its token stays
        pipe = self.redis.pipeline(transaction=False)
        pipe.zincrby(keys.cluster_nodes(cluster), 1, chosen.node)
        if not claimed:
            pipe.hset(clients, client_id, _record(assignment, token))
        pipe.expire(clients, CLIENT_REGISTRATION_TTL_S)
        await pipe.execute()
        return assignment if token is None else {**assignment, "token": token}

    async def unregister(self, event_id: str, client_id: str, token: str | None) -> None:
        """Forget a registration: NotFound when there is none; when it holds a token,
        Unauthorized without one and Forbidden with another."""
        clients = keys.event_clients(keys.shard_of(event_id, self.settings.shards), event_id)
        stored: Any = await self.redis.hget(clients, client_id)
        if stored is None:
            raise NotFound(f"no client {client_id!r} registered for {event_id}")
        holder = _token_digest_of(stored)
        if holder is not None:
            if token is None:
                raise Unauthorized("unregistering needs Authorization: Bearer <registration token>")
            if not same_secret(token_digest(token), holder):
                raise Forbidden("this token is not the one the registration was given", "client_id")
        await self.redis.hdel(clients, client_id)


def _record(assignment: dict[str, Any], token: str | None) -> str:
    """A registration as stored: its assignment and its token's digest (none when open)."""
    if token is None:
        return json.dumps(assignment)
    return json.dumps({**assignment, TOKEN_DIGEST_FIELD: token_digest(token)})


def _token_digest_of(stored: bytes | str) -> str | None:
    """The token digest a stored registration holds; None for an open one."""
    try:
        digest = json.loads(stored).get(TOKEN_DIGEST_FIELD)
    except (ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None
