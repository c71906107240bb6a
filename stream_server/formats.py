"""Render a transcription in each of OpenAI's `response_format`s: one mono result, or one
result per channel (a call), merged into the conversation in time order."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_server.channels import Channel, ChannelText, ChannelTranscription, conversation, file_turns, span
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.languages import language_name

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


@dataclass(frozen=True)
class Rendered:
    body: str
    content_type: str


def render(
    result: Transcription,
    response_format: str,
    *,
    granularities: frozenset[str] = frozenset({"segment"}),
    include_logprobs: bool = False,
    extra: Mapping[str, object] | None = None,
) -> Rendered:
    """`extra` fields (id, provider, ...) lead the JSON formats' objects; text formats have none."""
    head = dict(extra or {})
    if response_format == "text":
        return Rendered(result.text + "\n", "text/plain")
    if response_format == "srt":
        return Rendered(_subtitles(_cues(result), ",", header=""), "text/plain")
    if response_format == "vtt":
        return Rendered(_subtitles(_cues(result), ".", header="WEBVTT\n\n"), "text/vtt")
    if response_format == "verbose_json":
        return Rendered(json.dumps(head | verbose_json(result, granularities)), "application/json")
    body: dict = head | {"text": result.text, "usage": duration_usage(result.duration)}
    if include_logprobs:
        body["logprobs"] = word_logprobs(result)
    return Rendered(json.dumps(body), "application/json")


def duration_usage(seconds: float) -> dict:
    """OpenAI bills Whisper by whole seconds of input audio."""
    return {"type": "duration", "seconds": math.ceil(seconds)}


def word_logprobs(result: Transcription) -> list[dict]:
    """Log-probabilities per word: faster-whisper exposes word, not token, probabilities."""
    return [_logprob(w) for w in result.words]


def _logprob(w: Word) -> dict:
    return {"token": w.text, "logprob": math.log(max(w.probability, 1e-12)), "bytes": list(w.text.encode())}


def verbose_json(result: Transcription, granularities: frozenset[str]) -> dict:
    body: dict = {
        "task": "transcribe",
        "language": language_name(result.language),
        "duration": round(result.duration, 3),
        "text": result.text,
        "usage": duration_usage(result.duration),
    }
    if "segment" in granularities:
        body["segments"] = [_segment(s) for s in result.segments]
    if "word" in granularities:
        body["words"] = [_word(w) for w in result.words]
    return body


def _segment(s: Segment, start: float | None = None, end: float | None = None) -> dict:
    """`start`/`end` replace the segment's own times (a call's segments are timed by their words)."""
    return {
        "id": s.id,
        "seek": s.seek,
        "start": round(s.start if start is None else start, 3),
        "end": round(s.end if end is None else end, 3),
        "text": s.text,
        "tokens": list(s.tokens),
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
    }


def _word(w: Word) -> dict:
    return {"word": w.text.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}


def render_channels(
    results: Sequence[ChannelTranscription],
    response_format: str,
    *,
    granularities: frozenset[str] = frozenset({"segment"}),
    include_logprobs: bool = False,
    extra: Mapping[str, object] | None = None,
) -> Rendered:
    """Each channel transcribed on its own, rendered as one conversation: turns in time order,
    labelled; JSON outputs tag every segment and word with its `channel` and list each
    channel's own text. Usage counts every channel's audio (each was transcribed)."""
    spoken = file_turns(results)
    text = conversation(spoken)
    if response_format == "text":
        return Rendered(text + "\n", "text/plain")
    if response_format == "srt":
        cues = [(t.start, t.end, f"[{t.channel.name}] {t.text}") for t in spoken]
        return Rendered(_subtitles(cues, ",", header=""), "text/plain")
    if response_format == "vtt":
        cues = [(t.start, t.end, f"<v {t.channel.name}>{t.text}") for t in spoken]
        return Rendered(_subtitles(cues, ".", header="WEBVTT\n\n"), "text/vtt")
    head = dict(extra or {})
    listed = [ChannelText(r.channel, r.result.text).fields() for r in results]
    usage = duration_usage(sum(r.result.duration for r in results))
    if response_format == "json":
        body: dict = head | {"text": text, "channels": listed, "usage": usage}
        if include_logprobs:
            body["logprobs"] = [_logprob(w) | c.fields() for c, w in _in_time(results, "words")]
        return Rendered(json.dumps(body), "application/json")
    body = head | {
        "task": "transcribe",
        "language": language_name(_language(results)),
        "duration": round(max(r.result.duration for r in results), 3),
        "text": text,
        "channels": listed,
        "usage": usage,
    }
    if "segment" in granularities:
        segments = _in_time(results, "segments")
        body["segments"] = [_segment(s, *span(s)) | {"id": i} | c.fields() for i, (c, s) in enumerate(segments)]
    if "word" in granularities:
        body["words"] = [_word(w) | c.fields() for c, w in _in_time(results, "words")]
    return Rendered(json.dumps(body), "application/json")


def _language(results: Sequence[ChannelTranscription]) -> str:
    """The language of the first channel that said anything."""
    return next((r.result.language for r in results if r.result.text), results[0].result.language)


def _in_time(results: Sequence[ChannelTranscription], kind: str) -> list[tuple[Channel, Any]]:
    """Every channel's `segments` or `words`, with their channel, in order of start time."""
    items = [(r.channel, item) for r in results for item in getattr(r.result, kind)]
    start = (lambda item: span(item)[0]) if kind == "segments" else (lambda item: item.start)
    return sorted(items, key=lambda pair: (start(pair[1]), pair[0].index))


def _cues(result: Transcription) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text.strip()) for s in result.segments]


def _subtitles(cues: Sequence[tuple[float, float, str]], decimal: str, header: str) -> str:
    """Numbered SubRip cues, or WebVTT (`header`) ones."""
    out = []
    for number, (start, end, text) in enumerate(cues, start=1):
        cue = f"{_clock(start, decimal)} --> {_clock(end, decimal)}\n{text}\n"
        out.append(cue if header else f"{number}\n{cue}")
    return header + "\n".join(out)


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"
