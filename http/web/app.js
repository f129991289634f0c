// holdfast's page: pools, a live seat map, the race, health — all through
// the public API, with the key the user enters (kept in session storage).
import { createVenue } from './venue.js';

const $ = (id) => document.getElementById(id);
const state = { selected: new Set(), mine: new Map(), events: 0, expired: 0, recent: [], admission: null, ticket: null, waitlist: new Map() };

function key() { return sessionStorage.getItem('holdfast-key') || ''; }
function holder() {
  let h = sessionStorage.getItem('holdfast-holder');
  if (!h) { h = 'guest-' + Math.random().toString(36).slice(2, 8); sessionStorage.setItem('holdfast-holder', h); }
  return h;
}

// api calls the API; a POST carries an Idempotency-Key, but for the routes
// that are not idempotent (the race), which refuse one.
async function api(method, path, body, { idempotent = true } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (key()) headers.Authorization = 'Bearer ' + key();
  if (method === 'POST' && idempotent) headers['Idempotency-Key'] = crypto.randomUUID();
  // A hold carries the waiting room's admission once the queue let us in.
  if (path === '/v1/holds' && state.admission) headers['Holdfast-Admission'] = state.admission.token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) { const e = new Error(data.detail || data.title || res.statusText); e.code = data.code; e.status = res.status; e.room = data.room; throw e; }
  return data;
}

// refused explains a refused hold; a sale behind a waiting room points to
// its queue.
function refused(e) {
  if (e.code === 'admission_required' && e.room) {
    $('room').value = e.room;
    say(`This sale is behind the waiting room "${e.room}": join its queue below.`, true);
    return;
  }
  if (e.code === 'admission_invalid') state.admission = null;
  say(e.code === 'unavailable' ? `Taken: ${e.message}` : e.message, true);
}

function say(msg, error) {
  const s = $('status');
  s.textContent = msg;
  s.className = error ? 'error' : '';
}

// soldOut remembers which pools had something left, so the banner tells
// the moment one sells out.
const hadStock = new Map();

async function loadPools() {
  const { pools } = await api('GET', '/v1/pools');
  for (const p of pools) {
    const left = p.available + p.held;
    if (hadStock.get(p.id) && left === 0) {
      const b = $('banner');
      b.textContent = `${p.name || p.id} sold out at ${new Date().toLocaleTimeString()}.`;
      b.hidden = false;
    }
    hadStock.set(p.id, left > 0);
  }
  // Each pool's card (and its button) is kept from one refresh to the
  // next and only its text changes: replacing it every two seconds lost a
  // click pressed over a refresh and the keyboard's focus on its button.
  const out = $('pools');
  const old = new Map([...out.children].map((div) => [div.dataset.pool, div]));
  keepChildren(out, pools.map((p) => {
    const div = old.get(p.id) || poolCard(p.id);
    const pct = (n) => (p.capacity ? (100 * n) / p.capacity : 0) + '%';
    const limit = p.per_holder_limit ? `, at most ${p.per_holder_limit} per holder` : '';
    div.querySelector('strong').textContent = p.name || p.id;
    const waiting = p.waitlisted ? `, ${p.waitlisted} asked for on the waitlist` : '';
    div.querySelector('.nums').textContent = `${p.confirmed} confirmed, ${p.held} held, ${p.available} available of ${p.capacity}${limit}${waiting}`;
    const act = div.querySelector('.actions button');
    if (p.available > 0) {
      act.dataset.action = 'hold';
      act.textContent = 'Hold 1';
      act.disabled = false;
      act.setAttribute('aria-label', `Hold 1 of ${p.name || p.id}`);
    } else {
      const entry = state.waitlist.get(p.id);
      act.dataset.action = 'waitlist';
      act.textContent = entry ? 'On the waitlist' : 'Join the waitlist';
      act.disabled = !!entry;
      act.setAttribute('aria-label', `${act.textContent} for ${p.name || p.id}`);
    }
    div.querySelector('.bar').setAttribute('aria-label', div.querySelector('.nums').textContent);
    div.querySelector('.c').style.width = pct(p.confirmed);
    div.querySelector('.h').style.width = pct(p.held);
    div.querySelector('.a').style.width = pct(p.available);
    return div;
  }));
}

// poolCard makes a pool's card; its one button holds or joins the
// waitlist, whichever the last refresh showed it as.
function poolCard(id) {
  const div = document.createElement('div');
  div.className = 'pool';
  div.dataset.pool = id;
  div.innerHTML = `<strong></strong> <span class="nums"></span>
    <div class="bar" role="img"><span class="c"></span><span class="h"></span><span class="a"></span></div>
    <p class="actions"><button type="button"></button></p>`;
  const act = div.querySelector('.actions button');
  act.addEventListener('click', () => (act.dataset.action === 'hold' ? holdPool(id) : joinWaitlist(id)));
  return div;
}

