"""The private Redis Cluster the cluster tests run on: formed, sharded and able to fail over."""

from __future__ import annotations

from emostream import keys
from emostream.redis_cluster import PrivateCluster


def test_the_cluster_has_three_primaries_each_with_a_replica(
    redis_cluster: PrivateCluster,
) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    assert len(redis_cluster.live()) == 6
    covered = sorted(r for node in primaries for r in redis_cluster.slot_ranges(node))
    assert covered[0][0] == 0 and covered[-1][1] == 16383
    assert all(a[1] + 1 == b[0] for a, b in zip(covered, covered[1:], strict=False))
    # A shard's keys share a hash tag, so they live on one primary.
    owner = redis_cluster.primary_of(keys.raw_stream(0))
    assert redis_cluster.primary_of(keys.producers(0)).port == owner.port
