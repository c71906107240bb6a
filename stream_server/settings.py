"""The one settings object, built once at start-up and handed to `create_app`. Each field that
`serve` takes declares its flag here (flags.setting: name, help, parsing, checks; the type is
the field's, the default the field's, the variable STREAM_SERVER_ and the flag's name)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stream_server.flags import at_least, fraction, positive, setting
from stream_server.routing.providers import ProviderSpec, default_provider, load_providers
from stream_server.vad.frames import VAD_ENGINES

DEFAULT_MODEL = "tiny.en"
MEGABYTE = 1024 * 1024
DEVICES = ("cpu", "cuda", "auto")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "stream-server"


def megabytes(text: str) -> int:
    return int(float(text) * MEGABYTE)


def balance(item: str) -> tuple[str, float]:
    """`KEY=SECONDS` (the key is checked against the configured keys by `check_balances`)."""
    key, sep, seconds = item.rpartition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not sep or not key or value < 0:
        raise ValueError(f"--key-balance takes KEY=SECONDS (seconds >= 0), not {item!r}")
    return key, value


def database_url(url: str, name: str) -> str:
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{name} must be empty (SQLite) or postgresql://..., not {url.split('://')[0]}://...")
    return url


def redis_url(url: str, name: str) -> str:
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{name} must be redis://..., rediss://... or unix://...")
    return url


def providers_from(path: str) -> tuple[ProviderSpec, ...]:
    return load_providers(Path(path))


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "--host", "address to bind")
    port: int = setting(8000, "--port", parse=int)
    model: str = setting(
        DEFAULT_MODEL, "--model", "tiny.en, base, small (bundled), a CTranslate2 directory, or a hub id"
    )
    """Model name (`tiny.en`, `base`, `small`), a local CTranslate2 directory, or a hub id."""
    device: str = setting("auto", "--device", choices=DEVICES)
    """`cpu`, `cuda` or `auto` (cuda when a GPU is visible)."""
    compute_type: str = setting("auto", "--compute-type", "auto, int8, int8_float16, float16, float32, ...")
    """CTranslate2 compute type; `auto` is int8 on CPU and float16 on CUDA."""
    cpu_threads: int = setting(
        0, "--cpu-threads", "threads per model call; 0 = every core, for each of the --decode-slots", parse=int
    )
    """Threads per model call; 0 gives each decode slot every core. On 2 cores, 2 slots x 2
    threads beat 2 x 1 and 1 x 2: a call alone took 0.83 s (2 x 1: 1.14 s), and two at once
    finished sooner than on one thread each (BENCHMARKS.md, "Threads per call")."""
    api_keys: tuple[str, ...] = setting(
        (), "--api-key", "accepted bearer key; repeat for several", env="API_KEYS", kind="repeat"
    )
    """Bearer keys accepted; empty means no authentication (loopback only by default)."""
    allow_unauthenticated: bool = setting(
        False, "--allow-unauthenticated", "allow a non-loopback --host with no API keys", kind="on"
    )
    """Allow listening on a non-loopback address with no API keys."""
    admin_keys: tuple[str, ...] = setting(
        (),
        "--admin-key",
        "bearer key that also sees every key's files and usage; repeat for several",
        env="ADMIN_KEYS",
        kind="repeat",
    )
    """Bearer keys that also see and manage every key's files, sessions and usage."""
    key_balances: tuple[tuple[str, float], ...] = setting(
        (),
        "--key-balance",
        "audio seconds a configured key may use in all; repeat per key",
        parse=balance,
        env="KEY_BALANCES",
        kind="repeat",
        metavar="KEY=SECONDS",
    )
    """(key, audio seconds) pairs: the most audio each listed key may have transcribed in all."""
    data_dir: Path = setting(None, "--data-dir", parse=Path, factory=default_data_dir)
    """Where the joined bundled models, stored files and their metadata live."""
    max_upload_bytes: int = setting(25 * MEGABYTE, "--max-upload-mb", "largest audio upload, in MB", parse=megabytes)
    """Largest accepted audio upload, enforced while reading."""
    prompt_price_per_million: float = setting(
        0.0, "--prompt-price-per-million", "price of a million prompt tokens, for /api/v2 cost", parse=float
    )
    """Price of a million prompt tokens, reported as `cost` by /api/v2."""
    completion_price_per_million: float = setting(
        0.0, "--completion-price-per-million", "price of a million completion tokens", parse=float
    )
    """Price of a million completion (transcript) tokens."""
    currency: str = setting("USD", "--currency")

    decode_slots: int = setting(
        2, "--decode-slots", "model calls run at once, each on --cpu-threads threads", parse=int, check=at_least(1)
    )
    """Model calls run at once (CTranslate2 workers); each uses `cpu_threads` threads. On 2 cores,
    2 slots finished concurrent window decodes sooner than 1 (BENCHMARKS.md), and a file's
    decode never holds the last one."""
    max_streams: int = setting(
        0,
        "--max-streams",
        "hard cap on concurrent live streams; 0 = the measured-capacity estimate only",
        parse=int,
        check=at_least(0),
    )
    """Hard cap on concurrent live streams; 0 leaves only the measured-capacity estimate."""
    max_streams_per_key: int = setting(
        0,
        "--max-streams-per-key",
        "concurrent live streams one API key may hold; 0 = no limit",
        parse=int,
        check=at_least(0),
    )
    """Concurrent live streams one API key may hold; 0 is no limit."""
    estimate_capacity: bool = setting(
        True,
        "--no-capacity-estimate",
        "refuse live streams only at --max-streams / --max-streams-per-key, not at the measured "
        "estimate (load benchmarks)",
        kind="off",
    )
    """Refuse live streams beyond the measured-capacity estimate (off: only the caps refuse)."""
    target_utilisation: float = setting(
        0.85,
        "--target-utilisation",
        "share of the decode slots admitted live streams may plan to use, 0..1",
        parse=float,
        check=fraction,
    )
    """Share of the decode slots' time admitted live streams are planned to use."""
    pack_windows: bool = setting(
        True,
        "--pack-windows",
        "under load, decode several live streams' partial windows in one model call",
        kind="both",
    )
    """Under load, decode several live streams' partial windows in one model call
    (engine/packing.py; the measurements behind the default are in BENCHMARKS.md)."""
    stream_step_s: float = 0.6
    """A live stream's open utterance is decoded again after this much new speech."""
    unsure_word_wait_s: float = setting(
        3.0,
        "--unsure-word-wait",
        "seconds of audio after a word Whisper is unsure of before it is committed: lower "
        "commits sooner, at some accuracy",
        parse=float,
        check=at_least(0.0),
    )
    """Audio that must follow a word Whisper is unsure of before it is committed (the p95 commit
    latency against a little accuracy: BENCHMARKS.md, "How long an unsure word waits")."""
    lag_alarm_s: float = setting(
        4.0,
        "--lag-alarm",
        "seconds a live result may come after the audio it covers before the client is told "
        "the stream is behind (session.lag); 0 = never told",
        parse=float,
        check=at_least(0.0),
    )
    """A live stream whose decode result comes this long after its audio arrived is told it is
    behind (`session.lag`), and told again once one comes within half of it."""
    vad: str = setting(
        "silero",
        "--vad",
        "voice-activity detector of live streams: silero (Silero VAD v6) or webrtc",
        choices=VAD_ENGINES,
    )
    """The live streams' voice-activity detector: `silero` or `webrtc` (vad/frames.py)."""
    vad_aggressiveness: int = 2
    """webrtcvad mode for live streams, 0..3."""
    idle_timeout_s: float = setting(
        30.0,
        "--idle-timeout",
        "seconds a live upload or socket may send nothing before it is ended",
        parse=float,
        check=positive,
    )
    """A live upload that sends nothing for this long is ended with an error event."""
    sse_keepalive_s: float = 10.0
    """An SSE response sends a comment line this often: it keeps proxies from timing out and
    reveals a vanished client."""
    twilio_auth_token: str | None = setting(
        None,
        "--twilio-auth-token",
        "Twilio account auth token: verify X-Twilio-Signature on /v1/twilio/stream",
        parse=lambda text: text or None,
    )
    """When set, a Twilio Media Streams upgrade must carry a valid X-Twilio-Signature."""
    stream_max_queue_s: float = setting(
        30.0,
        "--stream-max-queue-s",
        "seconds of audio a live WebSocket may have waiting for the decoder before it is closed with 1013; "
        "a chunked live body is not read further while this much waits",
        parse=float,
    )
    """Audio a live WebSocket may have waiting for the decoder; past a third of it the client is
    warned (`falling_behind`), past all of it the stream is closed with 1013. A chunked live body
    is not read further while this much waits."""

    max_session_events: int = setting(
        20_000,
        "--max-session-events",
        "events a live session keeps for replay; the oldest partials go first",
        parse=int,
        check=at_least(10),
    )
    """Events a live session keeps for replay; past it the oldest partials are dropped first."""
    max_finished_sessions: int = setting(
        100, "--max-finished-sessions", "ended sessions kept in memory for replay", parse=int, check=at_least(0)
    )
    """Ended sessions kept in memory for replay (their transcripts are stored regardless)."""
    max_messages_per_s: float = setting(
        200.0,
        "--max-messages-per-second",
        "messages a live WebSocket may send per second (bursts of as many); past it: 1008",
        parse=float,
        check=positive,
    )
    """WebSocket messages a live socket may send per second, on average over a burst of as many
    (a Twilio call sends 100 a second); past it the stream is closed with 1008."""
    max_connections_per_key: int = setting(
        32,
        "--max-connections-per-key",
        "requests one API key may have open at once; 0 = no limit",
        parse=int,
        check=at_least(0),
    )
    """Requests (streams, feeds, uploads) one API key may have open at once; 0 is no limit."""
    max_connections_per_address: int = setting(
        32,
        "--max-connections-per-address",
        "requests one client address may have open at once; 0 = no limit",
        parse=int,
        check=at_least(0),
    )
    """Requests one client address may have open at once; 0 is no limit."""
    max_failed_auth: int = setting(
        10,
        "--max-failed-auth",
        "failed key checks per address per minute before 429; 0 = no limit",
        parse=int,
        check=at_least(0),
    )
    """Failed key checks one address may make per minute before it gets 429; 0 is no limit."""
    sse_send_timeout_s: float = setting(
        30.0,
        "--sse-send-timeout",
        "seconds an SSE client may read nothing, once its buffer is full, before it is dropped",
        parse=float,
        check=positive,
    )
    """An SSE client that reads nothing for this long, once its socket buffer is full, is dropped."""
    shutdown_drain_s: float = setting(
        15.0,
        "--shutdown-drain",
        "on SIGTERM, seconds live streams get to decode the audio already sent",
        parse=float,
        check=at_least(0.0),
    )
    """On SIGTERM, how long live streams get to decode the audio they already received before
    they end with `server_shutdown` (then aiohttp gives requests up to 60 s more to finish).
    Keep it under the sockets' heartbeat (20 s): aiohttp stops reading them once shutdown starts,
    so their pings go unanswered and they drop (1006) about 30 s after the last message read."""
    cors_origins: tuple[str, ...] = setting(
        (),
        "--cors-origin",
        "an origin allowed to call the API from a browser, e.g. https://app.example.com; repeat for "
        "several; none by default",
        env="CORS_ORIGINS",
        kind="repeat",
    )
    """Origins allowed to call the API from a browser (CORS); empty: none (the page is same-origin)."""

    database_url: str = setting(
        "",
        "--database-url",
        "postgresql://... for usage, balances, files' metadata and sessions shared by replicas; "
        "empty = SQLite under --data-dir",
        check=database_url,
    )
    """Where keys' usage, balance holds, files' metadata and finished sessions live: empty is
    SQLite under `data_dir`; `postgresql://...` is a PostgreSQL server that replicas share."""
    blob_dir: Path | None = setting(
        None, "--blob-dir", "directory of stored files' bytes, one every replica mounts; default under --data-dir", parse=Path
    )
    """Where stored files' bytes live (a directory every replica mounts); None: under `data_dir`."""
    redis_url: str = setting(
        "",
        "--redis-url",
        "redis://... for live sessions' event logs, their registry and stream counts shared by "
        "replicas; empty = in-process",
        check=redis_url,
    )
    """`redis://...`: live sessions' event logs, their registry and the stream counts admission
    checks live in this Redis, shared by replicas; empty: in this process."""
    live_lease_s: float = setting(
        15.0,
        "--live-lease",
        "with --redis-url: seconds after which a crashed replica's streams are released and failed",
        parse=float,
        check=positive,
    )
    """With Redis: a replica renews its live streams' places this often over three; a crashed
    replica's streams are released, and their sessions failed, this long after its last renewal."""
    ended_log_keep_s: float = setting(
        3600.0,
        "--ended-log-keep",
        "with --redis-url: seconds an ended session's event log is kept for replay",
        parse=float,
        check=positive,
    )
    """With Redis: how long an ended session's event log stays there for replay."""

    providers: tuple[ProviderSpec, ...] = setting(
        (),
        "--config",
        "TOML file declaring the transcription backends ([[providers]] tables); without it "
        "one local backend named 'local' serves --model",
        parse=providers_from,
    )
    """Backends from `--config`; empty: one local backend named `local` from model/device/compute_type."""
    log_level: str = setting("info", "--log-level")

    def check_balances(self) -> None:
        """Each `--key-balance` must name a configured key."""
        if any(key not in {*self.api_keys, *self.admin_keys} for key, _ in self.key_balances):
            raise ValueError("--key-balance names a key that is not given with --api-key or --admin-key")

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
        """`cpu_threads`, or every core."""
        return self.cpu_threads or (os.cpu_count() or 1)
