"""Redis Cluster: a shard is a client that tags every key it sends.

A shard is one hash tag. :class:`ShardClient` is a ``redis.Redis`` that rewrites each key on
the wire, ``dagrq:run:x`` to ``dagrq{s03}:run:x``, ``rq:job:y`` to ``rq{s03}:job:y`` and any
other key ``k`` to ``{s03}k`` (a node body's own keys, through ``job.connection``), in
commands, pipelines, transactions and inside Lua scripts (whose ``redis.call`` is wrapped to
tag the keys it is given). So all of one shard's keys, dagrq's and RQ's alike, hash to one
slot, every atomic step stays legal on a cluster, and dagrq and RQ run unchanged inside a
shard: what they store (members of sets, fields) keeps the logical, untagged names. The
connection under the client asks the cluster which primary serves the shard's slot and asks
again after a ``MOVED`` or a lost connection (a failover), as the Sentinel connection does.

Examples:
    >>> tag_key("dagrq:run:abc", "{s03}")
    'dagrq{s03}:run:abc'
    >>> tag_key(b"rq:job:x", "{s03}"), tag_key("mine", "{s03}")
    (b'rq{s03}:job:x', '{s03}mine')
    >>> key_positions(("GET", "k")), key_positions(("DEL", "a", "b"))
    ([1], [1, 2])
    >>> key_positions(("EVALSHA", "f", 2, "a", "b", "x"))
    [3, 4]
"""

from __future__ import annotations

import itertools
import os
import random
import re
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, MovedError, TryAgainError

#: the logical prefixes a shard tags (dagrq's keys and RQ's)
PREFIXES = ("dagrq:", "rq:")
_BPREFIXES = tuple(p.encode() for p in PREFIXES)
#: slots in a Redis Cluster
SLOTS = 16384

# commands whose every argument is a key, and those whose first two are
_ALL_KEYS = frozenset(
    [
        "DEL",
        "UNLINK",
        "EXISTS",
        "MGET",
        "TOUCH",
        "WATCH",
        "SUNION",
        "SINTER",
        "SDIFF",
        "SUNIONSTORE",
        "SINTERSTORE",
        "SDIFFSTORE",
        "PFCOUNT",
        "PFMERGE",
    ]
)
_TWO_KEYS = frozenset(
    ["RPOPLPUSH", "LMOVE", "SMOVE", "RENAME", "RENAMENX", "COPY", "BRPOPLPUSH", "BLMOVE"]
)
_ALL_BUT_LAST = frozenset(["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"])
_NUMKEYS_AT_2 = frozenset(["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"])
_DEST_NUMKEYS = frozenset(["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"])
_NUMKEYS_AT_1 = frozenset(
    ["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD", "SINTERCARD", "LMPOP", "ZMPOP"]
)
_SUBCOMMAND_KEY = frozenset(["XGROUP", "XINFO", "OBJECT", "MEMORY"])
_NO_KEYS = frozenset(
    [
        "PING",
        "ECHO",
        "INFO",
        "TIME",
        "CLIENT",
        "CONFIG",
        "CLUSTER",
        "COMMAND",
        "SCRIPT",
        "FUNCTION",
        "PUBLISH",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PSUBSCRIBE",
        "PUNSUBSCRIBE",
        "DBSIZE",
        "MULTI",
        "EXEC",
        "DISCARD",
        "UNWATCH",
        "AUTH",
        "HELLO",
        "SELECT",
        "READONLY",
        "READWRITE",
        "ROLE",
        "WAIT",
        "LASTSAVE",
        "SLOWLOG",
        "LATENCY",
        "DEBUG",
        "FLUSHALL",
        "FLUSHDB",
        "SWAPDB",
        "QUIT",
        "RESET",
        "MONITOR",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "SHUTDOWN",
        "RANDOMKEY",
    ]
)


def _name(arg: Any) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


