"""Render a transcription in each of OpenAI's `response_format`s."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from stream_server.decoder.results import Segment, Transcription
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
        return Rendered(_subtitles(result.segments, ",", header=""), "text/plain")
    if response_format == "vtt":
        return Rendered(_subtitles(result.segments, ".", header="WEBVTT\n\n"), "text/vtt")
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
    return [
        {
            "token": w.text,
            "logprob": math.log(max(w.probability, 1e-12)),
            "bytes": list(w.text.encode()),
        }
        for w in result.words
    ]


def verbose_json(result: Transcription, granularities: frozenset[str]) -> dict:
    body: dict = {
        "task": "transcribe",
        "language": language_name(result.language),
        "duration": round(result.duration, 3),
        "text": result.text,
        "usage": duration_usage(result.duration),
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in result.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in result.words
        ]
    return body


def _subtitles(segments: tuple[Segment, ...], decimal: str, header: str) -> str:
    cues = []
    for number, s in enumerate(segments, start=1):
        timing = f"{_clock(s.start, decimal)} --> {_clock(s.end, decimal)}"
        cue = f"{timing}\n{s.text.strip()}\n"
        cues.append(cue if header else f"{number}\n{cue}")
    return header + "\n".join(cues)


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"
