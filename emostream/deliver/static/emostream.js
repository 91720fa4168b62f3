// emostream client: watch an event's swarm and send reactions. An ES module, no dependencies.
//
//   import { connect, send } from "https://your-emostream/static/emostream.js";
//   const live = connect("live", { onSwarm: (w) => draw(w.top), onState: (s) => show(s) });
//   send("live", "🔥");
//
// The server is the origin this module was loaded from, unless `baseUrl` says otherwise.
//
// Delivery guarantees the page relies on: windows reach onSwarm once each, in seq order,
// with no gaps. EventSource resends Last-Event-ID on its own reconnects; if the browser
// gives up (readyState CLOSED) we reconnect ourselves with ?last_event_id=. A seq gap that
// still shows up (the server's replay is bounded) is filled from the windows history first.

const DEFAULT_BASE = new URL("..", import.meta.url).href;
const TAP_BATCH_MS = 250;
// The contract's maximum reactions per POST.
const POST_MAX = 500;
const QUEUE_MAX = 5000;
const RECONNECT_MAX_MS = 15000;
const USER_KEY = "emostream.user_id";

function endpoint(baseUrl, path) {
  return new URL(path, baseUrl || DEFAULT_BASE).href;
}

function eventPath(eventId) {
  return `v1/events/${encodeURIComponent(eventId)}`;
}

let memoryUserId = null;

/** A random id for this browser, kept in localStorage so a reload is the same viewer. */
export function userId() {
  try {
    let id = localStorage.getItem(USER_KEY);
    if (!id) {
      id = randomId();
      localStorage.setItem(USER_KEY, id);
    }
    return id;
  } catch {
    // Storage may be disabled (privacy modes, sandboxed iframes): one id per page load.
    memoryUserId = memoryUserId || randomId();
    return memoryUserId;
  }
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Windows after `after` (oldest first), at most `limit` (1..1000). */
export async function history(eventId, { after = 0, limit = 100, baseUrl } = {}) {
  const url = endpoint(baseUrl, `${eventPath(eventId)}/windows?after=${after}&limit=${limit}`);
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  return response.json();
}

/**
 * Follow an event's swarm. Callbacks:
 *   onSwarm(window)    every window once, in seq order (the contract's window object)
 *   onRevision(window) a closed window re-published with late reactions (same seq)
 *   onPoll(poll)       a poll of the event changed, or its live tally at a window
 *   onState(state)     "connecting" | "live" | "reconnecting" | "caught-up"
 * Returns { close(), state, lastSeq, filled }: `filled` counts windows fetched from
 * history because the stream skipped them.
 */
export function connect(eventId, options = {}) {
  const { onSwarm = () => {}, onRevision = () => {}, onPoll = () => {}, onState = () => {} } =
    options;
  const { baseUrl } = options;
  const streamUrl = endpoint(baseUrl, `${eventPath(eventId)}/stream`);
  const handle = { state: "connecting", lastSeq: null, filled: 0, close };
  let source = null;
  let closed = false;
  let awaitingCatchUp = false;
  let retryMs = 1000;
  let retryTimer = null;
  // Windows are handled one at a time so a history fetch cannot reorder them.
  let chain = Promise.resolve();
  let queued = 0;

  function setState(state) {
    if (handle.state === state) return;
    handle.state = state;
    onState(state);
  }

  async function fillGap(upTo) {
    const missing = upTo - handle.lastSeq - 1;
    const windows = await history(eventId, {
      after: handle.lastSeq,
      limit: Math.min(missing, 1000),
      baseUrl,
    });
    for (const window of windows) {
      if (window.seq > handle.lastSeq && window.seq < upTo) deliver(window, true);
    }
  }

  function deliver(window, fromHistory = false) {
    handle.lastSeq = window.seq;
    if (fromHistory) handle.filled += 1;
    onSwarm(window);
  }

  async function handleWindow(window) {
    if (window.revision) {
      onRevision(window);
      return;
    }
    if (handle.lastSeq !== null && window.seq <= handle.lastSeq) return;
    if (handle.lastSeq !== null && window.seq > handle.lastSeq + 1) {
      try {
        await fillGap(window.seq);
      } catch (error) {
        console.warn("emostream: could not fill a seq gap", error);
      }
    }
    deliver(window);
  }

  function receive(event) {
    let window;
    try {
      window = JSON.parse(event.data);
    } catch {
      return;
    }
    queued += 1;
    chain = chain
      .then(() => handleWindow(window))
      .catch((error) => console.error("emostream: onSwarm failed", error))
      .finally(() => {
        queued -= 1;
        // A replay arrives as one burst: caught up once it has all been handled.
        if (awaitingCatchUp && queued === 0 && handle.state === "live") {
          awaitingCatchUp = false;
          setState("caught-up");
        }
      });
  }

  function open() {
    let url = streamUrl;
    if (handle.lastSeq !== null) url += `?last_event_id=${handle.lastSeq}`;
    source = new EventSource(url);
    source.addEventListener("open", () => {
      retryMs = 1000;
      setState("live");
    });
    source.addEventListener("swarm", receive);
    // Poll frames carry no id: they never move Last-Event-ID, and are not replayed.
    source.addEventListener("poll", (event) => {
      try {
        onPoll(JSON.parse(event.data));
      } catch (error) {
        console.error("emostream: onPoll failed", error);
      }
    });
    // The server no longer has the seq we resumed from (its Redis lost the history and
    // numbers windows from 1 again): what follows is new, however low its seq.
    source.addEventListener("reset", () => {
      chain = chain.then(() => {
        handle.lastSeq = null;
      });
    });
    source.addEventListener("error", () => {
      if (closed) return;
      awaitingCatchUp = true;
      setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error answer): retry ourselves, backing off.
        source = null;
        retryTimer = setTimeout(open, retryMs);
        retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
      }
    });
  }

  function close() {
    closed = true;
    clearTimeout(retryTimer);
    if (source) source.close();
  }

  onState(handle.state);
  open();
  return handle;
}

