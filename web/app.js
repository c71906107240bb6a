// Live captions: the speaker page streams the microphone to /v1/audio/stream (WebSocket);
// the viewer page (/?session=ID) follows a session's SSE feed. Both render the same events.
// Protocol: docs/PROTOCOL_WEBSOCKET.md.

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "stream-server.api-key";
const MAX_BACKOFF_S = 30;

const ui = {
  state: $("state"),
  error: $("error"),
  start: $("start"),
  language: $("language"),
  key: $("api-key"),
  share: $("share"),
  shareLink: $("share-link"),
  copyLink: $("copy-link"),
  captions: $("captions"),
};

function setState(kind, text) {
  ui.state.dataset.state = kind;
  ui.state.textContent = text;
}

function showError(text, { warning = false } = {}) {
  ui.error.textContent = text;
  ui.error.classList.toggle("warning", warning);
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

// ---- API key (sent as a WebSocket subprotocol token or ?api_key=, never in the share link) ----

ui.key.value = localStorage.getItem(KEY_STORAGE) || "";
ui.key.addEventListener("change", () => {
  const key = ui.key.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  if (viewedSession) location.reload();
});
if (ui.key.value) $("key-box").open = false;
const apiKey = () => ui.key.value.trim();

// ---- captions: one line per utterance, committed text plus a greyed tail replaced in place ----

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

class Captions {
  constructor(root) {
    this.root = root;
    this.open = []; // lines whose utterance.done has not come yet, oldest first
    this.utterances = []; // {start, end, text} in seconds since the first session began
    this.offset = 0; // seconds to add to the current session's times (after a reconnect)
  }

  newSession(offset) {
    for (const line of this.open) this.settle(line);
    this.open = [];
    this.offset = offset;
  }

  handle(event) {
    switch (event.type) {
      case "speech.started":
        this.open.push(this.line(event.time));
        break;
      case "transcript.text.delta": {
        const line = this.current(event.start);
        line.committed.textContent += line.committed.textContent ? event.delta : event.delta.trimStart();
        line.tail.textContent = "";
        break;
      }
      case "transcript.text.partial": {
        const line = this.current(event.start);
        line.tail.textContent = (line.committed.textContent ? " " : "") + event.text;
        break;
      }
      case "transcript.utterance.done": {
        const line = this.current(event.start);
        this.open.shift();
        line.committed.textContent = event.text;
        line.tail.textContent = "";
        line.time.textContent = clock(this.offset + event.start);
        if (!event.text) {
          line.element.remove();
          break;
        }
        this.utterances.push({ start: this.offset + event.start, end: this.offset + event.end, text: event.text });
        break;
      }
    }
  }

  current(start) {
    if (!this.open.length) this.open.push(this.line(start));
    return this.open[0];
  }

  line(start) {
    const element = document.createElement("p");
    element.className = "line";
    const time = document.createElement("time");
    time.textContent = clock(this.offset + start);
    const text = document.createElement("span");
    const committed = document.createElement("span");
    const tail = document.createElement("span");
    tail.className = "tail";
    text.append(committed, tail);
    element.append(time, text);
    this.root.append(element);
    element.scrollIntoView({ block: "end" });
    return { element, time, committed, tail };
  }

  settle(line) {
    line.tail.textContent = "";
    if (!line.committed.textContent) line.element.remove();
  }
}

const captions = new Captions(ui.captions);

// ---- export (client-side, from the utterance events) ----

function stamp(seconds, separator) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${separator}${pad(ms % 1000, 3)}`;
}

const exporters = {
  txt: (list) => list.map((u) => u.text).join("\n") + "\n",
  srt: (list) => list.map((u, i) => `${i + 1}\n${stamp(u.start, ",")} --> ${stamp(u.end, ",")}\n${u.text}\n`).join("\n"),
  vtt: (list) => "WEBVTT\n\n" + list.map((u) => `${stamp(u.start, ".")} --> ${stamp(u.end, ".")}\n${u.text}\n`).join("\n"),
};

for (const button of document.querySelectorAll("[data-export]")) {
  button.addEventListener("click", () => {
    const kind = button.dataset.export;
    if (!captions.utterances.length) {
      showError("Nothing to export yet: no utterance has finished.", { warning: true });
      return;
    }
    const blob = new Blob([exporters[kind](captions.utterances)], { type: "text/plain;charset=utf-8" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${sessionId || viewedSession || "captions"}.${kind}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
}

// ---- events shared by both modes ----

let sessionId = null;
let firstStart = null; // wall time the first session began: later sessions' times are offset by it

function onEvent(event) {
  if (event.type === "session.created") {
    sessionId = event.session_id;
    firstStart ??= Date.now();
    captions.newSession((Date.now() - firstStart) / 1000);
    document.body.dataset.session = sessionId;
    if (!viewedSession) showShareLink(sessionId);
  } else if (event.type === "error") {
    showError(event.error.message);
  } else if (event.type === "warning") {
    showError(event.message, { warning: true });
  } else if (event.type === "session.lag") {
    if (event.behind) showError(`The server is busy: captions are ${event.lag_s.toFixed(1)} s behind the audio.`, { warning: true });
    else if (ui.error.classList.contains("warning")) clearError();
  } else if (event.type === "transcript.text.done") {
    captions.newSession(captions.offset);
  } else {
    captions.handle(event);
  }
}

function showShareLink(id) {
  const url = `${location.origin}${location.pathname}?session=${encodeURIComponent(id)}`;
  ui.shareLink.href = url;
  ui.shareLink.textContent = url;
  ui.share.hidden = false;
}

ui.copyLink.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(ui.shareLink.href);
    ui.copyLink.textContent = "Copied";
  } catch {
    ui.copyLink.textContent = "Select the link to copy it";
  }
});

// Why a refused connection failed: a WebSocket only reports 1006, so ask over plain HTTP, where
// the server answers the same checks with its JSON error. Null means "try again later".
async function refusal(url) {
  const http = new URL(url, location.href);
  http.protocol = location.protocol;
  try {
    const response = await fetch(http, { headers: apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {} });
    if (response.status >= 500 || response.ok) return null;
    const body = await response.json();
    if (body.error?.code === "websocket_required") return null; // the request itself was fine
    const message = body.error?.message || `HTTP ${response.status}`;
    if (response.status !== 401) return message;
    $("key-box").open = true;
    return `This server needs a valid API key: enter it under "API key" and try again. (${message})`;
  } catch {
    return null;
  }
}

// ---- speaker mode: microphone -> AudioWorklet (16 kHz s16le, 100 ms frames) -> WebSocket ----

let socket = null;
let wanted = false; // the person wants to be live: reconnect when the socket drops
let retries = 0;
let retryTimer = null;
let mic = null; // {stream, context}

function streamUrl() {
  const url = new URL("/v1/audio/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("encoding", "pcm_s16le");
  url.searchParams.set("sample_rate", "16000");
  if (ui.language.value) url.searchParams.set("language", ui.language.value);
  return url;
}

function micProblem(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this site in the browser's settings, then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
      return "The microphone is in use by another application or could not be opened.";
    case "InsecureContext":
      return "The browser allows the microphone only on https:// pages or on localhost.";
    default:
      return `The microphone could not be started: ${error.message || error.name}`;
  }
}

async function openMic() {
  if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error("insecure context"), { name: "InsecureContext" });
  // Browser voice processing (noise suppression, gain control) leaves artefacts that cost the
  // recogniser more than the noise it removes; echo cancellation stays on for speakers.
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
  });
  // A 16 kHz context lets the browser resample well; some browsers (Firefox) refuse a
  // microphone in a context at another rate than the device's, and the worklet resamples then.
  let context, source;
  try {
    context = new AudioContext({ sampleRate: 16000 });
    source = context.createMediaStreamSource(stream);
  } catch {
    context?.close();
    context = new AudioContext();
    source = context.createMediaStreamSource(stream);
  }
  await context.audioWorklet.addModule("/web/worklet.js");
  const framer = new AudioWorkletNode(context, "pcm-framer");
  framer.port.onmessage = (message) => {
    if (socket?.readyState === WebSocket.OPEN && wanted) socket.send(message.data);
  };
  source.connect(framer);
  framer.connect(context.destination); // it outputs silence; being connected keeps it running
  await context.resume();
  mic = { stream, context };
}

function closeMic() {
  if (!mic) return;
  for (const track of mic.stream.getTracks()) track.stop();
  mic.context.close();
  mic = null;
}

function setLive(live) {
  ui.start.textContent = live ? "Stop" : "Start";
  ui.start.setAttribute("aria-pressed", String(live));
  ui.language.disabled = live;
}

function connect() {
  clearTimeout(retryTimer);
  const url = streamUrl();
  const protocols = apiKey() ? ["stream-server", `bearer.${apiKey()}`] : ["stream-server"];
  let opened = false;
  setState("connecting", "Connecting…");
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.onopen = () => {
    opened = true;
    retries = 0;
    clearError();
    setState("live", "Live: listening");
  };
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = async (close) => {
    if (socket === ws) socket = null;
    if (!wanted) {
      setState("idle", close.code === 1000 ? "Stopped" : `Stopped (connection closed, code ${close.code})`);
      return;
    }
    const refused = opened ? null : await refusal(url);
    if (refused || close.code === 1008) {
      stopped(refused || close.reason || "The server ended the stream.");
      return;
    }
    const delay = Math.min(MAX_BACKOFF_S, 2 ** retries) * (0.75 + Math.random() / 2);
    retries += 1;
    setState("error", `Connection lost (code ${close.code}); reconnecting in ${Math.round(delay)} s…`);
    retryTimer = setTimeout(connect, delay * 1000);
  };
}

function stopped(message) {
  wanted = false;
  clearTimeout(retryTimer);
  closeMic();
  setLive(false);
  setState("error", "Stopped");
  showError(message);
}

async function start() {
  clearError();
  ui.start.disabled = true;
  try {
    await openMic();
  } catch (error) {
    closeMic();
    setState("error", "Microphone unavailable");
    showError(micProblem(error));
    return;
  } finally {
    ui.start.disabled = false;
  }
  wanted = true;
  retries = 0;
  setLive(true);
  connect();
}

function stop() {
  wanted = false;
  clearTimeout(retryTimer);
  closeMic();
  setLive(false);
  if (socket?.readyState === WebSocket.OPEN) {
    setState("connecting", "Finishing the last words…");
    socket.send(JSON.stringify({ type: "close" })); // the server flushes, sends done, closes 1000
  } else {
    socket?.close();
    setState("idle", "Stopped");
  }
}

ui.start.addEventListener("click", () => (wanted ? stop() : start()));

// ---- viewer mode: /?session=ID follows that session's SSE feed ----

const viewedSession = new URLSearchParams(location.search).get("session");

function follow(id) {
  const path = `/v1/audio/sessions/${encodeURIComponent(id)}/events`;
  const url = apiKey() ? `${path}?api_key=${encodeURIComponent(apiKey())}` : path;
  setState("connecting", "Connecting…");
  const feed = new EventSource(url); // it reconnects by itself, resuming with Last-Event-ID
  feed.onopen = () => setState("live", "Following a live session");
  feed.onmessage = (message) => {
    if (message.data === "[DONE]") {
      feed.close();
      setState("idle", "The session has ended");
      return;
    }
    onEvent(JSON.parse(message.data));
  };
  feed.onerror = async () => {
    if (feed.readyState !== EventSource.CLOSED) {
      setState("connecting", "Connection lost; reconnecting…");
      return;
    }
    if (await showStored(id)) return;
    setState("error", "Cannot follow this session");
    showError((await refusal(path)) || "The session feed could not be opened.");
  };
}

// A session that ended before the server restarted has no feed, only its stored transcript.
async function showStored(id) {
  try {
    const response = await fetch(`/v1/audio/sessions/${encodeURIComponent(id)}`, {
      headers: apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {},
    });
    if (!response.ok) return false;
    const session = await response.json();
    const utterances = session.utterances ?? [{ id: 0, text: session.text, start: 0, end: session.duration ?? 0 }];
    onEvent({ type: "session.created", session_id: session.id });
    for (const u of utterances) onEvent({ type: "transcript.utterance.done", utterance_id: u.id, text: u.text, start: u.start, end: u.end });
    setState("idle", "The session has ended");
    return true;
  } catch {
    return false;
  }
}

if (viewedSession) {
  document.body.classList.add("viewer");
  $("title").textContent = "Live captions (viewer)";
  ui.start.hidden = true;
  ui.language.parentElement.hidden = true;
  follow(viewedSession);
}