# long: one branch per family of key layouts, read as a table
def key_positions(args: Sequence[Any]) -> list[int]:
    """The indexes in ``args`` (a command and its arguments) that are key names.

    Covers every command dagrq and RQ send; any other command is taken to name one key, its
    first argument.
    """
    if not args:
        return []
    name, n = _name(args[0]), len(args)
    two_words = " " in name  # redis-py's "XGROUP CREATE", "SCRIPT LOAD", "MEMORY USAGE"...
    name = name.split(" ")[0]
    if name in _NO_KEYS or n < 2:
        return []
    if name in _ALL_KEYS:
        return list(range(1, n))
    if name in _TWO_KEYS:
        return [i for i in (1, 2) if i < n]
    if name in _ALL_BUT_LAST:
        return list(range(1, n - 1))
    if name in ("BLMPOP", "BZMPOP"):
        return list(range(3, 3 + int(args[2])))
    if name in _NUMKEYS_AT_2:
        return list(range(3, 3 + int(args[2])))
    if name in _DEST_NUMKEYS:
        return [1, *range(3, 3 + int(args[2]))]
    if name in _NUMKEYS_AT_1:
        return list(range(2, 2 + int(args[1])))
    if name in _SUBCOMMAND_KEY:
        at = 1 if two_words else 2
        return [at] if n > at else []
    if name in ("XREAD", "XREADGROUP"):
        at = next(i for i, a in enumerate(args) if _name(a) == "STREAMS") + 1
        return list(range(at, at + (n - at) // 2))
    if name in ("MSET", "MSETNX"):
        return list(range(1, n, 2))
    if name == "SCAN":
        return [i + 1 for i in range(2, n - 1) if _name(args[i]) == "MATCH"]
    return [1]


def _forms(key: Any, tag: str) -> tuple[Any, tuple[Any, ...]] | None:
    """``tag`` and the logical prefixes in ``key``'s type (str or bytes); None for a value
    that is neither."""
    if isinstance(key, str):
        return tag, PREFIXES
    if isinstance(key, bytes):
        return tag.encode(), _BPREFIXES
    return None


def tag_key(key: Any, tag: str) -> Any:
    """``key`` tagged: ``tag`` after its dagrq or RQ prefix, else in front (a key a node's
    body writes through ``job.connection`` lives on its run's shard); a tagged key, or a
    value that is not text, unchanged."""
    forms = _forms(key, tag)
    if forms is None:
        return key
    t, prefixes = forms
    if key.startswith(t):
        return key
    for prefix in prefixes:
        if key.startswith(prefix):
            return prefix[:-1] + t + key[len(prefix) - 1 :]
        if key.startswith(prefix[:-1] + t):
            return key
    return t + key


def untag_key(key: Any, tag: str) -> Any:
    """The logical name of a tagged ``key`` (the inverse of :func:`tag_key`).

    Examples:
        >>> untag_key(b"rq{s03}:queue:q", "{s03}"), untag_key("dagrq{s03}:x", "{s03}")
        (b'rq:queue:q', 'dagrq:x')
        >>> untag_key(tag_key("mine:1", "{s03}"), "{s03}"), tag_key("mine:1", "{s03}")
        ('mine:1', '{s03}mine:1')
    """
    forms = _forms(key, tag)
    if forms is None:
        return key
    t, prefixes = forms
    if key.startswith(t):
        return key[len(t) :]
    for prefix in prefixes:
        head = prefix[:-1] + t + prefix[-1:]
        if key.startswith(head):
            return prefix + key[len(head) :]
    return key


# replies that name keys: the popping commands name the key popped first
_POP_REPLIES = frozenset(
    ["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "LMPOP", "ZMPOP", "BZMPOP"]
)


def untag_reply(command: str, reply: Any, tag: str) -> Any:
    """``reply`` to ``command`` with the key names in it untagged (popping commands, SCAN,
    KEYS, XREAD and XREADGROUP): callers see the logical names they sent."""
    name = command.split(" ")[0].upper()
    if not reply:
        return reply
    if name in _POP_REPLIES:
        return type(reply)([untag_key(reply[0], tag), *reply[1:]])
    if name == "SCAN":
        return reply[0], [untag_key(k, tag) for k in reply[1]]
    if name == "KEYS":
        return [untag_key(k, tag) for k in reply]
    if name in ("XREAD", "XREADGROUP"):
        if isinstance(reply, dict):
            return {untag_key(k, tag): v for k, v in reply.items()}
        return [[untag_key(s[0], tag), *s[1:]] for s in reply]
    return reply


def tag_args(args: Sequence[Any], tag: str) -> tuple[Any, ...]:
    """``args`` with the keys among them tagged (see :func:`key_positions`)."""
    positions = key_positions(args)
    if not positions:
        return tuple(args)
    out = list(args)
    for i in positions:
        out[i] = tag_key(out[i], tag)
    return tuple(out)


_LUA_TAGGER = """
local __TAG = '%s'
local __N = #__TAG
local function __t(k)
  if type(k) ~= 'string' then return k end
  if string.sub(k, 1, 6) == 'dagrq:' then return 'dagrq' .. __TAG .. string.sub(k, 6) end
  if string.sub(k, 1, 3) == 'rq:' then return 'rq' .. __TAG .. string.sub(k, 3) end
  if string.sub(k, 1, __N) == __TAG then return k end
  if string.sub(k, 1, 5 + __N) == 'dagrq' .. __TAG then return k end
  if string.sub(k, 1, 2 + __N) == 'rq' .. __TAG then return k end
  return __TAG .. k
end
local function __u(k)
  if string.sub(k, 1, __N) == __TAG then return string.sub(k, __N + 1) end
  if string.sub(k, 1, 6 + __N) == 'dagrq' .. __TAG .. ':' then
    return 'dagrq' .. string.sub(k, 6 + __N)
  end
  if string.sub(k, 1, 3 + __N) == 'rq' .. __TAG .. ':' then
    return 'rq' .. string.sub(k, 3 + __N)
  end
  return k
end
-- the script sees the logical names (as it returns and stores them); calls tag them again
for __i = 1, #KEYS do KEYS[__i] = __u(KEYS[__i]) end
-- commands whose keys are not (only) their first argument, by layout: 1 all, 2 the first two,
-- 3 a destination and numkeys keys, 4 every other, 5 after a subcommand, 0 none
local __LAYOUT = {DEL=1, UNLINK=1, EXISTS=1, MGET=1, TOUCH=1, SUNION=1, SINTER=1, SDIFF=1,
  SUNIONSTORE=1, SINTERSTORE=1, SDIFFSTORE=1, RPOPLPUSH=2, LMOVE=2, SMOVE=2, RENAME=2,
  RENAMENX=2, COPY=2, ZUNIONSTORE=3, ZINTERSTORE=3, ZDIFFSTORE=3, MSET=4, MSETNX=4, XGROUP=5,
  XINFO=5, OBJECT=5, TIME=0, PUBLISH=0, INFO=0}
local function __keys(a, layout)
  if layout == 1 then for i = 2, #a do a[i] = __t(a[i]) end
  elseif layout == 2 then a[2] = __t(a[2]); a[3] = __t(a[3])
  elseif layout == 3 then
    a[2] = __t(a[2]); for i = 4, 3 + tonumber(a[3]) do a[i] = __t(a[i]) end
  elseif layout == 4 then for i = 2, #a, 2 do a[i] = __t(a[i]) end
  elseif layout == 5 then a[3] = __t(a[3]) end
  return a
end
-- the common case, one key first, passes its arguments on without building a table
local function __call(c, k, ...)
  if k == nil then return redis.call(c) end
  local layout = __LAYOUT[string.upper(c)]
  if layout then return redis.call(unpack(__keys({c, k, ...}, layout))) end
  return redis.call(c, __t(k), ...)
end
local function __pcall(c, k, ...)
  if k == nil then return redis.pcall(c) end
  local layout = __LAYOUT[string.upper(c)]
  if layout then return redis.pcall(unpack(__keys({c, k, ...}, layout))) end
  return redis.pcall(c, __t(k), ...)
end
"""


def tag_script(source: str, tag: str) -> str:
    """A Lua script that sees its KEYS untagged, as logical names, and tags every key it
    hands to ``redis.call``/``redis.pcall``."""
    body = re.sub(r"\bredis\.call\(", "__call(", source)
    body = re.sub(r"\bredis\.pcall\(", "__pcall(", body)
    return _LUA_TAGGER % tag + body


def shard_tags(count: int) -> list[str]:
    """The hash tag of each of ``count`` shards: shard ``i``'s slot lies in the ``i``-th
    ``count``-th of the slot space, so shards spread evenly over primaries that split the
    slots evenly (as ``redis-cli --cluster create`` does).

    Examples:
        >>> tags = shard_tags(3)
        >>> [key_slot(t[1:-1].encode()) * 3 // SLOTS for t in tags]
        [0, 1, 2]
    """
    tags = []
    for i in range(count):
        n = 0
        while key_slot(f"s{i}.{n}".encode()) * count // SLOTS != i:
            n += 1
        tags.append(f"{{s{i}.{n}}}")
    return tags


def slot_of_tag(tag: str) -> int:
    """The cluster slot of every key tagged ``tag``."""
    return int(key_slot(tag.strip("{}").encode()))


class _Tagged:
    """The shard of a client, read from its connection pool (so RQ's clones of a client,
    made from its pool's settings, are of the same shard)."""

    connection_pool: Any

    @property
    def tag(self) -> str:
        """The hash tag of every key this client sends."""
        return str(self.connection_pool.connection_kwargs["tag"])

    @property
    def shard(self) -> int:
        """The shard's number."""
        return int(self.connection_pool.connection_kwargs["shard"])

    @property
    def shards(self) -> int:
        """How many shards the cluster's runs are spread over."""
        return int(self.connection_pool.connection_kwargs["shards"])


class ShardPipeline(_Tagged, Pipeline):
    """A pipeline (or transaction) of a :class:`ShardClient`: its commands' keys tagged."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Queue (or, while watching, send) the command with its keys tagged."""
        return super().execute_command(*tag_args(args, self.tag), **kwargs)  # type: ignore[no-untyped-call]


class ShardClient(_Tagged, redis.Redis):
    """A ``redis.Redis`` for one shard of a cluster: every key it sends is tagged."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send the command with its keys tagged."""
        return super().execute_command(*tag_args(args, self.tag), **options)  # type: ignore[no-untyped-call]

    def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        """The reply, with the key names in it untagged (:func:`untag_reply`)."""
        reply = super().parse_response(connection, command_name, **options)  # type: ignore[no-untyped-call]
        return untag_reply(str(command_name), reply, self.tag)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        """A pipeline whose commands are tagged as this client's."""
        return ShardPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    def register_script(self, script: Any) -> Any:
        """The script, its keys tagged inside (:func:`tag_script`)."""
        text = script.decode() if isinstance(script, bytes) else script
        return super().register_script(tag_script(text, self.tag))


def slot_owner(seeds: Sequence[tuple[str, int]], slot: int, **kwargs: Any) -> tuple[str, int]:
    """The address of the primary serving ``slot``, asked of the first seed that answers.

    Raises:
        redis.ConnectionError: no seed answers or none knows an owner (a failover under way).
    """
    errors = []
    for host, port in seeds:
        probe = redis.Redis(
            host=host, port=port, socket_timeout=2, socket_connect_timeout=1, **kwargs
        )
        try:
            slots = probe.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            for start, end, primary, *_ in slots:
                if start <= slot <= end:
                    owner = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
                    return owner or host, int(primary[1])
        except redis.RedisError as exc:
            errors.append(f"{host}:{port}: {exc}")
        finally:
            probe.close()
    raise redis.ConnectionError(f"no cluster node names the owner of slot {slot}: {errors}")


class SlotConnection(redis.Connection):
    """A connection to whichever primary serves one slot now.

    It asks the cluster on every (re)connect; a ``MOVED``, ``TRYAGAIN`` or ``CLUSTERDOWN``
    reply drops it and raises a ``ConnectionError``, so the client's retry reconnects to the
    slot's new owner (a command that got such a reply was not run).
    """

    def __init__(
        self,
        *,
        seeds: Sequence[tuple[str, int]] = (),
        tag: str = "",
        shard: int = 0,
        shards: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.seeds = list(seeds)
        self.slot = slot_of_tag(tag)

    def _connect(self) -> Any:
        auth = {"username": self.username, "password": self.password}
        self.host, self.port = slot_owner(self.seeds, self.slot, **auth)
        return super()._connect()  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; a reply saying the slot is elsewhere or unserved is a lost connection."""
        try:
            return super().read_response(*args, **kwargs)
        except (MovedError, TryAgainError, ClusterDownError) as exc:
            self.disconnect()  # type: ignore[no-untyped-call]
            raise redis.ConnectionError(f"slot {self.slot} moved: {exc}") from None


#: URL schemes of a Redis Cluster (TLS to a cluster is not built yet)
CLUSTER_SCHEMES = ("redis+cluster",)
#: the environment variable naming the shard a process serves (a pool sets it per process)
SHARD_ENV = "DAGRQ_SHARD"
#: shards when neither the URL (``?shards=``) nor ``DAGRQ_SHARDS`` says: two per primary of
#: the smallest cluster (3 primaries); every worker pool keeps a process per shard at least
DEFAULT_SHARDS = 6


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any], int]:
    """``(seed addresses, client options, shard count)`` of a ``redis+cluster://`` URL.

    Raises:
        ValueError: the URL names no ``host:port`` or a shard count that is not a number > 0.
    """
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    seeds = []
    for hostport in filter(None, parts.netloc.rpartition("@")[2].split(",")):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{hostport!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    if not seeds:
        raise ValueError("it names no host:port")
    query = dict(parse_qsl(parts.query))
    shards = query.pop("shards", None) or os.environ.get("DAGRQ_SHARDS") or str(DEFAULT_SHARDS)
    if not shards.isdigit() or int(shards) < 1:
        raise ValueError(f"shards={shards!r} is not a whole number above 0")
    options: dict[str, Any] = {}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return seeds, options, int(shards)


def shard_client(url: str, shard: int, **kwargs: Any) -> ShardClient:
    """The client of shard ``shard`` of the cluster ``url`` (see :func:`parse_cluster_url`)."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    seeds, options, count = parse_cluster_url(url)
    if not 0 <= shard < count:
        raise ValueError(f"shard {shard} is not one of the cluster's {count} (0-{count - 1})")
    tag = shard_tags(count)[shard]
    # a failover takes seconds: a command is retried through it (as under Sentinel)
    pool = redis.ConnectionPool(
        connection_class=SlotConnection,
        seeds=seeds,
        tag=tag,
        shard=shard,
        shards=count,
        socket_timeout=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 20),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **options,
        **kwargs,
    )
    return ShardClient(connection_pool=pool)


def shard_of(run_id: str, shards: int) -> int:
    """The shard that holds run ``run_id`` of a cluster of ``shards`` shards.

    Examples:
        >>> shard_of("3f90d66687a94e69af9238a34c117fa0", 16)
        2
    """
    return zlib.crc32(run_id.encode()) % shards


def new_run_id(connection: Any) -> str:
    """A fresh run id; on a shard's client, one that :func:`shard_of` maps to that shard."""
    while True:
        run_id = uuid.uuid4().hex
        if not isinstance(connection, ShardClient):
            return run_id
        if shard_of(run_id, connection.shards) == connection.shard:
            return run_id


_SIBLINGS: dict[tuple[Any, ...], ShardClient] = {}


def sibling(connection: ShardClient, shard: int) -> ShardClient:
    """The client of shard ``shard`` of ``connection``'s cluster (one per process)."""
    if shard == connection.shard:
        return connection
    kwargs = connection.connection_pool.connection_kwargs
    key = (tuple(kwargs["seeds"]), kwargs.get("username"), int(kwargs["shards"]), shard)
    found = _SIBLINGS.get(key)
    if found is None:
        tag = shard_tags(int(kwargs["shards"]))[shard]
        pool = redis.ConnectionPool(
            connection_class=SlotConnection, **{**kwargs, "tag": tag, "shard": shard}
        )
        found = _SIBLINGS[key] = ShardClient(connection_pool=pool)
    return found


def for_run(connection: Any, run_id: str) -> Any:
    """The client that reaches run ``run_id``: ``connection`` itself unless it is a shard
    of a cluster and the run lives on another shard."""
    if not isinstance(connection, ShardClient):
        return connection
    return sibling(connection, shard_of(run_id, connection.shards))


def every_shard(connection: Any) -> list[Any]:
    """One client per shard of ``connection``'s cluster; ``[connection]`` for one Redis."""
    if not isinstance(connection, ShardClient):
        return [connection]
    return [sibling(connection, i) for i in range(connection.shards)]


#: where this process's next new run goes: shards in turn, from a random one
_TURN = itertools.count(random.randrange(1 << 16))


def any_shard(connection: Any) -> Any:
    """The client of the shard a new run goes to: each in turn (so one submitter's runs
    spread evenly); ``connection`` for one Redis."""
    if not isinstance(connection, ShardClient):
        return connection
    return sibling(connection, next(_TURN) % connection.shards)


def home_shard(connection: Any) -> Any:
    """The first shard's client (schedules, events emitted by hand and runs under shared
    limits live there); ``connection`` for one Redis."""
    if not isinstance(connection, ShardClient):
        return connection
    return sibling(connection, 0)
