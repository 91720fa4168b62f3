// The swarm: icons rising over the stage, `swarm` icons per top emoji per window.
//
// A fixed pool of DOM nodes is created once and recycled, so a busy event never piles up
// nodes; when every node is in flight, further icons of that window are skipped. Icons are
// spread over the window so the stage flows instead of pulsing, and move with the Web
// Animations API on transform and opacity only, which the compositor runs at frame rate.

const POOL_SIZE = 160;
const REDUCED_POOL_SIZE = 24;

export class Swarm {
  constructor(stage, { windowMs, reducedMotion }) {
    this.stage = stage;
    this.windowMs = windowMs;
    this.reducedMotion = reducedMotion;
    this.free = [];
    this.flights = 0;
    const size = reducedMotion.matches ? REDUCED_POOL_SIZE : POOL_SIZE;
    for (let i = 0; i < size; i += 1) {
      const node = document.createElement("span");
      node.className = "icon";
      node.setAttribute("aria-hidden", "true");
      stage.appendChild(node);
      this.free.push(node);
    }
  }

  /** Launch the icons of one window: each top item's `swarm`, scaled down if the pool is short. */
  play(window) {
    if (document.hidden) return;
    const wanted = window.top.reduce((sum, item) => sum + item.swarm, 0);
    if (!wanted) return;
    const share = Math.min(1, this.free.length / wanted);
    for (const item of window.top) {
      // At least one icon per emoji that made the top, however crowded the stage.
      const count = Math.max(item.swarm ? 1 : 0, Math.floor(item.swarm * share));
      for (let i = 0; i < count && this.free.length; i += 1) this.launch(item.emoji);
    }
  }

  launch(emoji) {
    const node = this.free.pop();
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    const delay = Math.random() * this.windowMs;
    const x = Math.random() * Math.max(0, width - 48);
    node.textContent = emoji;
    node.dataset.emoji = emoji;
    // Names this flight of a recycled node, for anyone watching the stage (the tests do).
    node.dataset.flight = String((this.flights += 1));
    node.classList.add("flying");
    const animation = this.reducedMotion.matches
      ? this.fade(node, x, Math.random() * Math.max(0, height - 48), delay)
      : this.rise(node, x, height, delay);
    animation.onfinish = animation.oncancel = () => {
      node.classList.remove("flying");
      this.free.push(node);
    };
  }

  rise(node, x, height, delay) {
    const drift = (Math.random() - 0.5) * 120;
    const size = 0.8 + Math.random() * 0.7;
    const at = (t, scale, opacity) => ({
      transform: `translate(${x + drift * t}px, ${height - t * height * 0.92}px) scale(${scale})`,
      opacity,
    });
    return node.animate(
      [at(0, size * 0.6, 0), at(0.12, size, 1), at(0.7, size, 1), at(1, size * 1.15, 0)],
      // Near-constant speed: an easing that slows at the end parks faded icons at the top.
      { duration: 2600 + Math.random() * 1600, delay, easing: "linear", fill: "backwards" },
    );
  }

  // Reduced motion: icons appear and fade where they are; nothing travels across the screen.
  fade(node, x, y, delay) {
    const place = `translate(${x}px, ${y}px)`;
    return node.animate(
      [
        { transform: place, opacity: 0 },
        { transform: place, opacity: 1, offset: 0.2 },
        { transform: place, opacity: 0 },
      ],
      { duration: 2400, delay, fill: "backwards" },
    );
  }
}