// keepChildren makes nodes parent's children, in order, moving only those
// out of place: a node left where it is keeps the keyboard's focus and a
// click half made on it.
function keepChildren(parent, nodes) {
  nodes.forEach((n, i) => {
    if (parent.children[i] !== n) parent.insertBefore(n, parent.children[i] || null);
  });
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

// Units named like "A-12" lay out as row A, seat 12; others 20 to a row.
function layout(units) {
  const rows = new Map();
  units.forEach((u, i) => {
    const m = /^(.*)-(\d+)$/.exec(u.id);
    const row = m ? m[1] : String(Math.floor(i / 20) + 1);
    if (!rows.has(row)) rows.set(row, []);
    rows.get(row).push(u);
  });
  // Seat 2 before seat 10: numbers in names sort as numbers.
  const num = (id) => parseInt((/(\d+)$/.exec(id) || [0, 0])[1], 10);
  for (const seats of rows.values()) seats.sort((a, b) => num(a.id) - num(b.id) || a.id.localeCompare(b.id));
  return rows;
}

// The venue map, for a group with a layout; the grid of buttons for one
// without.
const venue = createVenue($('map'), { onToggle: toggleSeat, onFocus: (u) => { state.cursor = u; } });
const shown = { group: null, layout: null, ids: null };

function toggleSeat(unit) {
  state.cursor = unit;
  if (state.selected.has(unit)) state.selected.delete(unit); else state.selected.add(unit);
  showSelection();
  loadMap();
}

async function loadMap() {
  const group = $('group').value.trim();
  if (!group) return;
  if (shown.group !== group) {
    shown.group = group;
    shown.ids = null;
    // Every refresh meanwhile waits for the same read: none draws the
    // grid of a group whose layout is on its way.
    shown.ready = api('GET', `/v1/groups/${encodeURIComponent(group)}/layout`).catch(() => null);
    shown.layout = await shown.ready;
    $('map').classList.toggle('venue-map', !!shown.layout);
    $('venue-tools').hidden = !shown.layout;
    $('venue-legend').hidden = !shown.layout;
    $('grid-legend').hidden = !!shown.layout;
    if (shown.layout) {
      venue.build(shown.layout);
      $('categories').replaceChildren(...(shown.layout.categories || []).map((c) => {
        const li = document.createElement('li');
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = c.color;
        li.append(sw, ' ' + (c.name || c.id));
        return li;
      }));
    } else {
      $('map').replaceChildren();
    }
  }
  shown.layout = await shown.ready;
  if (shown.group !== group) return;
  if (shown.layout) { await loadVenue(group); return; }
  const { units } = await api('GET', `/v1/groups/${encodeURIComponent(group)}/units`);
  const rows = layout(units);
  const cols = Math.max(1, ...[...rows.values()].map((r) => r.length));
  const map = $('map');
  map.style.setProperty('--cols', cols);
  // A live update keeps each seat's button (and the rows' labels) and only
  // changes what it shows: a click pressed during a refresh lands, and
  // the keyboard stays where it was. A seat the update disabled hands the
  // keyboard's focus to the cursor.
  const focused = map.contains(document.activeElement) ? document.activeElement.dataset.unit : null;
  const seatsKept = new Map([...map.querySelectorAll('button.seat')].map((b) => [b.dataset.unit, b]));
  const rowsKept = new Map([...map.querySelectorAll('span.row')].map((l) => [l.textContent, l]));
  const padding = [...map.querySelectorAll('span.pad')];
  state.grid = [...rows.values()].map((seats) => seats.map((u) => u.id));
  const cells = [];
  for (const [row, seats] of rows) {
    let label = rowsKept.get(row);
    if (!label) {
      label = document.createElement('span');
      label.className = 'row';
      label.textContent = row;
    }
    cells.push(label);
    for (const u of seats) {
      let b = seatsKept.get(u.id);
      if (!b) {
        b = document.createElement('button');
        b.type = 'button';
        b.dataset.unit = u.id;
        b.addEventListener('click', () => toggleSeat(u.id));
      }
      const mine = u.hold_id && state.mine.has(u.hold_id);
      // A free seat set aside for a sales channel is not the general sale's.
      const status = mine ? 'mine' : u.status === 'free' && u.channel ? 'allocated' : u.status;
      b.className = `seat ${status}` + (state.selected.has(u.id) ? ' selected' : '');
      b.textContent = { free: u.id.split('-').pop(), allocated: 'S', held: 'H', confirmed: '✓', mine: 'M' }[status];
      b.setAttribute('aria-label', `Seat ${u.id}, ${mine ? 'yours' : status === 'allocated' ? 'set aside' : u.status}${state.selected.has(u.id) ? ', selected' : ''}`);
      b.setAttribute('aria-pressed', state.selected.has(u.id) ? 'true' : 'false');
      b.disabled = status !== 'free' && !mine && !state.selected.has(u.id);
      b.tabIndex = -1;
      cells.push(b);
    }
    for (let i = seats.length; i < cols; i++) {
      let pad = padding.pop();
      if (!pad) {
        pad = document.createElement('span');
        pad.className = 'pad';
      }
      cells.push(pad);
    }
  }
  keepChildren(map, cells);
  // One seat is in the tab order (the last one the keyboard was on, or
  // the first free); the arrow keys move between seats.
  const enabled = [...map.querySelectorAll('button.seat:not([disabled])')];
  const cursor = enabled.find((b) => b.dataset.unit === state.cursor) || enabled[0];
  if (cursor) cursor.tabIndex = 0;
  if (focused && !map.contains(document.activeElement)) {
    const again = map.querySelector(`button[data-unit="${CSS.escape(focused)}"]:not([disabled])`) || cursor;
    if (again) again.focus();
  }
}

// loadVenue colours the venue's seats from the compact map (one status
// character per unit; the ids fetched once, again when units are added).
async function loadVenue(group) {
  const path = `/v1/groups/${encodeURIComponent(group)}/units?format=compact`;
  let m = await api('GET', path + (shown.ids ? '' : '&ids=true'));
  if (m.ids) shown.ids = m.ids;
  if (shown.ids.length !== m.units) {
    m = await api('GET', path + '&ids=true');
    shown.ids = m.ids || [];
  }
  const status = new Map(shown.ids.map((id, i) => [id, { f: 'free', a: 'allocated', h: 'held', c: 'confirmed' }[m.status[i]]]));
  const mine = new Set();
  for (const h of state.mine.values()) {
    if (h.status === 'held' || h.status === 'confirmed') for (const l of h.lines) for (const u of l.units || []) mine.add(u);
  }
  venue.update((u) => (mine.has(u) && status.get(u) !== 'free' ? 'mine' : status.get(u)), state.selected);
}

// holdTogether asks the engine for the best k seats together.
async function holdTogether() {
  const k = parseInt($('together-k').value, 10) || 2;
  const ttl = parseInt($('ttl').value, 10) || 120;
  try {
    const h = await api('POST', '/v1/holds', { holder: holder(), ttl_seconds: ttl, lines: [{ group: shown.group, any: k, together: true }] });
    state.mine.set(h.id, h);
    say(`Held ${h.lines[0].units.join(', ')} together until ${new Date(h.expires_at).toLocaleTimeString()}.`);
  } catch (e) { refused(e); }
  await refresh();
}

$('together').addEventListener('click', holdTogether);
$('zoom-in').addEventListener('click', () => venue.zoomIn());
$('zoom-out').addEventListener('click', () => venue.zoomOut());
$('zoom-reset').addEventListener('click', () => venue.reset());

// moveSeat moves the keyboard from seat `from` by (dr, dc), skipping seats
// that are taken, and returns the button it lands on.
function moveSeat(from, dr, dc) {
  const g = state.grid || [];
  let r = g.findIndex((row) => row.includes(from));
  if (r < 0) return null;
  let c = g[r].indexOf(from);
  for (;;) {
    r += dr;
    c += dc;
    if (r < 0 || r >= g.length) return null;
    c = Math.max(0, Math.min(c, g[r].length - 1));
    if (dc !== 0 && (c === 0 || c === g[r].length - 1) && g[r][c] === from) return null;
    const b = $('map').querySelector(`button[data-unit="${CSS.escape(g[r][c])}"]`);
    if (b && !b.disabled) return b;
    if (dc !== 0 && (c === 0 || c === g[r].length - 1)) return null;
  }
}

$('map').addEventListener('keydown', (e) => {
  const from = e.target.dataset && e.target.dataset.unit;
  const step = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }[e.key];
  if (!from || !step) return;
  e.preventDefault();
  const to = moveSeat(from, ...step);
  if (!to) return;
  e.target.tabIndex = -1;
  to.tabIndex = 0;
  state.cursor = to.dataset.unit;
  to.focus();
});

