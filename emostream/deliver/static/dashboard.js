// The operator dashboard: polls GET /v1/stats once a second and draws what it says. When the
// node has an admin token configured, the stats answer 401 until the operator types the token:
// it is kept in sessionStorage (this tab only) and sent as a Bearer token, never in the page.

import { compactNumber, drawLines, PALETTE } from "./chart.js";

const POLL_MS = 1000;
const HISTORY_MS = 2 * 60 * 1000;
const STATS_URL = new URL("../v1/stats", import.meta.url).href;
const TOKEN_KEY = "emostream.adminToken";

const history = { reactions: [], windows: [] };
const $ = (id) => document.getElementById(id);

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function rate(value) {
  return value === null || value === undefined ? "…" : compactNumber(value);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillTable(body, rows, columns, emptyText) {
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = columns;
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }),
  );
}

function remember(series, at, value) {
  if (value !== null && value !== undefined) series.push([at, value]);
  while (series.length && series[0][0] < at - HISTORY_MS) series.shift();
}

function spark(canvas, series, color, at) {
  drawLines(canvas, {
    series: [{ label: "", color, points: series }],
    xMin: at - HISTORY_MS,
    xMax: at,
  });
}

function render(stats) {
  const at = stats.at_ms;
  remember(history.reactions, at, stats.reactions_per_s);
  remember(history.windows, at, stats.windows_per_s);
  $("reactions-rate").textContent = rate(stats.reactions_per_s);
  $("windows-rate").textContent = rate(stats.windows_per_s);
  spark($("reactions-chart"), history.reactions, PALETTE[0], at);
  spark($("windows-chart"), history.windows, PALETTE[2], at);

  const liveProducers = stats.producers.filter((p) => p.live);
  const connections = stats.delivery.nodes.reduce((sum, node) => sum + node.connections, 0);
  $("workers-count").textContent = String(stats.workers.length);
  $("producers-count").textContent = String(new Set(liveProducers.map((p) => p.producer)).size);
  $("connections").textContent = String(connections);
  $("late").textContent = compactNumber(stats.late);
  $("lost").textContent = compactNumber(stats.lost);
  $("lost").className = stats.lost ? "big bad" : "big";
  $("dead").textContent = compactNumber(stats.dead_lettered);
  $("dead").className = stats.dead_lettered ? "big bad" : "big";

  fillTable(
    $("shards"),
    stats.shards.map((s) => [
      cell(String(s.shard)),
      cell(compactNumber(s.raw_length)),
      cell(s.lag === null ? "–" : compactNumber(s.lag), s.lag ? "bad" : ""),
      cell(compactNumber(s.pending)),
      cell(duration(s.oldest_pending_idle_ms)),
      cell(String(s.consumers)),
      cell(compactNumber(s.dead_letters), s.dead_letters ? "bad" : ""),
    ]),
    7,
    "no shards",
  );
  fillTable(
    $("workers"),
    stats.workers.map((w) => [
      cell(w.worker),
      cell(rate(w.reactions_per_s)),
      cell(compactNumber(w.reactions)),
      cell(compactNumber(w.batches)),
      cell(compactNumber(w.late)),
      cell(compactNumber(w.lost), w.lost ? "bad" : ""),
      cell(compactNumber(w.failed), w.failed ? "bad" : ""),
      cell(compactNumber(w.dead)),
      cell(`${duration(w.heartbeat_age_ms)} ago`),
    ]),
    9,
    "no live worker: windows are not being counted",
  );
  fillTable(
    $("producers"),
    stats.producers.map((p) => [
      cell(p.producer),
      cell(String(p.shard)),
      cell(duration(p.watermark_age_ms)),
      cell(p.live ? "live" : "silent", p.live ? "ok" : "bad"),
    ]),
    4,
    "no ingest producer has flushed yet",
  );
  fillTable(
    $("nodes"),
    stats.delivery.nodes.map((n) => [
      cell(n.node),
      cell(n.cluster),
      cell(String(n.connections)),
      cell(n.url),
    ]),
    4,
    "no delivery node is registered",
  );
  $("nodes-scope").textContent = `answered by ${stats.delivery.this_node.node}`;
  fillTable(
    $("events"),
    stats.events.map((e) => [
      cell(e.event_id),
      cell(String(e.shard)),
      cell(String(e.seq)),
      cell(`${duration(at - e.last_active_window_ms)} ago`),
    ]),
    4,
    "no active event",
  );
}

function setState(state, text) {
  $("state").dataset.state = state;
  $("state").textContent = text;
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken(rejected) {
  $("token-note").textContent = rejected
    ? "That token was refused; type the node's admin token."
    : "Kept in this browser tab only (sessionStorage), sent as Authorization: Bearer.";
  $("token-form").hidden = false;
  $("admin-token").focus();
  setState("locked", "admin token needed");
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("admin-token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("admin-token").value = "";
  $("token-form").hidden = true;
  poll();
});

async function poll() {
  try {
    const response = await fetch(STATS_URL, { cache: "no-store", headers: authorization() });
    if (response.status === 401) {
      // Wait for the operator instead of polling a locked endpoint.
      const rejected = sessionStorage.getItem(TOKEN_KEY) !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(rejected);
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    setState("live", "live");
  } catch (error) {
    setState("reconnecting", `stats unavailable (${error.message})`);
  }
  // Polling after each answer, never on a fixed clock, so a slow Redis is not piled on.
  setTimeout(poll, POLL_MS);
}

poll();
