"""The per-channel fields of a request: `multichannel=true` and `channel_labels=agent,customer`
(multipart fields, or query parameters for raw bodies and WebSockets)."""

from __future__ import annotations

from dataclasses import dataclass

from stream_server.audio.decode import MAX_CHANNELS
from stream_server.errors import InvalidRequest
from stream_server.transports.forms import Form, parse_bool

MAX_LABEL_CHARS = 64


@dataclass(frozen=True)
class ChannelRequest:
    multichannel: bool = False
    """Transcribe each channel on its own instead of mixing them to mono."""
    labels: tuple[str, ...] = ()
    """Names of the first channels, in order."""


def parse_channels(form: Form) -> ChannelRequest:
    multichannel = parse_bool(form.get("multichannel"), "multichannel")
    raw = [part for value in form.get_all("channel_labels[]", "channel_labels") for part in value.split(",")]
    labels = tuple(label.strip() for label in raw)
    if labels and not multichannel:
        raise InvalidRequest("channel_labels needs multichannel=true", param="channel_labels")
    for label in labels:
        if not label or len(label) > MAX_LABEL_CHARS or any(c in label for c in "\r\n<>[]"):
            raise InvalidRequest(
                f"each channel label must be 1 to {MAX_LABEL_CHARS} characters, without brackets or line breaks",
                param="channel_labels",
            )
    if len(labels) > MAX_CHANNELS or len(set(labels)) < len(labels):
        raise InvalidRequest(f"channel_labels takes at most {MAX_CHANNELS} distinct names", param="channel_labels")
    return ChannelRequest(multichannel, labels)