// One batcher per (server, event): taps within TAP_BATCH_MS go out as one POST.
const batchers = new Map();

/**
 * Send one reaction. Taps are batched: every TAP_BATCH_MS the queued ones go out in one
 * POST of a JSON array. Resolves with the server's accepted count for that POST.
 */
export function send(eventId, emoji, { baseUrl, user = userId() } = {}) {
  const key = `${baseUrl || DEFAULT_BASE} ${eventId}`;
  let batcher = batchers.get(key);
  if (!batcher) {
    batcher = new Batcher(endpoint(baseUrl, `${eventPath(eventId)}/reactions`));
    batchers.set(key, batcher);
  }
  return batcher.add({ user_id: user, emoji, ts: Date.now() / 1000 });
}

class Batcher {
  constructor(url) {
    this.url = url;
    this.queue = [];
    this.timer = null;
  }

  add(reaction) {
    return new Promise((resolve, reject) => {
      // A tap-happy page with no network must not grow without bound: drop the oldest.
      if (this.queue.length >= QUEUE_MAX) this.queue.shift().reject(new Error("dropped"));
      this.queue.push({ reaction, resolve, reject });
      if (this.timer === null) this.timer = setTimeout(() => this.flush(), TAP_BATCH_MS);
    });
  }

  async flush() {
    this.timer = null;
    const taps = this.queue.splice(0, POST_MAX);
    if (this.queue.length) this.timer = setTimeout(() => this.flush(), TAP_BATCH_MS);
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(taps.map((tap) => tap.reaction)),
        keepalive: true,
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
        error.status = response.status;
        throw error;
      }
      taps.forEach((tap) => tap.resolve(body.accepted));
    } catch (error) {
      taps.forEach((tap) => tap.reject(error));
    }
  }
}

/** The polls of an event, oldest first. */
export async function polls(eventId, { baseUrl } = {}) {
  const response = await fetch(endpoint(baseUrl, `${eventPath(eventId)}/polls`), {
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`polls: HTTP ${response.status}`);
  return response.json();
}

/** Vote for `option`; resolves with the accepted count, rejects with the server's message. */
export async function vote(eventId, pollId, option, { baseUrl, user = userId() } = {}) {
  const path = `${eventPath(eventId)}/polls/${encodeURIComponent(pollId)}/votes`;
  const response = await fetch(endpoint(baseUrl, path), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: user, option }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body.accepted;
}

/** What was recorded for this user in a poll: its options, or null when nothing yet. */
export async function myVote(eventId, pollId, { baseUrl, user = userId() } = {}) {
  const path = `${eventPath(eventId)}/polls/${encodeURIComponent(pollId)}/votes/${user}`;
  const response = await fetch(endpoint(baseUrl, path), { cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`vote: HTTP ${response.status}`);
  return (await response.json()).options;
}

/** This user's trivia standing in the event, or null without points. */
export async function myRank(eventId, { baseUrl, user = userId() } = {}) {
  const path = `${eventPath(eventId)}/leaderboard/${user}`;
  const response = await fetch(endpoint(baseUrl, path), { cache: "no-store" });
  return response.ok ? response.json() : null;
}
