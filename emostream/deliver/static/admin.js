// The dashboard's admin console: create a poll, then open, lock, reveal and close it.
//
// The admin token is the one the dashboard asks for (dashboard.js): typed in by the operator
// and kept in the tab's sessionStorage, never in the page source or a URL. Every call sends
// it as Authorization: Bearer; one typed in the form but not yet submitted is used too.

const $ = (id) => document.getElementById(id);
const BASE = new URL("..", import.meta.url).href;
const TOKEN_KEY = "emostream.adminToken"; // dashboard.js keeps the typed token under it

function pollUrl(tail = "") {
  const event = encodeURIComponent($("admin-event").value.trim());
  const poll = encodeURIComponent($("admin-poll").value.trim());
  return new URL(`v1/events/${event}/polls/${poll}${tail}`, BASE).href;
}

function definition() {
  const body = {
    question: $("admin-question").value.trim(),
    options: $("admin-options")
      .value.split("\n")
      .map((line) => line.trim())
      .filter(Boolean),
    kind: $("admin-kind").value,
    results: $("admin-results").value,
    votes_per_user: Number($("admin-votes-per-user").value || 1),
    changeable: $("admin-changeable").checked,
  };
  for (const [field, id] of [
    ["quota", "admin-quota"],
    ["duration_s", "admin-duration"],
  ]) {
    if ($(id).value) body[field] = Number($(id).value);
  }
  if ($("admin-answer").value.trim()) body.answer = $("admin-answer").value.trim();
  return body;
}

async function act(action) {
  const token = sessionStorage.getItem(TOKEN_KEY) || $("admin-token").value.trim();
  const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
  let request;
  if (action === "create") {
    request = { method: "PUT", body: JSON.stringify(definition()) };
  } else {
    const answer = $("admin-answer").value.trim();
    const body = action === "reveal" && answer ? { answer } : {};
    request = { method: "POST", body: JSON.stringify(body) };
  }
  $("admin-status").textContent = `${action}…`;
  try {
    const response = await fetch(pollUrl(action === "create" ? "" : `/${action}`), {
      ...request,
      headers,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = body.error ? `${body.error.code}: ${body.error.message}` : "";
      throw new Error(`HTTP ${response.status} ${message}`);
    }
    $("admin-status").textContent = `${action}: ${body.state}`;
    $("admin-status").dataset.state = body.state;
    $("admin-poll-view").textContent = JSON.stringify(body, null, 2);
  } catch (error) {
    $("admin-status").textContent = `${action} failed: ${error.message}`;
    $("admin-status").dataset.state = "error";
  }
}

for (const button of document.querySelectorAll(".admin-actions button")) {
  button.addEventListener("click", () => act(button.dataset.action));
}