function showSelection() {
  const sel = [...state.selected];
  $('selection').textContent = sel.length ? `Selected: ${sel.join(', ')}` : '';
  // Seats of yours and as many free ones: a swap.
  const yours = sel.filter((u) => mineOf(u));
  $('exchange').hidden = !(yours.length && sel.length === 2 * yours.length);
}

// mineOf is the hold of yours (held or confirmed) that has unit, if any.
function mineOf(unit) {
  for (const h of state.mine.values()) {
    if ((h.status === 'held' || h.status === 'confirmed') && h.lines.some((l) => (l.units || []).includes(unit))) return h;
  }
  return null;
}

// exchangeSelected swaps seats of one of your holds for as many free
// ones, in one step (POST /v1/holds/{id}/exchange): all or none.
async function exchangeSelected() {
  const sel = [...state.selected];
  const olds = sel.filter((u) => mineOf(u)).sort();
  const news = sel.filter((u) => !mineOf(u)).sort();
  const h = olds.length ? mineOf(olds[0]) : null;
  if (!h || olds.some((u) => mineOf(u) !== h) || olds.length !== news.length) {
    say('To swap, pick seats of one of your holds and as many free seats.', true);
    return;
  }
  try {
    const got = await api('POST', `/v1/holds/${encodeURIComponent(h.id)}/exchange`, { units: Object.fromEntries(olds.map((u, i) => [u, news[i]])) });
    state.mine.set(got.id, got);
    say(`Swapped ${olds.join(', ')} for ${news.join(', ')}.`);
  } catch (e) { refused(e); }
  state.selected.clear();
  showSelection();
  await refresh();
}

async function holdSelected() {
  const free = [...state.selected].filter((u) => !mineOf(u));
  if (!free.length) { say('Pick free seats first.', true); return; }
  const ttl = parseInt($('ttl').value, 10) || 120;
  try {
    const h = await api('POST', '/v1/holds', { holder: holder(), ttl_seconds: ttl, lines: [{ units: free }] });
    state.mine.set(h.id, h);
    state.selected.clear();
    say(`Held ${h.lines[0].units.join(', ')} until ${new Date(h.expires_at).toLocaleTimeString()}.`);
  } catch (e) {
    refused(e);
    state.selected.clear();
  }
  showSelection();
  await refresh();
}

// renderMine keeps the list's items (and their buttons) when a hold is
// unchanged and only updates its text: replacing them on every refresh
// made a click land on a button that had just been swapped out.
function renderMine() {
  const ul = $('mine');
  const old = new Map([...ul.children].map((li) => [li.dataset.hold + '/' + li.dataset.status, li]));
  keepChildren(ul, [...state.mine.values()].map((h) => {
    const units = h.lines.map((l) => (l.units ? l.units.join(', ') : `${l.quantity} of ${l.pool}`)).join(', ');
    const left = Math.max(0, Math.round((new Date(h.expires_at) - Date.now()) / 1000));
    const label = h.status === 'held' ? `${units}: held, ${left}s left ` : `${units}: ${h.status} `;
    const kept = old.get(h.id + '/' + h.status);
    if (kept) {
      kept.firstChild.textContent = label;
      return kept;
    }
    const li = document.createElement('li');
    li.dataset.hold = h.id;
    li.dataset.status = h.status;
    const text = document.createElement('span');
    text.textContent = label;
    li.append(text);
    if (h.status === 'held') {
      for (const [name, action] of [['Confirm', 'confirm'], ['Release', 'release']]) {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = name;
        b.setAttribute('aria-label', `${name} ${units}`);
        b.addEventListener('click', async () => {
          try { state.mine.set(h.id, await api('POST', `/v1/holds/${h.id}/${action}`, {})); say(`${name}ed ${units}.`); }
          catch (e) { say(e.message, true); if (e.code === 'hold_expired') h.status = 'expired'; }
          await refresh();
        });
        li.append(b);
      }
    }
    return li;
  }));
}

