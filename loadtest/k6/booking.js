// The classic k6 booking test against holdfast: 20 virtual users race for
// 10 tickets at the same moment. Every booking answers 201 (a ticket) or
// 409 sold_out (a definite no) — never a 429 or a 5xx while tickets remain —
// and afterwards the pool has sold exactly its capacity.
//
//   holdfast serve &                        # or with --admin-key, then KEY=…
//   k6 run loadtest/k6/booking.js
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e KEY=$ADMIN_KEY -e TICKETS=100 -e VUS=200 loadtest/k6/booking.js
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const TICKETS = parseInt(__ENV.TICKETS || '10', 10);
const VUS = parseInt(__ENV.VUS || '20', 10);

const granted = new Counter('tickets_granted');
const soldOut = new Counter('sold_out');
const other = new Counter('other_answers');

export const options = {
  scenarios: {
    race: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '60s' },
  },
  thresholds: {
    checks: ['rate==1'],
    other_answers: ['count==0'],
  },
};

function headers(extra) {
  const h = Object.assign({ 'Content-Type': 'application/json' }, extra || {});
  if (__ENV.KEY) h.Authorization = `Bearer ${__ENV.KEY}`;
  return { headers: h };
}

export function setup() {
  const pool = `k6-${Date.now()}`;
  const res = http.post(`${BASE}/v1/pools`, JSON.stringify({ id: pool, name: 'k6 race', capacity: TICKETS }), headers());
  if (res.status !== 201) fail(`creating the pool: ${res.status} ${res.body}`);
  return { pool };
}

export default function (data) {
  const buyer = `vu-${exec.vu.idInTest}`;
  // An Idempotency-Key makes a retried booking safe: it can never book twice.
  const res = http.post(`${BASE}/v1/bookings`,
    JSON.stringify({ holder: buyer, lines: [{ pool: data.pool, quantity: 1 }] }),
    headers({ 'Idempotency-Key': `${data.pool}-${buyer}` }));
  if (res.status === 201) granted.add(1);
  else if (res.status === 409 && res.json('code') === 'sold_out') soldOut.add(1);
  else other.add(1);
  check(res, { 'a ticket or a definite sold_out': (r) => r.status === 201 || (r.status === 409 && r.json('code') === 'sold_out') });
}

export function teardown(data) {
  const pool = http.get(`${BASE}/v1/pools/${data.pool}`, headers()).json();
  check(pool, {
    'sold exactly the capacity': (p) => p.confirmed === TICKETS,
    'nothing oversold': (p) => p.confirmed + p.held <= p.capacity,
  });
  console.log(`pool ${data.pool}: capacity ${pool.capacity}, confirmed ${pool.confirmed}, available ${pool.available}`);
}
