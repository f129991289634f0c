// The README's flow through the TypeScript client, against a real holdfast
// server this test starts: pool, hold, sold_out on line 0, confirm, a
// replay under an Idempotency-Key, the event stream and its resume. It
// also regenerates the types from the server's /openapi.json and fails
// when src/schema.d.ts differs: an API change reaches the client's types
// (and this file's type check) or the test says so.

import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

import { holdfast, HoldfastError, type Hold, type HoldEvent } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/test
const pkg = join(here, "..", "..");
const repo = join(pkg, "..", "..");
const adminKey = "typescript-client-test-admin-key";

let server: ChildProcess;
let base = "";
let dir = "";

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "holdfast-ts-"));
  // HOLDFAST_BIN is the binary scripts/test.sh built; alone, build one.
  let bin = process.env.HOLDFAST_BIN ?? "";
  if (!bin) {
    bin = join(dir, "holdfast");
    execFileSync("go", ["build", "-o", bin, "./cmd/holdfast"], { cwd: repo, stdio: "inherit" });
  }
  server = spawn(bin, ["serve", "--addr", "127.0.0.1:0", "--db", join(dir, "holdfast.db"), "--admin-key", adminKey],
    { stdio: ["ignore", "pipe", "ignore"] });
  const lines = createInterface({ input: server.stdout! });
  base = await new Promise<string>((resolve, reject) => {
    server.once("exit", (code) => reject(new Error(`holdfast serve exited ${code} before listening`)));
    lines.on("line", (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
});

after(() => {
  server?.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the generated types are the server's API", async () => {
  const ast = await openapiTS(new URL("/openapi.json", base));
  const fresh = COMMENT_HEADER + astToString(ast);
  const committed = readFileSync(join(pkg, "src", "schema.d.ts"), "utf8");
  assert.equal(committed, fresh, "src/schema.d.ts is not what /openapi.json generates: run `npm run generate` against a current server");
});

test("the README's flow", async () => {
  const sent: Request[] = [];
  const recording: typeof fetch = async (input, init) => {
    const req = new Request(input, init);
    sent.push(req.clone());
    return fetch(req);
  };
  const hf = holdfast({ baseUrl: base, key: adminKey, fetch: recording });

  const { data: pool } = await hf.api.POST("/v1/pools", { body: { id: "gala", name: "Gala", capacity: 10, per_holder_limit: 5 } });
  assert.equal(pool?.capacity, 10);
  assert.equal(pool?.offer_ttl_seconds, 600, "a pool shows the offer TTL in force");

  const { data: alice } = await hf.api.POST("/v1/holds", { body: { holder: "alice", lines: [{ pool: "gala", quantity: 2 }] } });
  assert.equal(alice?.status, "held");
  // Every POST went out with an Idempotency-Key, though the caller gave none.
  assert.ok(sent.filter((r) => r.method === "POST").every((r) => r.headers.get("Idempotency-Key")), "a POST without an Idempotency-Key");

  const { data: after2 } = await hf.api.GET("/v1/pools/{id}", { params: { path: { id: "gala" } } });
  assert.equal(after2?.available, 8);

  const { data: bob } = await hf.api.POST("/v1/bookings", { body: { holder: "bob", lines: [{ pool: "gala", quantity: 5 }] } });
  assert.equal(bob?.status, "confirmed");

  // carol's four: only three remain. A typed exception, naming the line.
  await assert.rejects(
    hf.api.POST("/v1/holds", { body: { holder: "carol", lines: [{ pool: "gala", quantity: 4 }] } }),
    (err: unknown) => err instanceof HoldfastError && err.code === "sold_out" && err.line === 0 && err.status === 409,
  );

  // Paid: the payment is recorded with the confirm.
  const { data: confirmed } = await hf.api.POST("/v1/holds/{id}/confirm", {
    params: { path: { id: alice!.id! } }, body: { payment: { ref: "pi_1", amount: 5000, currency: "EUR" } },
  });
  assert.equal(confirmed?.status, "confirmed");
  const { data: paid } = await hf.api.GET("/v1/payments/{ref}", { params: { path: { ref: "pi_1" } } });
  assert.equal(paid?.status, "captured");
  assert.equal(paid?.hold_id, alice!.id);

  // A replay under one key: the same answer, one hold; another request
  // under the key is refused.
  const key = { "Idempotency-Key": "order-42" };
  const first = await hf.api.POST("/v1/holds", { headers: key, body: { holder: "dave", lines: [{ pool: "gala", quantity: 1 }] } });
  const again = await hf.api.POST("/v1/holds", { headers: key, body: { holder: "dave", lines: [{ pool: "gala", quantity: 1 }] } });
  assert.equal(again.data?.id, first.data?.id);
  await assert.rejects(
    hf.api.POST("/v1/holds", { headers: key, body: { holder: "erin", lines: [{ pool: "gala", quantity: 1 }] } }),
    (err: unknown) => err instanceof HoldfastError && err.code === "idempotency_mismatch",
  );
  const { data: holds } = await hf.api.GET("/v1/holds", { params: { query: { holder: "dave" } } });
  assert.equal(holds?.holds?.length, 1, "a replayed POST made a second hold");

  // The stream from the start, then resumed after the third event: the
  // fourth comes next, none twice.
  const all: HoldEvent[] = [];
  const ac = new AbortController();
  for await (const e of hf.events({ after: "0", signal: ac.signal })) {
    all.push(e);
    if (e.type === "hold.confirmed" && e.hold_id === alice!.id) break;
  }
  ac.abort();
  assert.deepEqual(all.map((e) => e.type).slice(0, 3), ["pool.created", "hold.created", "hold.created"]);
  const resumed = hf.events({ after: all[2].cursor });
  const next = await resumed.next();
  await resumed.return(undefined);
  assert.equal((next.value as HoldEvent).seq, all[3].seq);
  const held = all[1].data as unknown as Hold;
  assert.equal(held.lines?.[0].pool, "gala");
});

test("a client key is refused what only the admin may do", async () => {
  const admin = holdfast({ baseUrl: base, key: adminKey });
  const { data: k } = await admin.api.POST("/v1/keys", { body: { name: "shop" } });
  const shop = holdfast({ baseUrl: base, key: k!.key! });
  await assert.rejects(shop.api.POST("/v1/pools", { body: { id: "x", capacity: 1 } }),
    (err: unknown) => err instanceof HoldfastError && err.code === "forbidden");
  const nobody = holdfast({ baseUrl: base });
  await assert.rejects(nobody.api.GET("/v1/pools"), (err: unknown) => err instanceof HoldfastError && err.code === "unauthorized");
});
