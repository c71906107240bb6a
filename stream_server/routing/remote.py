"""A remote provider: another OpenAI-compatible server's POST /audio/transcriptions.

verbose_json is always asked for upstream (segments, and words when the request wants them), so
the answer becomes a Transcription and every response_format is rendered here exactly as for a
local backend. Failures another backend may not have (timeout, connection error, 408, 429, 5xx,
or an upstream that refuses our key or model) are ProviderUnavailable, which the router fails
over on; a request upstream says is bad (400, 413, 415, 422) is the client's error, passed on.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.errors import InvalidRequest, PayloadTooLarge, ProviderUnavailable
from stream_server.languages import language_code
from stream_server.routing.providers import ProviderSpec

UPSTREAM_MODEL = "whisper-1"
"""Sent upstream when the provider names no `model`: every OpenAI-compatible server knows it."""
CLIENT_ERRORS = frozenset({400, 413, 415, 422})


async def transcribe_remote(
    session: aiohttp.ClientSession, spec: ProviderSpec, data: bytes, filename: str | None, options: TranscribeOptions
) -> Transcription:
    form = aiohttp.FormData()
    form.add_field("model", spec.model or UPSTREAM_MODEL)
    form.add_field("response_format", "verbose_json")
    form.add_field("timestamp_granularities[]", "segment")
    if options.word_timestamps:
        form.add_field("timestamp_granularities[]", "word")
    if options.language:
        form.add_field("language", options.language)
    if options.prompt:
        form.add_field("prompt", options.prompt)
    if options.temperature:
        form.add_field("temperature", str(options.temperature))
    form.add_field("file", data, filename=filename or "audio", content_type="application/octet-stream")  # last, as the SDK
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    try:
        async with session.post(
            f"{spec.base_url}/audio/transcriptions",
            data=form,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=spec.timeout_s),
        ) as response:
            status, body = response.status, await response.read()
    except asyncio.TimeoutError:
        raise ProviderUnavailable(f"provider '{spec.name}' did not answer within {spec.timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"provider '{spec.name}' is unreachable: {exc or type(exc).__name__}") from None
    if status != 200:
        raise _upstream_error(spec.name, status, body)
    try:
        return transcription_from_verbose_json(json.loads(body))
    except (ValueError, TypeError, KeyError) as exc:
        raise ProviderUnavailable(f"provider '{spec.name}' answered something that is not verbose_json ({exc})") from None


def _upstream_error(name: str, status: int, body: bytes) -> Exception:
    try:
        error = json.loads(body)["error"]
        message, param, code = str(error["message"]), error.get("param"), error.get("code")
    except (ValueError, TypeError, KeyError):
        message, param, code = body[:200].decode("utf-8", "replace") or f"HTTP {status}", None, None
    if status == 413:
        return PayloadTooLarge(f"provider '{name}': {message}", param=param or "file")
    if status in CLIENT_ERRORS:
        return InvalidRequest(message, param=param, code=code)
    return ProviderUnavailable(f"provider '{name}' answered {status}: {message}")


def transcription_from_verbose_json(body: dict) -> Transcription:
    """OpenAI's verbose_json as a Transcription. Words come as one list; each goes to the last
    segment starting at or before it. Upstream gives no word probabilities: they read as 1."""
    words = [
        Word(float(w["start"]), float(w["end"]), " " + str(w["word"]).strip(), float(w.get("probability", 1.0)))
        for w in body.get("words") or ()
    ]
    duration = float(body.get("duration") or 0.0)
    raw = body.get("segments") or ()
    if not raw and str(body.get("text", "")).strip():  # an upstream that gives text only: one segment
        raw = [{"id": 0, "start": 0.0, "end": duration, "text": " " + str(body["text"]).strip()}]
    starts = [float(s["start"]) for s in raw]
    segments = []
    for i, s in enumerate(raw):
        last = i == len(raw) - 1
        mine = tuple(w for w in words if (i == 0 or w.start >= starts[i]) and (last or w.start < starts[i + 1]))
        segments.append(
            Segment(
                id=int(s.get("id", i)),
                seek=int(s.get("seek", 0)),
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                tokens=tuple(int(t) for t in s.get("tokens") or ()),
                temperature=float(s.get("temperature", 0.0)),
                avg_logprob=float(s.get("avg_logprob", 0.0)),
                compression_ratio=float(s.get("compression_ratio", 1.0)),
                no_speech_prob=float(s.get("no_speech_prob", 0.0)),
                words=mine,
            )
        )
    return Transcription(language=language_code(str(body.get("language") or "")), duration=duration, segments=tuple(segments))
