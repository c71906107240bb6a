"""Live state that replicas share through Redis (`--redis-url`): each live session's event
log, the registry of live sessions, and the stream places admission counts.

- The event log of session S is the Redis Stream `ss:log:S`, one entry per event with the id
  `<seq>-1` (so the engine's integer `seq` is the entry's order, and `Last-Event-ID: n` reads
  from `n-1` on), holding the event's wire JSON; the terminal event's entry is marked `end`.
  It is bounded like the in-process log (`max_events`, the oldest entries go first) and kept
  `ended_log_keep_s` after the session ends.
- The registry entry `ss:session:S` (a hash) says who owns it (`replica`, `owner` key id),
  when it started, its status and committed text, and the next `seq`.
- A live stream holds a place in the sorted sets `ss:leases` (every stream) and
  `ss:key:<key id>` (that key's), scored by when the place lapses: its replica renews it every
  `lease_s / 3`. Admission counts a key's unlapsed places in one Lua script, so a per-key cap
  holds across replicas; a crashed replica's places lapse within `lease_s`, and then whichever
  replica sees it first fails the session (its committed text is kept in storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stream_server.engine.sessions import LiveSession
from stream_server.events import TERMINAL_EVENTS, Event, EventsDropped, StreamFailed, TextCommitted, UtteranceDone
from stream_server.storage import SessionRecord, Storage

log = logging.getLogger(__name__)
LEASES = "ss:leases"
FOLLOW_BLOCK_MS = 1000
"""A follower waits this long for new entries before it checks the session is still live."""
REPLICA_LOST = "replica_lost"
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[2])
if tonumber(ARGV[4]) > 0 and held >= tonumber(ARGV[4]) then return held end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return -1
"""
"""KEYS: every lease, the key's; ARGV: now, lapses at, session id, the key's cap (0: none).
-1 if a place was taken, else the places the key already holds."""


def _log(session_id: str) -> str:
    return f"ss:log:{session_id}"


def _entry(session_id: str) -> str:
    return f"ss:session:{session_id}"


def _key_places(owner: str) -> str:
    return f"ss:key:{owner}"


def new_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class SharedSession:
    """A session as the registry has it (live on some replica, or recently ended)."""

    id: str
    replica: str
    owner: str
    model: str
    provider: str
    language: str
    created_at: float
    status: str
    text: str


