// The event page's poll card: the open poll with a button per option, live bars (or
// "results at reveal"), this viewer's recorded vote, a countdown when the poll has a
// duration, and for trivia the answer and the leaderboard once revealed.

import { element } from "./dom.js";
import { myRank, myVote, vote } from "./emostream.js";

const STATE_TEXT = {
  open: "open",
  locked: "locked: counting the last votes",
  revealed: "results",
  closed: "closed",
};
const COUNTDOWN_MS = 250;

export class PollCard {
  constructor(root, { eventId }) {
    this.root = root;
    this.eventId = eventId;
    this.poll = null;
    this.mine = null;
    this.rank = null;
    this.timer = null;
    this.question = root.querySelector("#poll-question");
    this.status = root.querySelector("#poll-status");
    this.options = root.querySelector("#poll-options");
    this.mineNode = root.querySelector("#poll-mine");
    this.board = root.querySelector("#poll-board");
    this.leaders = root.querySelector("#poll-leaders");
  }

  /** A poll object from the API or an SSE `poll` frame; older versions are ignored. */
  show(poll) {
    const current = this.poll;
    if (current && current.poll_id === poll.poll_id && poll.version < current.version) return;
    if (poll.state === "draft") return;
    const changed = !current || current.poll_id !== poll.poll_id;
    const stateChanged = !current || current.state !== poll.state;
    this.poll = poll;
    if (changed) {
      this.mine = null;
      this.rank = null;
      this.refreshMine();
    }
    if (stateChanged && poll.state === "revealed") this.refreshRank();
    this.render();
  }

  async refreshMine() {
    const poll = this.poll;
    try {
      this.mine = await myVote(this.eventId, poll.poll_id);
    } catch (error) {
      console.warn("emostream: no ballot", error);
    }
    this.render();
  }

  async refreshRank() {
    this.rank = await myRank(this.eventId).catch(() => null);
    this.render();
  }

  async choose(option) {
    const poll = this.poll;
    this.mineNode.textContent = `sending ${option}…`;
    try {
      await vote(this.eventId, poll.poll_id, option);
      // Recorded once the next flush is counted: ask again shortly.
      setTimeout(() => this.refreshMine(), 700);
      setTimeout(() => this.refreshMine(), 2000);
    } catch (error) {
      this.mineNode.textContent = `not counted: ${error.message}`;
    }
  }

  render() {
    const poll = this.poll;
    if (!poll) return;
    this.root.hidden = false;
    this.root.dataset.state = poll.state;
    this.root.dataset.pollId = poll.poll_id;
    this.question.textContent = poll.question;
    const hidden = poll.total === undefined;
    const leader = Math.max(1, ...poll.options.map((o) => o.votes || 0));
    const open = poll.state === "open";
    this.options.replaceChildren(
      ...poll.options.map((item) => {
        const row = element("li", "poll-option");
        row.dataset.option = item.option;
        const button = element("button", "poll-choice", item.option);
        button.type = "button";
        button.disabled = !open;
        if (this.mine && this.mine.includes(item.option)) row.classList.add("mine");
        if (poll.answer !== undefined && item.option === poll.answer) row.classList.add("answer");
        button.addEventListener("click", () => this.choose(item.option));
        const bar = element("span", "bar");
        bar.style.setProperty("--share", hidden ? "0" : String((item.votes || 0) / leader));
        const votes = element("span", "votes", hidden ? "" : String(item.votes));
        row.append(button, bar, votes);
        return row;
      }),
    );
    const parts = [STATE_TEXT[poll.state] || poll.state];
    if (hidden) parts.push("results at reveal");
    else parts.push(`${poll.total} votes`);
    if (poll.answer !== undefined && poll.state !== "open") parts.push(`answer: ${poll.answer}`);
    this.status.textContent = parts.join(" · ");
    this.mineNode.textContent = this.mine ? `your vote: ${this.mine.join(", ")}` : "";
    this.renderBoard();
    this.countdown();
  }

  renderBoard() {
    const poll = this.poll;
    const board = poll.leaderboard;
    this.board.hidden = !board;
    if (!board) return;
    this.leaders.replaceChildren(
      ...board.map((entry) => {
        const row = element("li", "leader");
        row.dataset.user = entry.user_id;
        row.append(
          element("span", "rank", `#${entry.rank}`),
          element("span", "who", entry.user_id),
          element("span", "points", String(entry.points)),
        );
        return row;
      }),
    );
    const own = this.root.querySelector("#poll-rank");
    own.textContent = this.rank ? `you: #${this.rank.rank} with ${this.rank.points} points` : "";
  }

  countdown() {
    clearInterval(this.timer);
    const poll = this.poll;
    if (poll.state !== "open" || poll.locks_at_ms === undefined) return;
    const tick = () => {
      const left = Math.max(0, Math.ceil((poll.locks_at_ms - Date.now()) / 1000));
      this.status.textContent = `open · ${left} s left`;
      if (!left) clearInterval(this.timer);
    };
    tick();
    this.timer = setInterval(tick, COUNTDOWN_MS);
  }
}
