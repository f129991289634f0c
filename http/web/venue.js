// The venue map: a group's layout (GET /v1/groups/{id}/layout) drawn as
// SVG — the stage, sections of curved rows, seats in their category's
// colour — with each seat's status live, zoom and pan, and the keyboard:
// the arrows move along a row and to the nearest seat of the next, Enter
// or Space selects. Built once per group; a refresh only changes classes
// and labels, so a stadium's 20,000 seats stay smooth.
const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// createVenue draws into root. onToggle(unit) selects or unselects a
// seat; onFocus(unit) tells where the keyboard is.
export function createVenue(root, { onToggle, onFocus }) {
  const seats = new Map(); // unit → { el, name, x, y }
  let rows = []; // the keyboard's rows: unit ids by x, a row's sections joined
  let box = null; // the whole venue's viewBox
  let view = null; // the current one (zoom, pan)
  let svg = null;
  let cursor = null;

  function setView(v) {
    view = v;
    svg.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
  }

  function build(layout) {
    seats.clear();
    const cats = new Map((layout.categories || []).map((c) => [c.id, c]));
    svg = el('svg', { class: 'venue', role: 'group', 'aria-label': 'Venue map: the stage, then rows of seats' });
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    const grow = (x, y) => { minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x); maxY = Math.max(maxY, y); };
    if (layout.stage) {
      const s = layout.stage;
      const g = el('g', { class: 'stage', 'aria-hidden': 'true' });
      g.append(el('rect', { x: s.x, y: s.y, width: s.w, height: s.h, rx: 6 }));
      const t = el('text', { x: s.x + s.w / 2, y: s.y + s.h / 2, 'text-anchor': 'middle', 'dominant-baseline': 'central' });
      t.textContent = 'STAGE';
      g.append(t);
      svg.append(g);
      grow(s.x, s.y); grow(s.x + s.w, s.y + s.h);
    }
    const byRow = new Map();
    for (const sec of layout.sections) {
      const g = el('g', { class: 'section' });
      for (const row of sec.rows) {
        const key = row.name || `${sec.id}-${byRow.size}`;
        if (!byRow.has(key)) byRow.set(key, []);
        for (const seat of row.seats) {
          const name = `${sec.name || sec.id}, row ${row.name}, seat ${seat.number || seat.unit}`;
          // No status until update() has the seats' statuses: a seat
          // shown free before that could be taken, and the tab order
          // (one free seat at tabindex 0) is set there too.
          const c = el('circle', { cx: seat.x, cy: seat.y, r: 8, class: `seat cat-${seat.category || 'none'}`, role: 'button', tabindex: -1, 'aria-disabled': 'true' });
          c.dataset.unit = seat.unit;
          // Through the CSSOM: the page's Content-Security-Policy allows
          // no inline style.
          const cat = cats.get(seat.category);
          if (cat) c.style.setProperty('--cat', cat.color);
          const tip = el('title');
          tip.textContent = name;
          c.append(tip);
          g.append(c);
          seats.set(seat.unit, { el: c, name, x: seat.x, y: seat.y, tip });
          byRow.get(key).push(seat.unit);
          grow(seat.x - 10, seat.y - 10); grow(seat.x + 10, seat.y + 10);
        }
      }
      svg.append(g);
    }
    rows = [...byRow.values()].map((r) => r.sort((a, b) => seats.get(a).x - seats.get(b).x));
    box = { x: minX - 10, y: minY - 10, w: maxX - minX + 20, h: maxY - minY + 20 };
    setView(box);
    root.replaceChildren(svg);
    wire();
  }

  // update sets every seat's status: statusOf(unit) is free, held,
  // confirmed or mine; selected a Set of units.
  function update(statusOf, selected) {
    for (const [unit, s] of seats) {
      const st = statusOf(unit) || 'free';
      const sel = selected.has(unit);
      const cls = `seat ${st}${sel ? ' selected' : ''} ${[...s.el.classList].find((c) => c.startsWith('cat-')) || ''}`;
      if (s.el.getAttribute('class') !== cls) s.el.setAttribute('class', cls);
      const label = `${s.name}, ${{ mine: 'yours', allocated: 'set aside' }[st] || st}${sel ? ', selected' : ''}`;
      if (s.el.getAttribute('aria-label') !== label) {
        s.el.setAttribute('aria-label', label);
        s.el.setAttribute('aria-pressed', sel ? 'true' : 'false');
        // Yours can be picked too: to swap for a free seat.
        s.el.setAttribute('aria-disabled', st !== 'free' && st !== 'mine' && !sel ? 'true' : 'false');
      }
    }
    // One seat is in the tab order: the keyboard's, or the first free.
    const usable = (u) => u && seats.has(u) && seats.get(u).el.getAttribute('aria-disabled') !== 'true';
    const next = usable(cursor) ? cursor : rows.flat().find(usable);
    for (const [unit, s] of seats) s.el.tabIndex = unit === next ? 0 : -1;
    cursor = next || null;
  }

  // move goes from unit along its row (dc) or to the nearest free seat
  // of the next row up or down (dr), skipping taken seats.
  function move(unit, dr, dc) {
    let r = rows.findIndex((row) => row.includes(unit));
    if (r < 0) return null;
    const free = (u) => seats.get(u).el.getAttribute('aria-disabled') !== 'true';
    if (dc) {
      const row = rows[r];
      for (let i = row.indexOf(unit) + dc; i >= 0 && i < row.length; i += dc) if (free(row[i])) return row[i];
      return null;
    }
    const x = seats.get(unit).x;
    for (r += dr; r >= 0 && r < rows.length; r += dr) {
      const cands = rows[r].filter(free);
      if (cands.length) return cands.reduce((a, b) => (Math.abs(seats.get(b).x - x) < Math.abs(seats.get(a).x - x) ? b : a));
    }
    return null;
  }

  function focus(unit) {
    const s = seats.get(unit);
    if (!s) return;
    for (const o of seats.values()) o.el.tabIndex = -1;
    s.el.tabIndex = 0;
    cursor = unit;
    s.el.focus();
    // Keep the focused seat in view when zoomed in.
    if (s.x < view.x || s.x > view.x + view.w || s.y < view.y || s.y > view.y + view.h) {
      setView({ ...view, x: s.x - view.w / 2, y: s.y - view.h / 2 });
    }
    onFocus(unit);
  }

  function zoom(f, cx, cy) {
    const w = Math.min(box.w, Math.max(box.w / 40, view.w / f));
    const h = (w / view.w) * view.h;
    cx = cx ?? view.x + view.w / 2;
    cy = cy ?? view.y + view.h / 2;
    setView({ x: cx - ((cx - view.x) * w) / view.w, y: cy - ((cy - view.y) * h) / view.h, w, h });
  }

  function wire() {
    svg.addEventListener('click', (e) => {
      const u = e.target.closest('[data-unit]');
      if (!u || u.getAttribute('aria-disabled') === 'true') return;
      cursor = u.dataset.unit;
      onToggle(u.dataset.unit);
    });
    svg.addEventListener('keydown', (e) => {
      const unit = e.target.dataset && e.target.dataset.unit;
      if (!unit) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        if (e.target.getAttribute('aria-disabled') !== 'true') onToggle(unit);
        return;
      }
      const step = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }[e.key];
      if (!step) return;
      e.preventDefault();
      const to = move(unit, ...step);
      if (to) focus(to);
    });
    // Zoom with the wheel around the pointer; pan by dragging.
    svg.addEventListener('wheel', (e) => {
      e.preventDefault();
      const pt = toVenue(e);
      zoom(e.deltaY < 0 ? 1.25 : 0.8, pt.x, pt.y);
    }, { passive: false });
    let drag = null;
    svg.addEventListener('pointerdown', (e) => {
      if (e.target.dataset.unit) return;
      drag = { x: e.clientX, y: e.clientY, view };
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener('pointermove', (e) => {
      if (!drag) return;
      const k = view.w / svg.getBoundingClientRect().width;
      setView({ ...drag.view, x: drag.view.x - (e.clientX - drag.x) * k, y: drag.view.y - (e.clientY - drag.y) * k });
    });
    svg.addEventListener('pointerup', () => { drag = null; });
  }

  function toVenue(e) {
    const r = svg.getBoundingClientRect();
    return { x: view.x + ((e.clientX - r.left) / r.width) * view.w, y: view.y + ((e.clientY - r.top) / r.height) * view.h };
  }

  return {
    build,
    update,
    zoomIn: () => zoom(1.5),
    zoomOut: () => zoom(1 / 1.5),
    reset: () => setView(box),
    has: (unit) => seats.has(unit),
    focused: () => cursor,
  };
}
