// The operator dashboard: polls GET /v1/stats once a second and draws what it says. When the
// node has an admin token configured, the stats answer 401 until the operator types the token:
// it is kept in sessionStorage (this tab only) and sent as a Bearer token, never in the page.

import { compactNumber, drawLines, PALETTE } from "./chart.js";
import { element } from "./dom.js";

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

// A table column: its heading, its cell's text for a stats row (and the whole stats, for the
// time they were taken), and the class that marks a cell as good or bad news.
function column(title, text, mark = () => "") {
  return { title, text, mark };
}

// A field shown as it is.
function field(title, key) {
  return column(title, (row) => String(row[key] ?? ""));
}

// A count, compact; with ``alarming``, marked bad when above zero.
function count(title, key, alarming = false) {
  const mark = (row) => (alarming && row[key] ? "bad" : "");
  return column(title, (row) => compactNumber(row[key]), mark);
}

// Each table of the page, by its element id: its card's heading (and whether the card spans
// the page, and the id of a note under the table), the stats rows it shows, its columns, and
// what it says when there are none.
const TABLES = {
  shards: {
    heading: ["Raw streams · consumer group ", element("code", "", "aggregators")],
    wide: true,
    rows: (stats) => stats.shards,
    columns: [
      field("shard", "shard"),
      count("length", "raw_length"),
      column(
        "lag",
        (s) => (s.lag === null ? "–" : compactNumber(s.lag)),
        (s) => (s.lag ? "bad" : ""),
      ),
      count("pending", "pending"),
      column("oldest pending idle", (s) => duration(s.oldest_pending_idle_ms)),
      field("consumers", "consumers"),
      count("dead letters", "dead_letters", true),
    ],
    empty: "no shards",
  },
  workers: {
    heading: ["Workers"],
    wide: true, // nine columns: half the page cut the last off
    rows: (stats) => stats.workers,
    columns: [
      field("worker", "worker"),
      column("reactions/s", (w) => rate(w.reactions_per_s)),
      count("reactions", "reactions"),
      count("batches", "batches"),
      count("late", "late"),
      count("lost", "lost", true),
      count("failed", "failed", true),
      count("dead", "dead"),
      column("heartbeat", (w) => `${duration(w.heartbeat_age_ms)} ago`),
    ],
    empty: "no live worker: windows are not being counted",
  },
  producers: {
    heading: ["Ingest producers"],
    rows: (stats) => stats.producers,
    columns: [
      field("producer", "producer"),
      field("shard", "shard"),
      column("watermark age", (p) => duration(p.watermark_age_ms)),
      column("state", (p) => (p.live ? "live" : "silent"), (p) => (p.live ? "ok" : "bad")),
    ],
    empty: "no ingest producer has flushed yet",
  },
  nodes: {
    heading: ["Delivery nodes"],
    note: "nodes-scope",
    rows: (stats) => stats.delivery.nodes,
    columns: [
      field("node", "node"),
      field("cluster", "cluster"),
      field("connections", "connections"),
      field("url", "url"),
    ],
    empty: "no delivery node is registered",
  },
  events: {
    heading: ["Active events"],
    rows: (stats) => stats.events,
    columns: [
      field("event", "event_id"),
      field("shard", "shard"),
      field("last seq", "seq"),
      column("last reaction window", (e, stats) => {
        return `${duration(stats.at_ms - e.last_active_window_ms)} ago`;
      }),
    ],
    empty: "no active event",
  },
};

function tableRow(cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

// Each table's card, once, with its heading row: the columns above say what it holds.
for (const [id, { heading, wide, note, columns }] of Object.entries(TABLES)) {
  const card = element("section", wide ? "card wide" : "card");
  const cardHeading = element("h2");
  cardHeading.append(...heading);
  const table = element("table");
  table.id = id;
  table.createTHead().append(tableRow(columns.map(({ title }) => element("th", "", title))));
  table.createTBody();
  card.append(cardHeading, table);
  if (note) card.append(Object.assign(element("p", "note"), { id: note }));
  $("tables").append(card);
}

function fillTable(id, stats) {
  const { rows, columns, empty } = TABLES[id];
  const found = rows(stats);
  if (!found.length) {
    const td = element("td", "empty", empty);
    td.colSpan = columns.length;
    $(id).tBodies[0].replaceChildren(tableRow([td]));
    return;
  }
  const cells = (row) =>
    columns.map(({ text, mark }) => element("td", mark(row), text(row, stats)));
  $(id).tBodies[0].replaceChildren(...found.map((row) => tableRow(cells(row))));
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

  $("nodes-scope").textContent = `answered by ${stats.delivery.this_node.node}`;
  for (const id of Object.keys(TABLES)) fillTable(id, stats);
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