let refreshing = null;
async function refresh() {
  try {
    await Promise.all([loadPools(), loadMap()]);
    renderMine();
  } catch (e) { say(e.status === 401 || e.status === 403 ? 'Enter an API key above.' : e.message, true); }
}
// soon refreshes 100 ms after the last event, and again 400 ms after it:
// the venue's compact map may be up to 250 ms old (the server shares one
// read among its viewers), and the second read sees the event for sure.
let trailing = null;
function soon() {
  clearTimeout(refreshing);
  refreshing = setTimeout(refresh, 100);
  clearTimeout(trailing);
  trailing = setTimeout(refresh, 400);
}

// listen follows the event stream. The key never goes in the stream's URL
// (logs and history keep URLs): with a key, the page asks for a stream
// token, good for a minute, and asks again whenever the stream reconnects.
async function listen() {
  let url = '/v1/events/stream';
  if (key()) {
    const { token } = await api('GET', '/v1/events/stream-token');
    url += '?token=' + encodeURIComponent(token);
  }
  const es = new EventSource(url);
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED && stream === es) setTimeout(() => { if (stream === es) restream(); }, 1000);
  };
  es.onmessage = () => {};
  const onEvent = (ev) => {
    state.events++;
    state.recent.push(Date.now());
    const e = JSON.parse(ev.data);
    if (e.type === 'hold.expired') state.expired++;
    if (state.mine.has(e.hold_id) && Array.isArray(e.data?.lines)) state.mine.set(e.hold_id, e.data); // a hold's event carries the hold; a waitlist's, the entry
    $('events-seen').textContent = state.events;
    $('expired-seen').textContent = state.expired;
    soon();
  };
  for (const t of ['hold.created', 'hold.confirmed', 'hold.released', 'hold.extended', 'hold.expired', 'hold.cancelled',
    'hold.completed', 'hold.transferred', 'hold.exchanged', 'pool.created', 'pool.changed', 'group.created', 'group.units_added', 'group.changed',
    'allocation.changed', 'allocation.released', 'waitlist.offered', 'waitlist.expired']) es.addEventListener(t, onEvent);
  return es;
}

async function holdPool(pool) {
  const ttl = parseInt($('ttl').value, 10) || 120;
  try {
    const h = await api('POST', '/v1/holds', { holder: holder(), ttl_seconds: ttl, lines: [{ pool, quantity: 1 }] });
    state.mine.set(h.id, h);
    if (state.admission) { state.admission = null; showTicket(); }
    say(`Held 1 of ${pool} until ${new Date(h.expires_at).toLocaleTimeString()}.`);
  } catch (e) { refused(e); }
  await refresh();
}

// ---- the waiting room ----

// showTicket tells the visitor where they stand: position and wait, or
// that it is their turn (and until when), or that it sold out.
function showTicket() {
  const t = state.ticket;
  const s = $('queue-status');
  s.className = '';
  if (!t) { s.textContent = 'Not in a queue.'; return; }
  if (t.status === 'waiting') {
    s.textContent = `In the queue for "${t.room}": position ${t.position}, about ${Math.ceil(t.estimated_wait_seconds)} s to wait.`;
  } else if (t.status === 'admitted' && state.admission) {
    s.textContent = `Your turn! Hold your tickets before ${new Date(t.admission_expires_at).toLocaleTimeString()}.`;
    s.className = 'turn';
  } else if (t.status === 'admitted') {
    s.textContent = `You are in "${t.room}": your hold is under "Your holds".`;
  } else if (t.status === 'sold_out') {
    s.textContent = `"${t.room}" sold out. A pool's waitlist may still get you in: see the pools above.`;
  } else {
    s.textContent = `Done with "${t.room}".`;
  }
}

// ---- the draw ----

