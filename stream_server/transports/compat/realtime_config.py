"""An OpenAI Realtime transcription session's configuration: what the two client shapes set
(GA `session.update` with `session.type = "transcription"`, beta `transcription_session.update`),
and the session object each shape is answered with.

The objects follow OpenAI's OpenAPI document: `RealtimeTranscriptionSessionCreateRequestGA` in
`session.created`/`session.updated`, `RealtimeTranscriptionSessionCreateResponse` in
`transcription_session.created`/`.updated`. Where a schema types a field as an object, a field
that is off is left out rather than sent as null (noise reduction; the beta `turn_detection`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from stream_server.audio.live import RawFormat
from stream_server.errors import InvalidRequest
from stream_server.transports.forms import FIELD_LIMIT
from stream_server.vad.segmenter import VadOptions

PCM_RATE = 24000
"""The only rate `audio/pcm` (`pcm16`) has in OpenAI's protocol."""
GA_FORMATS = {
    "audio/pcm": RawFormat("s16le", PCM_RATE),
    "audio/pcmu": RawFormat("mulaw", 8000),
    "audio/pcma": RawFormat("alaw", 8000),
}
"""GA `audio.input.format.type` values and the audio each names (resampled to 16 kHz here)."""
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
"""Beta `input_audio_format` values and the GA format each is."""
LOGPROBS = "item.input_audio_transcription.logprobs"
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
"""`semantic_vad` is accepted and served by the server VAD (its `eagerness` is not used)."""
REALTIME_TRANSCRIPTION_MODELS = frozenset(
    {"gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper", "gpt-4o-mini-transcribe-2025-12-15"}
)
"""Transcription model names OpenAI's Realtime sessions take beyond those its HTTP API takes
(the openai SDK's `AudioTranscription.model`); each is served by the loaded model."""
MAX_SILENCE_MS = 10_000
MAX_PREFIX_MS = 5_000


class RealtimeError(InvalidRequest):
    """A client event the session cannot take: answered with an `error` event, session kept."""

    default_code = "invalid_value"


@dataclass(frozen=True)
class ServerVad:
    """`turn_detection` of type `server_vad`: the server's VAD with these three of its options."""

    threshold: float
    """Silero's speech probability from which a frame is speech (VadOptions.threshold)."""
    prefix_padding_ms: int
    """Audio kept before the detected speech (VadOptions.pre_speech_ms)."""
    silence_duration_ms: int
    """Silence that ends a turn (VadOptions.hangover_ms)."""
    type: str = "server_vad"


@dataclass(frozen=True)
class SessionConfig:
    format: str = "audio/pcm"
    model: str | None = None
    """The transcription model the client named (answered by the loaded model); None: not named."""
    language: str | None = None
    prompt: str | None = None
    turn_detection: ServerVad | None = None
    """None: manual turns, each ended by the client's `input_audio_buffer.commit`."""
    noise_reduction: str | None = None
    """Accepted and reported; the audio is not filtered."""
    logprobs: bool = False

    @classmethod
    def defaults(cls, vad: VadOptions) -> SessionConfig:
        """What audio sent before any update gets, as OpenAI does: pcm at 24 kHz, server VAD
        (here with the server's own VAD options)."""
        return cls(turn_detection=ServerVad(vad.threshold, vad.pre_speech_ms, vad.hangover_ms))

    @property
    def raw_format(self) -> RawFormat:
        return GA_FORMATS[self.format]

    @property
    def manual(self) -> bool:
        return self.turn_detection is None

    def vad_options(self, base: VadOptions) -> VadOptions:
        """The live stream's VAD options. Manual turns keep the server's: the VAD then only
        skips the silence inside a turn, whose end is the client's commit."""
        vad = self.turn_detection
        if vad is None:
            return base
        silence = vad.silence_duration_ms
        return dataclasses.replace(
            base,
            threshold=vad.threshold,
            pre_speech_ms=vad.prefix_padding_ms,
            hangover_ms=silence,
            pause_ms=min(base.pause_ms, silence),
            min_hangover_ms=min(base.min_hangover_ms, silence),
        )

    def fixed_part(self) -> tuple:
        """What a live stream is built with and cannot change once audio flows."""
        return (self.model, self.language, self.prompt, self.turn_detection)

    # The session objects

    def ga_session(self, session_id: str, model_name: str) -> dict:
        """`RealtimeTranscriptionSessionCreateRequestGA`, with the session's `id` and `object`."""
        audio_input: dict[str, Any] = {
            "format": {"type": self.format, "rate": PCM_RATE} if self.format == "audio/pcm" else {"type": self.format},
            "transcription": self._transcription(model_name),
            "turn_detection": self._turn_detection(),
        }
        if self.noise_reduction:
            audio_input["noise_reduction"] = {"type": self.noise_reduction}
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "audio": {"input": audio_input},
            "include": [LOGPROBS] if self.logprobs else [],
        }

    def beta_session(self, session_id: str, model_name: str) -> dict:
        """`RealtimeTranscriptionSessionCreateResponse`. Its schema requires `client_secret`,
        which only a session made over REST has: it is sent empty."""
        session: dict[str, Any] = {
            "id": session_id,
            "object": "realtime.transcription_session",
            "client_secret": {"value": "", "expires_at": 0},
            "modalities": ["text"],
            "input_audio_format": next(beta for beta, ga in BETA_FORMATS.items() if ga == self.format),
            "input_audio_transcription": self._transcription(model_name),
            "include": [LOGPROBS] if self.logprobs else [],
        }
        turn_detection = self._turn_detection()
        if turn_detection is not None:  # the schema's turn_detection is an object: manual turns leave it out
            session["turn_detection"] = turn_detection
        if self.noise_reduction:
            session["input_audio_noise_reduction"] = {"type": self.noise_reduction}
        return session

    def _transcription(self, model_name: str) -> dict:
        fields = {"model": self.model or model_name, "language": self.language, "prompt": self.prompt}
        return {k: v for k, v in fields.items() if v is not None}

    def _turn_detection(self) -> dict | None:
        vad = self.turn_detection
        if vad is None:
            return None
        return {
            "type": vad.type,
            "threshold": vad.threshold,
            "prefix_padding_ms": vad.prefix_padding_ms,
            "silence_duration_ms": vad.silence_duration_ms,
        }


