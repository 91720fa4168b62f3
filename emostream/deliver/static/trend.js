// The sentiment wave: each emoji's count per window over the last few minutes, and under it
// the mood line: each window's mean sentiment in [-1, 1] (null windows leave a gap).

import { drawLines, PALETTE } from "./chart.js";

const SPAN_MS = 3 * 60 * 1000;
const LINES_MAX = 5;
const MOOD_COLOR = "#80ed99";

export class Trend {
  constructor(canvas, legend, { windowMs, moodCanvas = null }) {
    this.canvas = canvas;
    this.moodCanvas = moodCanvas;
    this.legend = legend;
    this.windowMs = windowMs;
    this.windows = new Map();
    this.colors = new Map();
    this.pending = false;
    new ResizeObserver(() => this.schedule()).observe(canvas);
    if (moodCanvas) new ResizeObserver(() => this.schedule()).observe(moodCanvas);
  }

  /** How many windows to backfill from history for a full chart. */
  get capacity() {
    return Math.ceil(SPAN_MS / this.windowMs) + 1;
  }

  add(window) {
    this.windows.set(window.seq, window);
    const newest = Math.max(...this.windows.keys());
    for (const seq of this.windows.keys()) {
      if (seq <= newest - this.capacity) this.windows.delete(seq);
    }
    this.schedule();
  }

  schedule() {
    // Backfill adds many windows at once: draw once, on the next frame.
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  colorOf(emoji) {
    if (!this.colors.has(emoji)) this.colors.set(emoji, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(emoji);
  }

  draw() {
    const windows = [...this.windows.values()].sort((a, b) => a.seq - b.seq);
    if (!windows.length) return;
    const xMax = windows[windows.length - 1].window_end_ms;
    const xMin = xMax - SPAN_MS;
    const totals = new Map();
    for (const window of windows) {
      for (const item of window.top) totals.set(item.emoji, (totals.get(item.emoji) || 0) + item.count);
    }
    const leaders = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, LINES_MAX);
    const series = leaders.map(([emoji]) => ({
      label: emoji,
      color: this.colorOf(emoji),
      // A window where the emoji fell out of the top counts as 0: the wave dips.
      points: windows.map((w) => [w.window_end_ms, (w.top.find((i) => i.emoji === emoji) || {}).count || 0]),
    }));
    const xTicks = [0, 1, 2, 3].map((minutes) => [xMax - minutes * 60000, minutes ? `-${minutes}m` : "now"]);
    drawLines(this.canvas, { series, xMin, xMax, xTicks, endLabels: true });
    if (this.moodCanvas) this.drawMood(windows, xMin, xMax, xTicks);
    this.canvas.setAttribute(
      "aria-label",
      "Reactions per window, last 3 minutes: " +
        leaders.map(([emoji, total]) => `${emoji} ${total}`).join(", "),
    );
    this.legend.replaceChildren(
      ...series.map((line) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = line.color;
        item.append(swatch, line.label);
        return item;
      }),
    );
  }

  drawMood(windows, xMin, xMax, xTicks) {
    const points = windows
      .filter((w) => w.mood !== null && w.mood !== undefined)
      .map((w) => [w.window_end_ms, w.mood]);
    drawLines(this.moodCanvas, {
      series: [{ label: "mood", color: MOOD_COLOR, points }],
      xMin,
      xMax,
      xTicks,
      yRange: [-1, 1],
    });
    const latest = points.length ? points[points.length - 1][1] : null;
    this.moodCanvas.dataset.latest = latest === null ? "" : String(latest);
    this.moodCanvas.setAttribute(
      "aria-label",
      latest === null ? "Mood: no reactions yet" : `Mood now ${latest} on a scale from -1 to 1`,
    );
  }
}
