// The live swarm page: the pad, the swarm, the top-N, the trend and the connection state.
// Built on the same client module other sites embed (emostream.js).

import { connect, history, polls, send } from "./emostream.js";
import { compactNumber } from "./chart.js";
import { PollCard } from "./poll.js";
import { Swarm } from "./swarm.js";
import { Trend } from "./trend.js";

const STATE_TEXT = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  "caught-up": "caught up",
};
const RECEIVED_MAX = 1000;

const app = document.getElementById("app");
const eventId = app.dataset.eventId;
const windowMs = Number(app.dataset.windowMs);
const pad = JSON.parse(app.dataset.pad);
const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");

const stateNode = document.getElementById("state");
const topList = document.getElementById("top");
const totalNode = document.getElementById("total");
const usersNode = document.getElementById("users");
const seqNode = document.getElementById("seq");
const sentNode = document.getElementById("sent");

const swarm = new Swarm(document.getElementById("swarm"), { windowMs, reducedMotion });
const trend = new Trend(document.getElementById("trend"), document.getElementById("legend"), {
  windowMs,
  moodCanvas: document.getElementById("mood"),
});
const pollCard = new PollCard(document.getElementById("poll"), { eventId });
// What the page saw, for people and tests inspecting it: windows, state changes, taps.
const page = {
  eventId,
  received: [],
  states: [],
  polls: [],
  state: "connecting",
  sent: 0,
  failed: 0,
};
window.emostreamPage = page;

function renderTop(window) {
  const leader = window.top.length ? window.top[0].count : 1;
  topList.replaceChildren(
    ...window.top.map((item) => {
      const row = document.createElement("li");
      row.dataset.emoji = item.emoji;
      const symbol = document.createElement("span");
      symbol.className = "symbol";
      symbol.textContent = item.emoji;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.setProperty("--share", String(item.count / leader));
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = item.count.toLocaleString();
      row.append(symbol, bar, count);
      return row;
    }),
  );
  if (!window.top.length) {
    const quiet = document.createElement("li");
    quiet.className = "quiet";
    quiet.textContent = "Quiet right now. Tap below!";
    topList.append(quiet);
  }
  totalNode.textContent = compactNumber(window.total);
  usersNode.textContent = compactNumber(window.unique_users);
  seqNode.textContent = String(window.seq);
}

function record(window) {
  page.received.push({ seq: window.seq, total: window.total, top: window.top, mood: window.mood });
  if (page.received.length > RECEIVED_MAX) page.received.shift();
  if (page.states.length > RECEIVED_MAX) page.states.shift();
}

let backfilled = false;
async function backfill(first) {
  // The stream starts at the latest window; the chart wants the minutes before it too.
  backfilled = true;
  const limit = Math.min(trend.capacity, 1000);
  try {
    const windows = await history(eventId, { after: Math.max(0, first.seq - limit), limit });
    windows.forEach((w) => trend.add(w));
  } catch (error) {
    console.warn("emostream: no trend history", error);
  }
}

const live = connect(eventId, {
  onSwarm(window) {
    record(window);
    renderTop(window);
    swarm.play(window);
    trend.add(window);
    if (!backfilled) backfill(window);
  },
  onRevision(window) {
    trend.add(window);
  },
  onPoll(poll) {
    page.polls.push({ poll_id: poll.poll_id, state: poll.state, version: poll.version });
    if (page.polls.length > RECEIVED_MAX) page.polls.shift();
    pollCard.show(poll);
  },
  onState(state) {
    page.state = state;
    page.states.push(state);
    stateNode.dataset.state = state;
    stateNode.textContent = STATE_TEXT[state] || state;
  },
});
page.connection = live;
page.pollCard = pollCard;

// The newest poll that is not a draft, so a page opened mid-poll shows it at once.
polls(eventId)
  .then((all) => {
    const shown = all.filter((p) => p.state !== "draft");
    if (shown.length) pollCard.show(shown[shown.length - 1]);
  })
  .catch((error) => console.warn("emostream: no polls", error));

function tap(button) {
  page.sent += 1;
  sentNode.textContent = `${page.sent} sent`;
  button.classList.remove("tapped");
  // Reading offsetWidth restarts the CSS pulse on rapid taps.
  void button.offsetWidth;
  button.classList.add("tapped");
  send(eventId, button.dataset.emoji).catch((error) => {
    page.failed += 1;
    sentNode.textContent = `not sent: ${error.message}`;
  });
}

const padNode = document.getElementById("pad");
pad.forEach(({ emoji, label }, index) => {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "emoji";
  button.dataset.emoji = emoji;
  button.setAttribute("aria-label", index < 9 ? `${label} (key ${index + 1})` : label);
  button.textContent = emoji;
  if (index < 9) {
    const key = document.createElement("kbd");
    key.textContent = String(index + 1);
    key.setAttribute("aria-hidden", "true");
    button.append(key);
  }
  button.addEventListener("click", () => tap(button));
  padNode.append(button);
});

// Number keys tap the matching button, so a keyboard user can react without tabbing around.
document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
  const index = Number(event.key) - 1;
  const button = padNode.children[index];
  if (Number.isInteger(index) && index >= 0 && button) tap(button);
});
