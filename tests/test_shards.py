"""The key tagging of a cluster shard (:mod:`dagrq.cluster`), against a real Redis: the key
positions agree with the server's own ``COMMAND GETKEYS`` for every command dagrq and RQ
send, and a tagged Lua script touches only tagged keys while seeing logical names. (Runs on
a real Redis Cluster: tests/reliability/test_cluster.py.)"""

from __future__ import annotations

import pytest
import redis

from dagrq.cluster import (
    key_positions,
    shard_of,
    shard_tags,
    slot_of_tag,
    tag_args,
    tag_key,
    tag_script,
    untag_key,
    untag_reply,
)
from dagrq.connection import connect
from dagrq.errors import ConnectionConfigError

TAG = "{s1.12}"

COMMANDS = [
    ("GET", "dagrq:a"),
    ("HSET", "rq:job:x", "f", "v"),
    ("DEL", "dagrq:a", "rq:b", "mine"),
    ("EXISTS", "dagrq:a", "dagrq:b"),
    ("MGET", "a", "b"),
    ("WATCH", "rq:job:x", "rq:wip:q"),
    ("RPOPLPUSH", "rq:queue:q", "rq:queue:q:intermediate"),
    ("LMOVE", "a", "b", "LEFT", "RIGHT"),
    ("SMOVE", "a", "b", "m"),
    ("BLPOP", "dagrq:wake:a", "dagrq:wake:b", "1"),
    ("EVALSHA", "0" * 40, "2", "dagrq:run:x", "rq:job:y", "argv"),
    ("EVAL", "return 1", "1", "dagrq:k", "x"),
    ("ZUNIONSTORE", "dest", "2", "a", "b", "WEIGHTS", "1", "2"),
    ("ZADD", "rq:wip:q", "1", "m"),
    ("XADD", "dagrq:events", "*", "f", "v"),
    ("XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0"),
    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"),
    ("XGROUP", "CREATE", "dagrq:hooks:d", "g", "$", "MKSTREAM"),
    ("MSET", "a", "1", "b", "2"),
    ("EXPIRE", "rq:job:x", "10"),
    ("ZINTER", "2", "a", "b"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_key_positions_agree_with_the_server(conn: redis.Redis, command: tuple[str, ...]) -> None:
    known = [command[i] for i in key_positions(command)]
    told = [k.decode() if isinstance(k, bytes) else k for k in conn.command_getkeys(*command)]
    assert sorted(known) == sorted(told)


def test_redis_py_two_word_commands_name_their_key_after_the_words() -> None:
    assert key_positions(("XGROUP CREATE", "dagrq:hooks:d", "g", "$")) == [1]
    assert key_positions(("XINFO STREAM", "dagrq:events")) == [1]
    assert key_positions(("MEMORY USAGE", "dagrq:run:x")) == [1]
    assert key_positions(("SCRIPT LOAD", "return 1")) == []
    assert key_positions(("CLIENT SETNAME", "w")) == []


def test_keys_are_tagged_and_untagged_back() -> None:
    for key in ("dagrq:run:{abc}", "rq:job:x", "mine:1", b"rq:queue:q", b"other"):
        tagged = tag_key(key, TAG)
        assert tagged != key and untag_key(tagged, TAG) == key
        assert tag_key(tagged, TAG) == tagged  # tagging twice changes nothing
        text = tagged.decode() if isinstance(tagged, bytes) else tagged
        assert slot_of_tag(TAG) == redis.crc.key_slot(text.encode())
    assert tag_args(("SET", "dagrq:x", "dagrq:not-a-key"), TAG) == (
        "SET",
        f"dagrq{TAG}:x",
        "dagrq:not-a-key",
    )
    assert untag_reply("BLPOP", (b"rq" + TAG.encode() + b":queue:q", b"id"), TAG) == (
        b"rq:queue:q",
        b"id",
    )


def test_a_tagged_script_sees_logical_names_and_touches_only_tagged_keys(
    conn: redis.Redis,
) -> None:
    conn.flushdb()
    source = """
    redis.call('SET', KEYS[1], 'a')
    redis.call('RPUSH', 'rq:queue:' .. ARGV[1], 'job')
    redis.call('SADD', 'dagrq:members', KEYS[1])
    redis.pcall('HSET', 'mine', 'f', 'v')
    return {KEYS[1], redis.call('GET', KEYS[1])}
    """
    script = conn.register_script(tag_script(source, TAG))
    got = script(keys=[tag_key("dagrq:run:x", TAG)], args=["q"])
    assert got == [b"dagrq:run:x", b"a"]  # the script saw the logical name
    assert sorted(k.decode() for k in conn.keys("*")) == sorted(
        [f"dagrq{TAG}:run:x", f"rq{TAG}:queue:q", f"dagrq{TAG}:members", f"{TAG}mine"]
    )
    assert conn.smembers(f"dagrq{TAG}:members") == {b"dagrq:run:x"}  # stored: logical


def test_shards_spread_over_the_slot_space_and_runs_over_the_shards() -> None:
    tags = shard_tags(16)
    assert len(set(tags)) == 16
    assert [slot_of_tag(t) * 16 // 16384 for t in tags] == list(range(16))
    counts = [0] * 16
    for i in range(16_000):
        counts[shard_of(f"{i:032x}", 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://", "redis+cluster://host", "redis+cluster://h:1?shards=0"],
)
def test_a_bad_cluster_url_is_one_clear_error(url: str) -> None:
    with pytest.raises(ConnectionConfigError, match="redis\\+cluster://"):
        connect(url)