def parse_ga_update(session: Any, current: SessionConfig, models: Collection[str], defaults: SessionConfig) -> SessionConfig:
    """A GA `session.update`'s `session` applied to `current`: only the fields present change;
    `turn_detection: null` means manual commits."""
    session = _object(session, "session")
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise RealtimeError(
            f"Invalid value: {kind!r}. This server holds transcription sessions only: session.type must be 'transcription'",
            param="session.type",
        )
    changes: dict[str, Any] = {}
    audio = _object(session.get("audio") or {}, "session.audio")
    audio_input = _object(audio.get("input") or {}, "session.audio.input")
    if audio.get("output") is not None:
        raise RealtimeError("a transcription session has no audio output", param="session.audio.output")
    if "format" in audio_input:
        changes["format"] = _ga_format(audio_input["format"])
    if audio_input.get("transcription") is not None:
        changes |= _transcription(audio_input["transcription"], "session.audio.input.transcription", models)
    if "turn_detection" in audio_input:
        changes["turn_detection"] = _turn_detection(
            audio_input["turn_detection"], "session.audio.input.turn_detection", current, defaults
        )
    if "noise_reduction" in audio_input:
        changes["noise_reduction"] = _noise_reduction(audio_input["noise_reduction"], "session.audio.input.noise_reduction")
    if "include" in session:
        changes["logprobs"] = _include(session["include"], "session.include")
    return dataclasses.replace(current, **changes)


def parse_beta_update(session: Any, current: SessionConfig, models: Collection[str], defaults: SessionConfig) -> SessionConfig:
    """A beta `transcription_session.update`'s `session` applied to `current`."""
    session = _object(session, "session")
    changes: dict[str, Any] = {}
    if "input_audio_format" in session:
        value = session["input_audio_format"]
        if value not in BETA_FORMATS:
            raise RealtimeError(
                f"Invalid value: {value!r}. Supported values are: {', '.join(map(repr, BETA_FORMATS))}.",
                param="session.input_audio_format",
            )
        changes["format"] = BETA_FORMATS[value]
    if session.get("input_audio_transcription") is not None:
        changes |= _transcription(session["input_audio_transcription"], "session.input_audio_transcription", models)
    if "turn_detection" in session:
        changes["turn_detection"] = _turn_detection(session["turn_detection"], "session.turn_detection", current, defaults)
    if "input_audio_noise_reduction" in session:
        changes["noise_reduction"] = _noise_reduction(session["input_audio_noise_reduction"], "session.input_audio_noise_reduction")
    if "include" in session:
        changes["logprobs"] = _include(session["include"], "session.include")
    return dataclasses.replace(current, **changes)


