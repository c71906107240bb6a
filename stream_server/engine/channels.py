"""A multichannel live stream (a call): one LiveTranscriber per channel, each with its own VAD,
all decoding through the same window decoder (the one model and its scheduler). Their events
reach the session tagged with their channel; the stream ends with one StreamDone for all."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from stream_server.channels import Channel, ChannelText, channels, conversation, turns
from stream_server.engine.stream import LiveTranscriber
from stream_server.events import Event, StreamDone, StreamFailed, UtteranceDone

Publish = Callable[[Event], None]


class MultiChannelTranscriber:
    """Takes (channels, samples) arrays. The channels are made at the first audio (a container's
    channel count is known only then), or up front when `count` is given."""

    def __init__(
        self, make: Callable[[Publish], LiveTranscriber], publish: Publish, labels: Sequence[str] = (), count: int = 0
    ):
        self._make = make
        self._publish = publish
        self._labels = tuple(labels)
        self._channels: list[LiveTranscriber] = []
        self._utterances: list[tuple[Channel, UtteranceDone]] = []
        self._done: dict[int, StreamDone] = {}
        self.failed = False
        self._grow(count)

    @property
    def channels(self) -> tuple[Channel, ...]:
        return channels(len(self._channels), self._labels)

    @property
    def received_seconds(self) -> float:
        """Seconds of the call received (every channel receives the same)."""
        return max((t.received_seconds for t in self._channels), default=0.0)

    @property
    def channel_seconds(self) -> float:
        """Audio seconds over all channels: what was transcribed."""
        return sum(t.received_seconds for t in self._channels)

    @property
    def speech_seconds(self) -> float:
        return sum(t.speech_seconds for t in self._channels)

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self._channels)

    @property
    def backlog_seconds(self) -> float:
        """The most-behind decoding channel's undecoded speech: a channel that is not decoding
        waits for more audio (the rest of a pause), which must not be held back for it."""
        return max((t.backlog_seconds for t in self._channels if t.decoding), default=0.0)

    @property
    def decoding(self) -> bool:
        return any(t.decoding for t in self._channels)

    @property
    def text(self) -> str:
        """The conversation so far, from the finished utterances: one labelled turn a line."""
        return conversation(turns((c, u.start, u.end, u.text) for c, u in self._utterances))

    def channel_texts(self) -> tuple[ChannelText, ...]:
        return tuple(ChannelText(c, t.text) for c, t in zip(self.channels, self._channels))

    def arrived(self, seconds: float) -> None:
        """A call is decoded live whatever the rate its audio arrives at (engine/adaptive.py
        measures that rate for a mono stream)."""

    def push(self, pcm: np.ndarray) -> None:
        """A (channels, samples) array; a 1-D array is one channel."""
        rows = pcm.reshape(1, -1) if pcm.ndim == 1 else pcm
        self._grow(rows.shape[0])
        for transcriber, row in zip(self._channels, rows):
            transcriber.push(row)

    def finalize_utterance(self) -> None:
        for transcriber in self._channels:
            transcriber.finalize_utterance()

    async def finish(self, *, done: bool = True) -> None:
        await asyncio.gather(*(t.finish(done=done) for t in self._channels))
        if self.failed or not done:
            return
        done = list(self._done.values())
        self._publish(
            StreamDone(
                text=self.text,
                duration=self.received_seconds,
                speech_seconds=sum(d.speech_seconds for d in done),
                prompt_tokens=sum(d.prompt_tokens for d in done),
                channels=self.channel_texts(),
            )
        )

    async def cancel(self) -> None:
        await asyncio.gather(*(t.cancel() for t in self._channels))

    def _grow(self, count: int) -> None:
        while len(self._channels) < count:
            index = len(self._channels)
            self._channels.append(self._make(lambda event, index=index: self._relay(index, event)))

    def _relay(self, index: int, event: Event) -> None:
        """A channel's event, tagged; its StreamDone waits for the others'."""
        if isinstance(event, StreamDone):
            self._done[index] = event
            return
        if isinstance(event, StreamFailed):
            self.failed = True  # the session ends with it; the other channels are cancelled by the run
        elif isinstance(event, UtteranceDone):
            self._utterances.append((channels(index + 1, self._labels)[index], event))
        self._publish(dataclasses.replace(event, channel=index))
