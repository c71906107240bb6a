"""The session log and the hub are bounded: oldest partials go first, replay says what it lost,
and only so many ended sessions stay in memory."""

from __future__ import annotations

import asyncio

from stream_server.engine.sessions import SessionHub
from stream_server.events import EventsDropped, SpeechStarted, StreamDone, TextCommitted, TextPartial


def commit(text: str) -> TextCommitted:
    return TextCommitted(delta=text, start=0.0, end=0.0, words=())


def partial(text: str) -> TextPartial:
    return TextPartial(text=text, start=0.0, end=0.0)


def done(text: str) -> StreamDone:
    return StreamDone(text=text, duration=1.0, speech_seconds=1.0, prompt_tokens=0)


async def replay(session, after: int = -1) -> list:
    return [event async for event in session.follow(after)]


async def test_the_log_drops_the_oldest_partials_first_and_keeps_every_commit():
    session = SessionHub(max_events=40).create("m", "en")
    for i in range(100):
        session.publish(partial(f"p{i}"))
        if i % 10 == 0:
            session.publish(commit(f" c{i}"))
    session.publish(done(session.text))
    assert session.published == 1 + 100 + 10 + 1
    assert len(session.events) <= 40
    kept = [e for e in session.events if isinstance(e, TextCommitted)]
    assert [e.delta for e in kept] == [f" c{i}" for i in range(0, 100, 10)], "every commit is still there"
    partials = [e.text for e in session.events if isinstance(e, TextPartial)]
    assert partials == [f"p{i}" for i in range(100 - len(partials), 100)], "only the newest partials are left"
    assert session.text == "".join(f" c{i}" for i in range(0, 100, 10))


async def test_a_replay_that_reaches_dropped_events_is_told_how_many():
    session = SessionHub(max_events=20).create("m", "en")
    for i in range(50):
        session.publish(partial(f"p{i}"))
    session.publish(done(""))
    events = await replay(session)
    seqs = [e.seq for e in events if not isinstance(e, EventsDropped)]
    gaps = [e for e in events if isinstance(e, EventsDropped)]
    assert seqs[0] == 0 and seqs[-1] == session.published - 1
    assert sum(g.count for g in gaps) == session.dropped > 0
    for gap in gaps:  # each gap names exactly the seqs missing around it
        before = max(s for s in seqs if s < gap.first)
        after = min(s for s in seqs if s > gap.seq)
        assert (gap.first, gap.seq) == (before + 1, after - 1)
    # resuming after a kept event replays from there, and no gap is reported where none is
    tail = await replay(session, after=session.events[-3].seq)
    assert [e.seq for e in tail] == [e.seq for e in session.events[-2:]]


async def test_without_partials_the_oldest_other_events_go_and_the_first_stays():
    session = SessionHub(max_events=20).create("m", "en")
    for i in range(60):
        session.publish(commit(f" w{i}"))
    assert len(session.events) <= 20
    assert session.events[0].seq == 0, "session.created stays"
    assert session.events[-1].delta == " w59"
    assert session.text.split() == [f"w{i}" for i in range(60)], "the transcript never loses text"


async def test_the_hub_keeps_only_so_many_ended_sessions():
    hub = SessionHub(keep_finished=3)
    ended = []
    for _ in range(6):
        session = hub.create("m", "en")
        session.publish(done(""))
        ended.append(session.id)
    live = hub.create("m", "en")
    assert [hub.get(i) is not None for i in ended] == [False, False, False, True, True, True]
    assert hub.get(live.id) is live


async def test_a_mirrored_session_shows_an_event_only_once_its_shared_log_holds_it():
    """A client must not be shown what a crash of this replica would lose: with a shared log
    mirroring the session, followers get each event once the log holds it."""
    session = SessionHub().create("tiny.en", None)
    session.mirror_to(-1)
    follower = session.follow()
    session.publish(SpeechStarted(time=0.0))
    first = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0.05)
    assert not first.done()
    session.mirror_to(0)
    assert (await asyncio.wait_for(first, 1)).seq == 0
    session.publish(SpeechStarted(time=1.0))
    session.mirror_to(None)  # the log stopped: followers no longer wait for it
    assert (await asyncio.wait_for(anext(follower), 1)).seq == 1
    assert [e.seq async for e in _first(session.follow(unmirrored=True), 2)] == [0, 1]


async def _first(events, count):
    async for event in events:
        yield event
        count -= 1
        if not count:
            return