class RedisLiveState:
    def __init__(
        self,
        client: aioredis.Redis,
        storage: Storage,
        *,
        lease_s: float,
        keep_s: float,
        max_events: int,
        failure_json: Callable[[StreamFailed], dict],
    ):
        self.replica = new_replica_id()
        self._redis = client
        self._storage = storage
        self._lease_s = lease_s
        self._keep_s = keep_s
        self._max_events = max_events
        self._failure_json = failure_json
        self._claim = client.register_script(_CLAIM)
        self._places: dict[str, str] = {}
        """This replica's live places: session id -> owner key id."""
        self._mirrors: set[asyncio.Task] = set()
        self._upkeep: asyncio.Task | None = None
        self.reaped = 0
        """Sessions of lost replicas this replica failed."""

    @classmethod
    async def open(cls, url: str, storage: Storage, **options) -> RedisLiveState:
        client = aioredis.from_url(url, decode_responses=True)
        await client.ping()
        state = cls(client, storage, **options)
        state._upkeep = asyncio.create_task(state._keep_up())
        return state

    async def close(self) -> None:
        """Let the mirrors flush their sessions' last events (briefly), then stop."""
        if self._mirrors:
            await asyncio.wait(self._mirrors, timeout=5)
        for task in [*self._mirrors, *([self._upkeep] if self._upkeep else [])]:
            task.cancel()
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await self._redis.aclose()

    async def claim(self, session_id: str, owner: str, per_key: int) -> int | None:
        """Take a place for a new stream of `owner`; None if taken, else the live streams the key
        holds already (`per_key` of them: refuse it)."""
        now = time.time()
        held = await self._claim(keys=[LEASES, _key_places(owner)], args=[now, now + self._lease_s, session_id, per_key])
        if held >= 0:
            return held
        self._places[session_id] = owner
        return None

    async def release(self, session_id: str) -> None:
        owner = self._places.pop(session_id, None)
        if owner is None:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(LEASES, session_id).zrem(_key_places(owner), session_id)
            await pipe.execute()

    async def live_streams(self) -> int:
        """Unlapsed places over every replica."""
        return await self._redis.zcount(LEASES, f"({time.time()}", "+inf")

    def publish(self, session: LiveSession, serialise: Callable[[Event], dict]) -> None:
        """Register the session and mirror its events (`serialise`: each one's wire JSON) into
        its shared log, in the background, in order, until it ends."""
        session.mirror_to(-1)  # its followers wait for the log from the first event on
        task = asyncio.create_task(self._mirror(session, serialise))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, session: LiveSession, serialise: Callable[[Event], dict]) -> None:
        entry, log_key = _entry(session.id), _log(session.id)
        try:
            await self._redis.hset(entry, mapping={
                "replica": self.replica,
                "owner": session.owner or "",
                "model": session.model,
                "provider": session.provider,
                "language": session.language or "",
                "created_at": session.created_at,
                "details": json.dumps(session.details),
                "status": "live",
                "text": "",
                "next_seq": 0,
            })
            async for event in session.follow(unmirrored=True):
                if isinstance(event, EventsDropped):  # this mirror fell behind the local log
                    session.mirror_to(event.seq)
                    continue
                ended = isinstance(event, TERMINAL_EVENTS)
                fields = {"e": json.dumps(serialise(event))} | ({"end": "1"} if ended else {})
                update: dict[str, object] = {"next_seq": event.seq + 1}
                if isinstance(event, (TextCommitted, UtteranceDone)) or ended:
                    update["text"] = session.text
                if ended:
                    update["status"] = session.status
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(log_key, fields, id=f"{event.seq}-1", maxlen=self._max_events, approximate=True)
                    pipe.hset(entry, mapping=update)
                    if ended:
                        pipe.expire(log_key, int(self._keep_s)).expire(entry, int(self._keep_s))
                    await pipe.execute()
                session.mirror_to(event.seq)
        except RedisError:
            log.exception("session %s: its shared event log stopped", session.id)
        finally:
            session.mirror_to(None)

    async def session(self, session_id: str) -> SharedSession | None:
        fields = await self._redis.hgetall(_entry(session_id))
        if not fields:
            return None
        return SharedSession(
            id=session_id,
            replica=fields["replica"],
            owner=fields["owner"],
            model=fields["model"],
            provider=fields["provider"],
            language=fields["language"],
            created_at=float(fields["created_at"]),
            status=fields["status"],
            text=fields["text"],
        )

    async def follow(self, session_id: str, after: int = -1) -> AsyncIterator[tuple[int, dict] | EventsDropped]:
        """Every logged event with seq > `after` as (seq, wire JSON), then each new one, until the
        end; an EventsDropped first where the bounded log lost some it should have had."""
        wanted, last_id = after + 1, f"{after}-1" if after >= 0 else "0-0"
        log_key, entry = _log(session_id), _entry(session_id)
        while True:
            ended = await self._redis.hget(entry, "status") != "live"
            reply = await self._redis.xread({log_key: last_id}, count=500, block=None if ended else FOLLOW_BLOCK_MS)
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                seq = int(entry_id.split("-")[0])
                if seq > wanted:
                    yield EventsDropped(count=seq - wanted, first=wanted, seq=seq - 1)
                yield seq, json.loads(fields["e"])
                wanted, last_id = seq + 1, entry_id
                if fields.get("end"):
                    return
            if ended and not entries:
                return

    async def _keep_up(self) -> None:
        """Renew this replica's places, and fail the sessions of replicas whose places lapsed."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew()
                await self._reap()
            except Exception:  # Redis or storage: try again next round
                log.exception("could not renew live streams' places, or fail a lost replica's sessions")

    async def _renew(self) -> None:
        if not self._places:
            return
        lapses = time.time() + self._lease_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id, owner in self._places.items():
                pipe.zadd(LEASES, {session_id: lapses}, xx=True).zadd(_key_places(owner), {session_id: lapses}, xx=True)
            await pipe.execute()

    async def _reap(self) -> None:
        for session_id in await self._redis.zrangebyscore(LEASES, "-inf", time.time()):
            if await self._redis.zrem(LEASES, session_id):  # one replica wins each
                await self._fail_lost(session_id)

    async def _fail_lost(self, session_id: str) -> None:
        """End a lost replica's session `failed`, in storage (first: once the registry says
        failed, the stored record is there) and in its log, keeping its text."""
        entry = _entry(session_id)
        fields = await self._redis.hgetall(entry)
        if fields.get("status") != "live":
            return
        self.reaped += 1
        seq = int(fields["next_seq"])
        failure = StreamFailed(
            message=f"the server replica carrying this session ({fields['replica']}) was lost",
            code=REPLICA_LOST,
            error_type="server_error",
            seq=seq,
        )
        error = {"message": failure.message, "type": failure.error_type, "param": None, "code": failure.code}
        await self._storage.save_session(
            SessionRecord(
                id=session_id,
                owner=fields["owner"],
                model=fields["model"],
                language=fields["language"],
                transcript=fields["text"],
                duration=0.0,
                created_at=float(fields["created_at"]),
                ended_at=time.time(),
                details=json.loads(fields["details"]),
                status="failed",
                error=error,
            )
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(_log(session_id), {"e": json.dumps(self._failure_json(failure)), "end": "1"}, id=f"{seq}-1")
            pipe.hset(entry, mapping={"status": "failed", "next_seq": seq + 1})
            pipe.expire(_log(session_id), int(self._keep_s)).expire(entry, int(self._keep_s))
            await pipe.execute()