def _object(value: Any, param: str) -> Mapping:
    if not isinstance(value, dict):
        raise RealtimeError(f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    return value


def _ga_format(value: Any) -> str:
    param = "session.audio.input.format"
    fmt = _object(value, param)
    kind = fmt.get("type", "audio/pcm")
    if kind not in GA_FORMATS:
        raise RealtimeError(
            f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, GA_FORMATS))}.", param=f"{param}.type"
        )
    rate = fmt.get("rate")
    if kind == "audio/pcm" and rate is not None and rate != PCM_RATE:
        raise RealtimeError(f"Invalid value: {rate!r}. audio/pcm is 24000 Hz only.", param=f"{param}.rate")
    if kind != "audio/pcm" and rate is not None:
        raise RealtimeError(f"{kind} has no rate: it is 8000 Hz", param=f"{param}.rate")
    return kind


def _transcription(value: Any, param: str, models: Collection[str]) -> dict[str, Any]:
    """model, language and prompt (the other AudioTranscription fields are accepted, not used)."""
    fields = _object(value, param)
    changes: dict[str, Any] = {}
    if "model" in fields:
        model = fields["model"]
        if not isinstance(model, str) or model not in models:
            raise RealtimeError(
                f"Invalid value: {model!r}. Models served here: {', '.join(sorted(models))}.",
                param=f"{param}.model",
                code="model_not_found",
            )
        changes["model"] = model
    if "language" in fields:
        language = fields["language"]
        if language is not None and not isinstance(language, str):
            raise RealtimeError(f"Invalid type for '{param}.language': expected a string.", param=f"{param}.language", code="invalid_type")
        changes["language"] = (language or "").strip().lower() or None
    if "prompt" in fields:
        prompt = fields["prompt"]
        if prompt is not None and not isinstance(prompt, str):
            raise RealtimeError(f"Invalid type for '{param}.prompt': expected a string.", param=f"{param}.prompt", code="invalid_type")
        if prompt and len(prompt) > FIELD_LIMIT:
            raise RealtimeError(f"'{param}.prompt' is too long (at most {FIELD_LIMIT} characters)", param=f"{param}.prompt", code="field_too_long")
        changes["prompt"] = prompt or None
    return changes


def _turn_detection(value: Any, param: str, current: SessionConfig, defaults: SessionConfig) -> ServerVad | None:
    """null: manual commits; an object: server VAD, its missing options kept from the current
    VAD (or the defaults, coming from manual turns)."""
    if value is None:
        return None
    fields = _object(value, param)
    kind = fields.get("type", "server_vad")
    if kind not in TURN_DETECTION_TYPES:
        raise RealtimeError(
            f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, TURN_DETECTION_TYPES))}.", param=f"{param}.type"
        )
    base = current.turn_detection or defaults.turn_detection
    assert base is not None
    threshold = _given(fields, "threshold", base.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise RealtimeError(f"Invalid value: {threshold!r}. '{param}.threshold' is a number from 0.0 to 1.0.", param=f"{param}.threshold")
    prefix = _milliseconds(_given(fields, "prefix_padding_ms", base.prefix_padding_ms), f"{param}.prefix_padding_ms", 0, MAX_PREFIX_MS)
    silence = _milliseconds(_given(fields, "silence_duration_ms", base.silence_duration_ms), f"{param}.silence_duration_ms", 1, MAX_SILENCE_MS)
    return ServerVad(float(threshold), prefix, silence)


def _given(fields: Mapping, name: str, default: Any) -> Any:
    """The field's value; missing or null keeps `default`."""
    value = fields.get(name)
    return default if value is None else value


def _milliseconds(value: Any, param: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RealtimeError(f"Invalid value: {value!r}. '{param}' is an integer from {low} to {high}.", param=param)
    return value


def _noise_reduction(value: Any, param: str) -> str | None:
    if value is None:
        return None
    kind = _object(value, param).get("type", "near_field")
    if kind not in NOISE_REDUCTION_TYPES:
        raise RealtimeError(
            f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, NOISE_REDUCTION_TYPES))}.", param=f"{param}.type"
        )
    return kind


def _include(value: Any, param: str) -> bool:
    """Whether logprobs are asked for; other entries are accepted and have no effect."""
    if value is None:
        return False
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RealtimeError(f"Invalid type for '{param}': expected an array of strings.", param=param, code="invalid_type")
    return LOGPROBS in value
