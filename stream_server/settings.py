"""The one settings object, built once at start-up and handed to `create_app`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stream_server.routing.providers import ProviderSpec, default_provider

DEFAULT_MODEL = "tiny.en"
MEGABYTE = 1024 * 1024


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "stream-server"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = DEFAULT_MODEL
    """Model name (`tiny.en`, `base`, `small`), a local CTranslate2 directory, or a hub id."""
    device: str = "auto"
    """`cpu`, `cuda` or `auto` (cuda when a GPU is visible)."""
    compute_type: str = "auto"
    """CTranslate2 compute type; `auto` is int8 on CPU and float16 on CUDA."""
    cpu_threads: int = 0
    """Threads per model call; 0 shares the cores evenly among the decode slots."""
    api_keys: tuple[str, ...] = ()
    """Bearer keys accepted; empty means no authentication (loopback only by default)."""
    allow_unauthenticated: bool = False
    """Allow listening on a non-loopback address with no API keys."""
    admin_keys: tuple[str, ...] = ()
    """Bearer keys that also see and manage every key's files, sessions and usage."""
    key_balances: tuple[tuple[str, float], ...] = ()
    """(key, audio seconds) pairs: the most audio each listed key may have transcribed in all."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Where the joined bundled models, stored files and their metadata live."""
    max_upload_bytes: int = 25 * MEGABYTE
    """Largest accepted audio upload, enforced while reading."""
    prompt_price_per_million: float = 0.0
    """Price of a million prompt tokens, reported as `cost` by /api/v2."""
    completion_price_per_million: float = 0.0
    """Price of a million completion (transcript) tokens."""
    currency: str = "USD"

    decode_slots: int = 2
    """Model calls run at once (CTranslate2 workers); each uses `cpu_threads` threads. On 2 cores,
    2 slots x 1 thread finished concurrent window decodes sooner than 1 x 2 (BENCHMARKS.md)."""
    max_streams: int = 0
    """Hard cap on concurrent live streams; 0 leaves only the measured-capacity estimate."""
    max_streams_per_key: int = 0
    """Concurrent live streams one API key may hold; 0 is no limit."""
    estimate_capacity: bool = True
    """Refuse live streams beyond the measured-capacity estimate (off: only the caps refuse)."""
    target_utilisation: float = 0.85
    """Share of the decode slots' time admitted live streams are planned to use."""
    pack_windows: bool = True
    """Under load, decode several live streams' partial windows in one model call
    (engine/packing.py; the measurements behind the default are in BENCHMARKS.md)."""
    stream_step_s: float = 0.6
    """A live stream's open utterance is decoded again after this much new speech."""
    unsure_word_wait_s: float = 3.0
    """Audio that must follow a word Whisper is unsure of before it is committed (the p95 commit
    latency against a little accuracy: BENCHMARKS.md, "How long an unsure word waits")."""
    vad: str = "silero"
    """The live streams' voice-activity detector: `silero` or `webrtc` (vad/frames.py)."""
    vad_aggressiveness: int = 2
    """webrtcvad mode for live streams, 0..3."""
    idle_timeout_s: float = 30.0
    """A live upload that sends nothing for this long is ended with an error event."""
    sse_keepalive_s: float = 10.0
    """An SSE response sends a comment line this often: it keeps proxies from timing out and
    reveals a vanished client."""
    twilio_auth_token: str | None = None
    """When set, a Twilio Media Streams upgrade must carry a valid X-Twilio-Signature."""
    stream_max_queue_s: float = 30.0
    """Audio a live WebSocket may have waiting for the decoder; past a third of it the client is
    warned (`falling_behind`), past all of it the stream is closed with 1013."""

    max_session_events: int = 20_000
    """Events a live session keeps for replay; past it the oldest partials are dropped first."""
    max_finished_sessions: int = 100
    """Ended sessions kept in memory for replay (their transcripts are stored regardless)."""
    max_messages_per_s: float = 200.0
    """WebSocket messages a live socket may send per second, on average over a burst of as many
    (a Twilio call sends 100 a second); past it the stream is closed with 1008."""
    max_connections_per_key: int = 32
    """Requests (streams, feeds, uploads) one API key may have open at once; 0 is no limit."""
    max_connections_per_address: int = 32
    """Requests one client address may have open at once; 0 is no limit."""
    max_failed_auth: int = 10
    """Failed key checks one address may make per minute before it gets 429; 0 is no limit."""
    sse_send_timeout_s: float = 30.0
    """An SSE client that reads nothing for this long, once its socket buffer is full, is dropped."""
    shutdown_drain_s: float = 15.0
    """On SIGTERM, how long live streams get to decode the audio they already received before
    they end with `server_shutdown` (then aiohttp gives requests up to 60 s more to finish).
    Keep it under the sockets' heartbeat (20 s): aiohttp stops reading them once shutdown starts,
    so their pings go unanswered and they drop (1006) about 30 s after the last message read."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (CORS); empty: none (the page is same-origin)."""

    database_url: str = ""
    """Where keys' usage, balance holds, files' metadata and finished sessions live: empty is
    SQLite under `data_dir`; `postgresql://...` is a PostgreSQL server that replicas share."""
    blob_dir: Path | None = None
    """Where stored files' bytes live (a directory every replica mounts); None: under `data_dir`."""
    redis_url: str = ""
    """`redis://...`: live sessions' event logs, their registry and the stream counts admission
    checks live in this Redis, shared by replicas; empty: in this process."""
    live_lease_s: float = 15.0
    """With Redis: a replica renews its live streams' places this often over three; a crashed
    replica's streams are released, and their sessions failed, this long after its last renewal."""
    ended_log_keep_s: float = 3600.0
    """With Redis: how long an ended session's event log stays there for replay."""

    providers: tuple[ProviderSpec, ...] = ()
    """Backends from `--config`; empty: one local backend named `local` from model/device/compute_type."""

    @property
    def provider_specs(self) -> tuple[ProviderSpec, ...]:
        """The backends in config order; the first local one is the default (/health, SERVICE)."""
        return self.providers or (default_provider(self.model, self.device, self.compute_type),)

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def threads_per_slot(self) -> int:
        """`cpu_threads`, or the cores shared evenly among the decode slots."""
        return self.cpu_threads or max(1, (os.cpu_count() or 1) // self.decode_slots)