// The room's draw: its commitment from joining on; from opening, the
// visitor checks it here, in the browser, as holdfast room verify does:
// the seed against the commitment, the order, their own ticket's HMAC
// and place (docs/queues.md, "A draw anyone can check").
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const unhex = (s) => new Uint8Array((s.match(/../g) || []).map((h) => parseInt(h, 16)));
const sha256hex = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes));
async function hmacHex(seed, message) {
  const k = await crypto.subtle.importKey('raw', unhex(seed), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return hex(await crypto.subtle.sign('HMAC', k, new TextEncoder().encode(message)));
}

async function showDraw(t) {
  const d = $('draw-status');
  let r;
  try { r = await api('GET', `/v1/rooms/${encodeURIComponent(t.room)}`); } catch { return; }
  state.room = r;
  $('verify-draw').hidden = !r.seed;
  d.className = '';
  if (!r.seed_commitment) { d.textContent = ''; return; }
  const place = t.place ? ` Your place: ${t.place}.` : (r.seed ? '' : ' Places before opening are drawn at opening.');
  d.textContent = `This room committed to its draw before anyone joined: ${r.seed_commitment.slice(0, 16)}….${place}`;
}

async function verifyDraw() {
  const t = state.ticket, r = state.room, d = $('draw-status');
  if (!t || !r) return;
  try {
    const draw = await api('GET', `/v1/rooms/${encodeURIComponent(t.room)}/draw`);
    let wrong = '';
    if (await sha256hex(unhex(draw.seed)) !== r.seed_commitment) wrong = 'the seed does not hash to the commitment';
    draw.entries.forEach((e, i) => {
      if (!wrong && e.place !== i + 1) wrong = `entry ${i + 1} has place ${e.place}`;
      if (!wrong && i > 0 && draw.entries[i - 1].draw >= e.draw) wrong = `place ${e.place} is out of draw order`;
    });
    if (!wrong && draw.entries.length !== draw.total) wrong = `the draw lists ${draw.entries.length} of ${draw.total}`;
    const myHash = await sha256hex(new TextEncoder().encode(t.ticket));
    const own = draw.entries.find((e) => e.ticket_sha256 === myHash);
    if (!wrong && own && await hmacHex(draw.seed, t.ticket) !== own.draw) wrong = 'your ticket\'s HMAC is not the one the draw shows';
    if (!wrong && own && t.place && own.place !== t.place) wrong = `your ticket reads place ${t.place}, the draw gives it ${own.place}`;
    if (wrong) {
      d.textContent = `The draw does not verify: ${wrong}.`;
      d.className = 'error';
      return;
    }
    const yours = own ? `; yours is place ${own.place}, and its HMAC is your ticket's` : '; you joined after opening, so you follow them in join order';
    d.textContent = `Verified in your browser: the seed matches the commitment, ${draw.total} places in draw order${yours}. The same from a terminal: holdfast room verify ${t.room} --ticket ${t.ticket}`;
    d.className = 'verified';
  } catch (e) { say(e.message, true); }
}

function onTicket(t) {
  const before = state.ticket;
  if (!before || before.room !== t.room || before.place !== t.place || before.status !== t.status) showDraw(t);
  state.ticket = t;
  if (t.status === 'admitted' && t.admission && !t.hold_id) state.admission = { room: t.room, token: t.admission };
  showTicket();
}

// followTicket follows the place live: the ticket's event stream (open
// mode: EventSource sends no key), or a poll every two seconds.
let ticketStream = null;
let ticketPoll = null;
function followTicket(t) {
  if (ticketStream) ticketStream.close();
  clearInterval(ticketPoll);
  onTicket(t);
  if (t.status !== 'waiting') return;
  const path = `/v1/rooms/${encodeURIComponent(t.room)}/tickets/${encodeURIComponent(t.ticket)}`;
  if (!key()) {
    ticketStream = new EventSource(path + '/stream');
    ticketStream.addEventListener('ticket', (ev) => {
      const next = JSON.parse(ev.data);
      onTicket(next);
      if (next.status !== 'waiting') ticketStream.close();
    });
    return;
  }
  ticketPoll = setInterval(async () => {
    try {
      const next = await api('GET', path);
      onTicket(next);
      if (next.status !== 'waiting') clearInterval(ticketPoll);
    } catch (e) { say(e.message, true); }
  }, 2000);
}

async function joinRoom() {
  const room = $('room').value.trim();
  if (!room) { say('Name the waiting room first.', true); return; }
  try { followTicket(await api('POST', `/v1/rooms/${encodeURIComponent(room)}/join`, { holder: holder() })); }
  catch (e) { say(e.message, true); }
}

// ---- waitlists ----

async function joinWaitlist(pool) {
  try {
    const e = await api('POST', `/v1/pools/${encodeURIComponent(pool)}/waitlist`, { holder: holder(), quantity: 1 });
    state.waitlist.set(pool, e);
    say(`On the waitlist for ${pool}, position ${e.position}.`);
  } catch (e) { say(e.message, true); }
  renderWaitlists();
  await refresh();
}

// checkWaitlists reads one's entries; an offer becomes one of one's holds.
async function checkWaitlists() {
  for (const [pool, e] of state.waitlist) {
    if (e.status !== 'waiting' && e.status !== 'offered') continue;
    try {
      const next = await api('GET', `/v1/pools/${encodeURIComponent(pool)}/waitlist/${encodeURIComponent(e.id)}`);
      if (next.hold_id && !state.mine.has(next.hold_id)) {
        state.mine.set(next.hold_id, await api('GET', `/v1/holds/${encodeURIComponent(next.hold_id)}`));
        say(`Your turn for ${pool}: 1 is held for you until ${new Date(next.offer_expires_at).toLocaleTimeString()}. Confirm it under "Your holds".`);
      }
      state.waitlist.set(pool, next);
    } catch (err) { say(err.message, true); }
  }
  renderWaitlists();
}

function renderWaitlists() {
  $('waitlists').replaceChildren(...[...state.waitlist.values()].map((e) => {
    const li = document.createElement('li');
    li.dataset.entry = e.id;
    li.dataset.status = e.status;
    li.textContent = {
      waiting: `Waitlist for ${e.pool}: position ${e.position}.`,
      offered: `Your turn for ${e.pool}: held for you until ${e.offer_expires_at ? new Date(e.offer_expires_at).toLocaleTimeString() : '…'}.`,
      confirmed: `Waitlist for ${e.pool}: bought.`,
      expired: `Waitlist for ${e.pool}: the offer lapsed${e.reason ? ' (' + e.reason + ')' : ''}.`,
      released: `Waitlist for ${e.pool}: offer released.`,
      left: `Left the waitlist for ${e.pool}.`,
    }[e.status] || e.status;
    return li;
  }));
}

// ---- the live sale: the operator's dashboard ----

// Every two seconds the page reads the server's /metrics (and the pools):
// the differences between two reads are the rates drawn for the last four
// minutes. Everything comes from the public endpoints an operator's own
// Prometheus would scrape.
const SAMPLES = 120;
const live = { last: null, samples: [], pools: new Map(), rooms: new Map() };

// parseMetrics reads the Prometheus text format into name → [{labels, value}].
function parseMetrics(text) {
  const out = new Map();
  for (const m of text.matchAll(/^([a-z_:]+)(?:\{([^}]*)\})? (\S+)$/gm)) {
    const labels = m[2] ? Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]])) : {};
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[3]) });
  }
  return out;
}
const sum = (ms, name, f = () => true) => (ms.get(name) || []).filter((x) => f(x.labels)).reduce((a, x) => a + x.value, 0);

