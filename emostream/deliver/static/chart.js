// Line charts on a canvas, shared by the swarm page's trend and the dashboard's sparklines.

const EMOJI_FONT = '"Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji", sans-serif';

export const PALETTE = ["#ff7a45", "#ffd166", "#4cc9f0", "#f72585", "#80ed99", "#b197fc"];

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

export function compactNumber(value) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1e6) return (value / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
  if (Math.abs(value) >= 1e4) return (value / 1e3).toFixed(0) + "k";
  if (Math.abs(value) >= 1e3) return (value / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
  return String(Math.round(value * 10) / 10);
}

/** Match the canvas's pixels to its CSS size (sharp on high-DPI screens). */
function fit(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { context, width: canvas.clientWidth, height: canvas.clientHeight };
}

/**
 * series: [{ label, color, points: [[x, y], ...] }], x ascending.
 * xMin/xMax bound the x axis; xTicks: [[x, text], ...]; endLabels draws each label at its
 * line's end (emojis on the trend chart). yRange: [low, high] fixes the y axis (the mood's
 * [-1, 1]); without it the axis runs from 0 to a round number above the highest point.
 */
export function drawLines(canvas, { series, xMin, xMax, xTicks = [], endLabels = false, yRange }) {
  const { context: c, width, height } = fit(canvas);
  const pad = { left: 40, right: endLabels ? 34 : 10, top: 10, bottom: xTicks.length ? 20 : 6 };
  const plotW = Math.max(1, width - pad.left - pad.right);
  const plotH = Math.max(1, height - pad.top - pad.bottom);
  let yMin = 0;
  let yMax = 0;
  if (yRange) {
    [yMin, yMax] = yRange;
  } else {
    for (const line of series) for (const [, y] of line.points) yMax = Math.max(yMax, y);
    yMax = niceCeiling(yMax);
  }
  const span = Math.max(1, xMax - xMin);
  const px = (x) => pad.left + ((x - xMin) / span) * plotW;
  const py = (y) => pad.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  c.clearRect(0, 0, width, height);
  c.font = "11px system-ui, sans-serif";
  c.fillStyle = "rgba(255,255,255,0.55)";
  c.strokeStyle = "rgba(255,255,255,0.08)";
  c.lineWidth = 1;
  c.textBaseline = "middle";
  c.textAlign = "right";
  for (const fraction of [0, 0.5, 1]) {
    const value = yMin + (yMax - yMin) * fraction;
    const y = py(value);
    c.beginPath();
    c.moveTo(pad.left, Math.round(y) + 0.5);
    c.lineTo(pad.left + plotW, Math.round(y) + 0.5);
    c.stroke();
    c.fillText(compactNumber(value), pad.left - 6, y);
  }
  c.textAlign = "center";
  c.textBaseline = "alphabetic";
  for (const [x, text] of xTicks) c.fillText(text, px(x), height - 4);

  c.lineJoin = "round";
  c.lineCap = "round";
  const ends = [];
  for (const line of series) {
    const points = line.points.filter(([x]) => x >= xMin && x <= xMax);
    if (!points.length) continue;
    c.strokeStyle = line.color;
    c.lineWidth = 2;
    c.beginPath();
    points.forEach(([x, y], i) => (i ? c.lineTo(px(x), py(y)) : c.moveTo(px(x), py(y))));
    c.stroke();
    const [x, y] = points[points.length - 1];
    ends.push({ label: line.label, x: px(x), y: py(y) });
  }
  if (endLabels) drawEndLabels(c, ends, pad.top, pad.top + plotH);
}

// Lines often end close together: push their labels apart so each stays readable.
function drawEndLabels(c, ends, top, bottom) {
  const gap = 17;
  ends.sort((a, b) => a.y - b.y);
  for (let i = 1; i < ends.length; i += 1) ends[i].y = Math.max(ends[i].y, ends[i - 1].y + gap);
  const overflow = ends.length ? ends[ends.length - 1].y - bottom : 0;
  if (overflow > 0) ends.forEach((end) => (end.y = Math.max(top, end.y - overflow)));
  c.font = `15px ${EMOJI_FONT}`;
  c.textAlign = "left";
  c.textBaseline = "middle";
  for (const end of ends) c.fillText(end.label, end.x + 6, end.y);
}
