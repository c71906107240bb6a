"""GET /metrics: the server's load in Prometheus' text exposition format (version 0.0.4),
written by hand, followed by the standard process metrics (prometheus_client's
ProcessCollector: `process_resident_memory_bytes`, `process_open_fds`,
`process_cpu_seconds_total`, ...). Protected like /v1 when API keys are configured (any valid key)."""

from __future__ import annotations

import asyncio
import math

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from stream_server.engine.admission import REFUSAL_REASONS
from stream_server.engine.telemetry import Histogram
from stream_server.transports.appkeys import ADMISSION, LATENCY, LIVE_STATE, SERVICE, SESSIONS
from stream_server.transports.limits import LIMITS, REFUSALS

routes = web.RouteTableDef()
PREFIX = "stream_server_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROCESS = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=PROCESS)  # reads /proc/self on Linux; elsewhere it reports nothing


class Exposition:
    """Lines of the text format: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> str:
        name = PREFIX + name
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        return name

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in (labels or {}).items())
        self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.sample(self.family(name, kind, help_text), value)

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        name = self.family(name, "histogram", help_text)
        for bound, count in histogram.cumulative():
            self.sample(f"{name}_bucket", count, {"le": _number(bound)})
        self.sample(f"{name}_sum", histogram.total)
        self.sample(f"{name}_count", histogram.count)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    scheduler, admission, latency = app[SERVICE].scheduler, app[ADMISSION], app[LATENCY]
    out = Exposition()
    out.single("live_streams", "gauge", "Live streams admitted and not yet ended.", admission.active)
    out.single("live_streams_admitted_total", "counter", "Live streams admitted since start.", admission.admitted)
    refused = out.family("live_streams_refused_total", "counter", "Live streams refused up front, by reason.")
    for reason in REFUSAL_REASONS:
        out.sample(refused, admission.refused[reason], {"reason": reason})
    out.single(
        "capacity_streams", "gauge",
        "Estimated real-time live streams the decode slots carry at the target utilisation.",
        admission.estimate,
    )
    out.single(
        "admission_limit_streams", "gauge",
        "Live streams admitted at once: the estimate (unless disabled) capped by --max-streams; +Inf if none.",
        admission.capacity,
    )
    out.single("decode_slots", "gauge", "Model calls that may run at once.", scheduler.slots)
    out.single("decode_slots_busy", "gauge", "Model calls running now.", scheduler.busy)
    out.single("decode_queue_depth", "gauge", "Model calls waiting for a slot.", scheduler.queue_depth)
    out.single("decode_seconds_total", "counter", "Wall seconds spent in model calls, summed over slots.", scheduler.decode_seconds)
    out.single("live_decode_seconds_total", "counter", "The part of decode_seconds_total spent on live streams.", scheduler.live_decode_seconds)
    out.single(
        "final_decode_seconds_total", "counter",
        "The part of live_decode_seconds_total spent on utterance finals: what admission control measures.",
        scheduler.final_decode_seconds,
    )
    out.single("decodes_total", "counter", "Model calls finished.", scheduler.decodes)
    out.single(
        "packed_decodes_total", "counter",
        "Model calls that decoded several live streams' windows at once (--pack-windows).",
        scheduler.packed_decodes,
    )
    out.single("packed_windows_total", "counter", "Live windows decoded in those calls.", scheduler.packed_windows)
    out.single("live_audio_seconds_total", "counter", "Seconds of live audio received.", admission.cost.audio_seconds)
    out.single(
        "realtime_factor", "gauge",
        "Live decode seconds per second of live audio (moving average; the default until measured).",
        admission.cost.value,
    )
    out.single("realtime_factor_measured", "gauge", "1 once realtime_factor is measured, 0 while it is the default.", int(admission.cost.measured))
    out.histogram(
        "partial_latency_seconds",
        "Wall seconds from the audio at a partial's end arriving to the partial being published.",
        latency.partial_latency,
    )
    out.histogram(
        "commit_latency_seconds",
        "Wall seconds from the audio at a word's end arriving to the word being committed.",
        latency.commit_latency,
    )
    limits, sessions = app[LIMITS], app[SESSIONS]
    refused = out.family("requests_refused_total", "counter", "Requests and sockets refused by a per-client bound, by bound.")
    for reason in REFUSALS:
        out.sample(refused, limits.refused[reason], {"reason": reason})
    out.single("open_request_addresses", "gauge", "Client addresses with a request open.", len(limits.per_address))
    out.single("sessions_in_memory", "gauge", "Live and recently ended sessions held for replay.", sessions.held)
    out.single("asyncio_tasks", "gauge", "Tasks alive on the server's event loop.", len(asyncio.all_tasks()))
    if LIVE_STATE in app:
        await _shared_counts(out, app)
    text = out.text() + generate_latest(PROCESS).decode()
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})


async def _shared_counts(out: Exposition, app: web.Application) -> None:
    """With --redis-url: the counts every replica shares, beside this replica's own above."""
    shared = app[LIVE_STATE]
    out.single("cluster_live_streams", "gauge", "Live streams holding a place, over every replica sharing the Redis.", await shared.live_streams())
    out.single("lost_sessions_failed_total", "counter", "Sessions of lost replicas this replica ended failed.", shared.reaped)
    info = out.family("replica_info", "gauge", "This replica's id in the shared registry.")
    out.sample(info, 1, {"replica": shared.replica})