async function sampleHolds() {
  const headers = key() ? { Authorization: 'Bearer ' + key() } : {};
  let ms;
  try {
    const res = await fetch('/metrics', { headers });
    if (!res.ok) return;
    ms = parseMetrics(await res.text());
  } catch { return; }
  const cur = {
    at: Date.now(),
    granted: sum(ms, 'holdfast_holds_total', (l) => l.outcome === 'granted'),
    refused: sum(ms, 'holdfast_holds_total', (l) => l.outcome !== 'granted'),
    busy: sum(ms, 'holdfast_holds_total', (l) => l.outcome === 'busy'),
    batches: sum(ms, 'holdfast_batches_total'),
    batched: sum(ms, 'holdfast_batched_claims_total'),
    backlog: sum(ms, 'holdfast_webhook_queue_depth'),
    oldest: sum(ms, 'holdfast_webhook_oldest_pending_seconds'),
    // The latency histogram of POST /v1/holds, bucket by bucket.
    buckets: new Map((ms.get('holdfast_http_request_duration_seconds_bucket') || [])
      .filter((x) => x.labels.route === 'POST /v1/holds').map((x) => [x.labels.le, x.value])),
    rooms: new Map((ms.get('holdfast_room_waiting') || []).map((x) => [x.labels.room, {
      waiting: x.value,
      admitted: sum(ms, 'holdfast_room_admitted_total', (l) => l.room === x.labels.room),
      open: sum(ms, 'holdfast_room_open', (l) => l.room === x.labels.room),
    }])),
  };
  const prev = live.last;
  live.last = cur;
  if (!prev) return;
  const secs = (cur.at - prev.at) / 1000;
  const s = {
    granted: Math.max(0, cur.granted - prev.granted) / secs,
    refused: Math.max(0, cur.refused - prev.refused) / secs,
    busy: Math.max(0, cur.busy - prev.busy) / secs,
    busyCount: Math.max(0, cur.busy - prev.busy),
    p99: p99ms(prev.buckets, cur.buckets),
    perBatch: cur.batches > prev.batches ? (cur.batched - prev.batched) / (cur.batches - prev.batches) : null,
    backlog: cur.backlog,
    oldest: cur.oldest,
  };
  push(live.samples, s);
  for (const [room, r] of cur.rooms) {
    if (!live.rooms.has(room)) live.rooms.set(room, []);
    const before = prev.rooms.get(room);
    push(live.rooms.get(room), { waiting: r.waiting, admitted: before ? Math.max(0, r.admitted - before.admitted) / secs : 0, open: r.open });
  }
  for (const room of live.rooms.keys()) if (!cur.rooms.has(room)) live.rooms.delete(room);
  try {
    const { pools } = await api('GET', '/v1/pools');
    for (const p of pools) {
      if (!live.pools.has(p.id)) live.pools.set(p.id, { name: p.name || p.id, samples: [] });
      push(live.pools.get(p.id).samples, { capacity: p.capacity, sold: p.confirmed, held: p.held, allocations: p.allocations || [] });
    }
  } catch { /* the pools show again at the next read */ }
  operatorMetrics(s);
  drawDashboard();
}

// span is the x axis's width in readings: the charts fill from the left
// over the first half-minute, then show the last four minutes.
const span = (n) => Math.max(n - 1, 15);

function push(list, x) {
  list.push(x);
  if (list.length > SAMPLES) list.shift();
}

// p99ms is the 99th percentile of a hold over the last read, from the
// histogram's buckets (the bucket's upper bound), or null with no holds.
function p99ms(prev, cur) {
  const total = (cur.get('+Inf') || 0) - (prev.get('+Inf') || 0);
  if (total <= 0) return null;
  for (const [le, n] of [...cur].filter(([le]) => le !== '+Inf').sort((a, b) => Number(a[0]) - Number(b[0]))) {
    if (n - (prev.get(le) || 0) >= 0.99 * total) return Number(le) * 1000;
  }
  return Infinity;
}

// operatorMetrics is the one-line summary: what matters during an on-sale.
function operatorMetrics(s) {
  const p99 = s.p99 === null ? '–' : s.p99 === Infinity ? 'over 10 s' : `${Math.round(s.p99)} ms or less`;
  const perBatch = s.perBatch === null ? '–' : s.perBatch.toFixed(1);
  $('op-metrics').textContent = `Holds: ${(s.granted + s.refused).toFixed(1)} per second, p99 ${p99}; claims per batch ${perBatch}; busy answers ${s.busyCount} (must stay 0 while tickets remain).`;
}

