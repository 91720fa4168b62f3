"""A private Redis Cluster on loopback ports, for the tests and the cluster benchmark.

Each node is a ``PrivateRedis`` (the same binary lookup as `emostream up`) started with
cluster mode on. The cluster is formed with plain cluster commands (MEET, ADDSLOTS,
REPLICATE) rather than ``redis-cli --cluster create``, so nothing beyond the server binary
is needed: primaries take equal slot ranges, each followed by one replica.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis as sync_redis

from .errors import RedisServerError
from .redis_server import PrivateRedis, free_port

SLOTS = 16384
# A node also listens on its port + 10000 (the cluster bus), so ports stay below this.
PORT_MAX = 55535


def cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port > PORT_MAX:
            continue
        try:
            with socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


class PrivateCluster:
    def __init__(self, primaries: int = 3, replicas_per_primary: int = 1) -> None:
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.nodes: list[PrivateRedis] = []

    @property
    def url(self) -> str:
        """Any node will do for a cluster client: this names the first one alive."""
        for node in self.nodes:
            if node.process is not None:
                return node.url
        raise RedisServerError("no node of the private cluster is running")

    def start(self, timeout_s: float = 30.0) -> PrivateCluster:
        count = self.primary_count * (1 + self.replicas_per_primary)
        for _ in range(count):
            node = PrivateRedis(
                port=cluster_port(),
                appendonly=True,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    # A replica promoted after a failover must serve at once.
                    "--cluster-replica-validity-factor",
                    "0",
                ],
            )
            self.nodes.append(node.start())
        for node in self.nodes[1:]:
            self.command(self.nodes[0], "CLUSTER MEET", "127.0.0.1", node.port)
        step = SLOTS // self.primary_count
        for index, node in enumerate(self.nodes[: self.primary_count]):
            end = SLOTS if index == self.primary_count - 1 else (index + 1) * step
            self.command(node, "CLUSTER ADDSLOTS", *range(index * step, end))
        self._wait(lambda: self._all_know(count), timeout_s, "the nodes to meet")
        for index, node in enumerate(self.nodes[self.primary_count :]):
            primary = self.nodes[index % self.primary_count]
            primary_id = self.command(primary, "CLUSTER MYID")
            self.command(node, "CLUSTER REPLICATE", primary_id)
        self.wait_ok(timeout_s)
        return self

    def command(self, node: PrivateRedis, *args: Any) -> Any:
        with sync_redis.Redis(port=node.port, socket_timeout=5, decode_responses=True) as client:
            # Cluster replies as Redis sends them: redis-py reshapes some into dicts.
            for name in ("CLUSTER NODES", "CLUSTER INFO"):
                client.set_response_callback(name, lambda reply, **_: reply)
            return client.execute_command(*args)

    def _all_know(self, count: int) -> bool:
        return all(
            len(self.command(n, "CLUSTER NODES").splitlines()) == count
            for n in self.nodes
            if n.process is not None
        )

    def _state_ok(self) -> bool:
        for node in self.nodes:
            if node.process is None:
                continue
            info: Any = self.command(node, "CLUSTER INFO")
            if "cluster_state:ok" not in info:
                return False
        # Every slot-owning primary up, and every other live node attached as a replica (a
        # killed primary's replica counts among the primaries once it is promoted).
        roles = [self.role(node) for node in self.live()]
        serving = sum(1 for node in self.primaries() if self.slot_ranges(node))
        return serving == self.primary_count and roles.count("slave") == len(roles) - serving

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and its replicas are attached."""
        self._wait(self._state_ok, timeout_s, "cluster_state:ok")

    def live(self) -> list[PrivateRedis]:
        return [node for node in self.nodes if node.process is not None]

    def role(self, node: PrivateRedis) -> str:
        return str(self.command(node, "ROLE")[0])

    def primaries(self) -> list[PrivateRedis]:
        return [node for node in self.live() if self.role(node) == "master"]

    def primary_of(self, key: str) -> PrivateRedis:
        slot = int(self.command(self.live()[0], "CLUSTER KEYSLOT", key))
        for node in self.primaries():
            for start, end in self.slot_ranges(node):
                if start <= slot <= end:
                    return node
        raise RedisServerError(f"no primary serves slot {slot}")

    def slot_ranges(self, node: PrivateRedis) -> list[tuple[int, int]]:
        myself = [
            line.split()
            for line in self.command(node, "CLUSTER NODES").splitlines()
            if "myself" in line.split()[2]
        ][0]
        ranges = []
        for part in myself[8:]:
            if part.startswith("["):
                continue  # a slot being migrated or imported
            start, _, end = part.partition("-")
            ranges.append((int(start), int(end or start)))
        return ranges

    def _wait(self, done: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except sync_redis.RedisError:
                pass
            time.sleep(0.1)
        raise RedisServerError(f"the private cluster did not reach {what} in {timeout_s} s")

    def replication_lag(self, primary: PrivateRedis) -> int:
        """Bytes of the primary's replication stream its slowest replica has not acknowledged."""
        info: Any = self.command(primary, "INFO", "replication")  # parsed by redis-py
        offset = int(info["master_repl_offset"])
        acked = [
            int(value["offset"])
            for name, value in info.items()
            if name.startswith("slave") and isinstance(value, dict)
        ]
        return offset - min(acked, default=offset)

    def flushall(self) -> None:
        """Empty every primary (replicas follow) and its script cache."""
        for node in self.primaries():
            self.command(node, "FLUSHALL")
            self.command(node, "SCRIPT", "FLUSH")

    def restore(self, timeout_s: float = 30.0) -> None:
        """Start again any node that was killed (it rejoins from its nodes.conf, as a
        replica if its replica was promoted meanwhile) and wait for cluster_state:ok."""
        for node in self.nodes:
            if node.process is None:
                node.start()
        self.wait_ok(timeout_s)

    def move_slot(self, slot: int, target: PrivateRedis) -> int:
        """Move one slot and its keys to ``target`` the way `redis-cli --cluster reshard` does
        (SETSLOT IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE); returns the keys moved."""
        source = next(
            node
            for node in self.primaries()
            if any(start <= slot <= end for start, end in self.slot_ranges(node))
        )
        source_id, target_id = (
            self.command(source, "CLUSTER MYID"),
            self.command(target, "CLUSTER MYID"),
        )
        self.command(target, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        self.command(source, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while names := self.command(source, "CLUSTER GETKEYSINSLOT", slot, 1000):
            self.command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)
            moved += len(names)
        # The target first, then the source, as redis-cli does: no moment where neither
        # claims the slot.
        others = [n for n in self.primaries() if n.port not in (source.port, target.port)]
        for node in (target, source, *others):
            self.command(node, "CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []


@contextmanager
def private_cluster(primaries: int = 3) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(primaries)
    try:
        yield cluster.start()
    finally:
        cluster.close()