// chart draws series of the last four minutes as lines on a shared scale,
// or says why there is nothing to draw yet.
function chart(el, samples, series, empty) {
  const w = 320;
  const h = 80;
  const values = samples.flatMap((x) => series.map((sr) => sr.value(x))).filter((v) => v !== null && Number.isFinite(v));
  if (!values.some((v) => v > 0)) {
    el.innerHTML = '';
    const p = document.createElement('p');
    p.className = 'empty';
    p.textContent = samples.length < 2 ? 'Collecting the first readings…' : empty;
    el.append(p);
    return;
  }
  const peak = Math.max(...values);
  const x = (i) => (w * i) / span(samples.length);
  const y = (v) => h - 4 - ((h - 14) * v) / peak;
  const lines = series.map((sr) => {
    const pts = samples.map((s, i) => [i, sr.value(s)]).filter(([, v]) => v !== null && Number.isFinite(v)).map(([i, v]) => [x(i).toFixed(1), y(v).toFixed(1)]);
    if (!pts.length) return '';
    // The latest reading is marked: with one reading so far, it is all
    // there is to see.
    const [lx, ly] = pts[pts.length - 1];
    return `<polyline class="${sr.cls}" fill="none" points="${pts.map((p) => p.join(',')).join(' ')}"/><circle class="${sr.cls} dot" cx="${lx}" cy="${ly}" r="2.5"/>`;
  }).join('');
  el.innerHTML = `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" aria-hidden="true" focusable="false">
    <line x1="0" y1="${h - 4}" x2="${w}" y2="${h - 4}" class="axis"/>
    <text x="2" y="9" class="peak">${fmt(peak)}</text>${lines}</svg>`;
}
const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, '') || '0');
const lastOf = (list) => list[list.length - 1];

function drawDashboard() {
  const s = live.samples;
  const now = lastOf(s) || { granted: 0, refused: 0, busy: 0, p99: null, perBatch: null, backlog: 0, oldest: 0 };
  const peak = Math.max(0, ...s.map((x) => Math.max(x.granted, x.refused)));
  chart($('live'), s, [{ cls: 'granted', value: (x) => x.granted }, { cls: 'refused', value: (x) => x.refused }], 'No holds yet: the chart starts with the first one.');
  $('live-now').textContent = `Now ${now.granted.toFixed(1)} granted and ${now.refused.toFixed(1)} refused per second; peak ${peak.toFixed(1)}.`;
  chart($('p99'), s, [{ cls: 'line', value: (x) => (x.p99 === Infinity ? 10000 : x.p99) }], 'No holds in the last four minutes.');
  $('p99-now').textContent = now.p99 === null ? 'No holds in the last reading.' : now.p99 === Infinity ? 'Now over 10 s.' : `Now ${Math.round(now.p99)} ms or less.`;
  chart($('batch'), s, [{ cls: 'line', value: (x) => x.perBatch }], 'No batches yet: claims are batched when many arrive at once.');
  $('batch-now').textContent = now.perBatch === null ? 'No batch in the last reading.' : `Now ${now.perBatch.toFixed(1)} claims per batch.`;
  chart($('busy'), s, [{ cls: 'refused', value: (x) => x.busy }], 'None: every request got an answer.');
  $('busy-now').textContent = `Now ${now.busy.toFixed(1)} per second.`;
  chart($('backlog'), s, [{ cls: 'line', value: (x) => x.backlog }], 'Nothing waiting: every event was delivered.');
  $('backlog-now').textContent = now.backlog ? `${now.backlog} waiting; the oldest ${Math.round(now.oldest)} s old.` : 'Nothing waiting.';
  drawPools();
  drawRooms();
}

// drawPools shows each pool's sold, held and free over time, stacked to
// its capacity.
function drawPools() {
  const out = $('pool-charts');
  if (!live.pools.size) { out.innerHTML = '<p class="empty">No pools yet.</p>'; return; }
  const w = 240;
  const h = 48;
  out.replaceChildren(...[...live.pools].map(([id, p]) => {
    const fig = document.createElement('div');
    fig.className = 'pool-chart';
    // One reading so far is drawn as a band to the right edge.
    if (p.samples.length === 1) p.samples.unshift(p.samples[0]);
    const n = p.samples.length;
    const x = (i) => (w * i) / span(n);
    const area = (lo, hi, cls) => {
      const top = p.samples.map((s, i) => `${x(i).toFixed(1)},${(h - (h * hi(s)) / Math.max(1, s.capacity)).toFixed(1)}`);
      const bottom = p.samples.map((s, i) => `${x(i).toFixed(1)},${(h - (h * lo(s)) / Math.max(1, s.capacity)).toFixed(1)}`).reverse();
      return `<polygon class="${cls}" points="${top.concat(bottom).join(' ')}"/>`;
    };
    const last = lastOf(p.samples);
    // What channels have set aside (a presale, a reseller) is free only to them.
    const aside = (last.allocations || []).map((a) => `${a.channel} ${a.available} of ${a.quantity} left`).join(', ');
    const label = `${p.name}: ${last.sold} sold, ${last.held} held, ${Math.max(0, last.capacity - last.sold - last.held)} free of ${last.capacity}` +
      (aside ? `; set aside for ${aside}` : '');
    fig.innerHTML = `<p class="pool-name"></p><svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img">
      ${area(() => 0, (s) => s.sold, 'sold') + area((s) => s.sold, (s) => s.sold + s.held, 'heldk') + area((s) => s.sold + s.held, (s) => s.capacity, 'freek')}</svg>`;
    fig.querySelector('.pool-name').textContent = label;
    fig.querySelector('svg').setAttribute('aria-label', label);
    fig.dataset.pool = id;
    return fig;
  }));
}

// drawRooms shows each waiting room's queue and its admissions per second.
function drawRooms() {
  const out = $('rooms');
  if (!live.rooms.size) {
    out.innerHTML = '<p class="empty">No waiting rooms.</p>';
    return;
  }
  out.replaceChildren(...[...live.rooms].map(([room, samples]) => {
    const div = document.createElement('div');
    div.className = 'room-chart';
    const last = lastOf(samples);
    const p = document.createElement('p');
    p.textContent = `${room}: ${last.waiting} waiting, ${last.admitted.toFixed(1)} admitted per second${last.open ? '' : ' (not open)'}`;
    const c = document.createElement('div');
    c.className = 'chart';
    c.setAttribute('role', 'img');
    c.setAttribute('aria-label', p.textContent);
    div.append(p, c);
    chart(c, samples, [{ cls: 'line', value: (x) => x.waiting }, { cls: 'granted', value: (x) => x.admitted }], 'Nobody waiting.');
    return div;
  }));
}

// loadWebhooks lists the webhooks and each one's latest deliveries (the
// admin key's view; others see nothing here).
async function loadWebhooks() {
  let hooks;
  try { ({ webhooks: hooks } = await api('GET', '/v1/webhooks')); } catch { return; }
  if (!hooks.length) return;
  const table = document.createElement('table');
  table.innerHTML = '<caption>Webhooks and their latest deliveries</caption><thead><tr><th scope="col">Endpoint</th><th scope="col">State</th><th scope="col">Latest deliveries</th></tr></thead><tbody></tbody>';
  for (const h of hooks) {
    const tr = document.createElement('tr');
    const cells = [h.url, h.enabled ? 'enabled' : 'disabled', '…'].map((text) => { const td = document.createElement('td'); td.textContent = text; return td; });
    tr.append(...cells);
    table.tBodies[0].append(tr);
    api('GET', `/v1/webhooks/${encodeURIComponent(h.id)}/deliveries?limit=5`).then(({ deliveries }) => {
      cells[2].textContent = deliveries.length ? deliveries.map((d) => `${d.event_type}: ${d.status}${d.attempts > 1 ? ` after ${d.attempts} tries` : ''}`).join(' · ') : 'none yet';
    }).catch(() => { cells[2].textContent = 'unavailable'; });
  }
  $('webhooks').replaceChildren(table);
}

// loadRefunds lists the payments owed back (their confirm or booking was
// refused, or cancelled): a buyer who paid and has no ticket.
async function loadRefunds() {
  let due;
  try { ({ payments: due } = await api('GET', '/v1/payments?status=refund_due')); } catch { return; }
  if (!due.length) {
    $('refunds').innerHTML = '<p>None: every payment is a ticket or has been refunded.</p>';
    return;
  }
  const ul = document.createElement('ul');
  for (const p of due.slice(0, 10)) {
    const li = document.createElement('li');
    li.dataset.ref = p.ref;
    li.textContent = `${p.ref}: ${(p.amount / 100).toFixed(2)} ${p.currency}, since ${new Date(p.created_at).toLocaleTimeString()} — ${p.reason}`;
    ul.append(li);
  }
  const more = due.length > 10 ? ` (the first 10 of ${due.length})` : '';
  const head = document.createElement('p');
  head.textContent = `${due.length} payment(s) to refund${more}; mark each refunded once paid back (holdfast payment refunded REF).`;
  $('refunds').replaceChildren(head, ul);
}

async function race() {
  const out = $('race-out');
  out.textContent = 'Racing…';
  $('race').disabled = true;
  try {
    const r = await api('POST', '/v1/lab/race', undefined, { idempotent: false });
    out.innerHTML = r.chart_svg;
    const p = document.createElement('p');
    p.textContent = r.results.map((x) => `${x.target}: ${x.granted} granted of ${x.capacity}, oversold ${x.oversold}`).join(' · ');
    out.append(p);
  } catch (e) { out.textContent = e.message; }
  $('race').disabled = false;
}

async function audit() {
  try {
    const r = await api('GET', '/v1/audit');
    const owed = (r.refunds_due_old || []).length ? `; ${r.refunds_due_old.length} refund(s) owed for over a day` : '';
    $('audit').textContent = (r.differences.length ? `${r.differences.length} differences: ${r.differences.join('; ')}` : `clean (${r.pools} pools, ${r.units} units, ${r.payments || 0} payments, ${new Date(r.at).toLocaleTimeString()})`) + owed;
    $('audit').className = r.differences.length ? 'error' : '';
  } catch (e) { $('audit').textContent = e.message; }
}

let stream;
async function restream() {
  if (stream) stream.close();
  stream = null;
  try { stream = await listen(); } catch (e) { say(e.status === 401 || e.status === 403 ? 'Enter an API key above.' : e.message, true); }
}
function start() {
  drawDashboard();
  $('holder').value = holder();
  $('key').value = key();
  restream();
  refresh();
  audit();
  loadWebhooks();
}

$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('holdfast-key', $('key').value.trim());
  if ($('holder').value.trim()) sessionStorage.setItem('holdfast-holder', $('holder').value.trim());
  start();
});
$('group-form').addEventListener('submit', (e) => { e.preventDefault(); state.selected.clear(); showSelection(); refresh(); });
$('hold').addEventListener('click', holdSelected);
$('exchange').addEventListener('click', exchangeSelected);
$('race').addEventListener('click', race);
$('room-form').addEventListener('submit', (e) => { e.preventDefault(); joinRoom(); });
$('verify-draw').addEventListener('click', () => verifyDraw());
$('audit-run').addEventListener('click', audit);
setInterval(() => {
  const now = Date.now();
  state.recent = state.recent.filter((t) => now - t < 60000);
  $('rate').textContent = state.recent.length;
  for (const h of state.mine.values()) if (h.status === 'held' && new Date(h.expires_at) <= now) { h.status = 'expired'; soon(); }
  renderMine();
  if (now % 2000 < 1000) { checkWaitlists(); sampleHolds(); loadRefunds(); }
  if (now % 10000 < 1000) loadWebhooks();
}, 1000);
start();
