// A TypeScript client for holdfast's HTTP API.
//
// The request and response types are generated from the server's
// /openapi.json (src/schema.d.ts, by openapi-typescript) and the calls are
// openapi-fetch's: `client.api.POST("/v1/holds", { body })` is checked
// against the API at compile time. This file adds only what generation
// cannot: an Idempotency-Key on every POST (and a retry under the same key
// when the answer is lost or the server is busy), problem+json answers
// thrown as HoldfastError with their code and line, and an event stream
// that resumes where it left off.

import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";
export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
/** A stable error code: "sold_out", "limit_exceeded", "admission_required", … */
export type Code = Problem["code"];
export type Pool = Schemas["Pool"];
export type Hold = Schemas["Hold"];
export type Payment = Schemas["Payment"];
export type HoldEvent = Schemas["Event"];

/** A problem+json answer, thrown by every call that gets one. */
export class HoldfastError extends Error {
  readonly code: Code;
  readonly status: number;
  /** The failing hold line, in request order (sold_out on line 0, …). */
  readonly line?: number;
  /** On admission_required: the waiting room to join. */
  readonly room?: string;
  /** false on a late confirm refused under if_available. */
  readonly reclaimable?: boolean;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "HoldfastError";
    this.problem = problem;
    this.code = problem.code;
    this.status = problem.status;
    this.line = problem.line;
    this.room = problem.room;
    this.reclaimable = problem.reclaimable;
  }
}

export interface Options {
  /** The server, e.g. "http://127.0.0.1:8080". */
  baseUrl: string;
  /** An API key (client or admin); none on a server in open mode. */
  key?: string;
  /**
   * Attempts of one call when the answer is lost (a network error) or the
   * server says 503 busy (after its Retry-After, at most maxRetryWait):
   * a POST is sent again under the same Idempotency-Key, so it takes
   * effect once. Default 3; 1 turns retries off.
   */
  attempts?: number;
  maxRetryWait?: number;
  fetch?: typeof globalThis.fetch;
}

export interface Holdfast {
  /** The typed API: api.GET("/v1/pools/{id}", { params: { path: { id } } }). */
  api: Client<paths>;
  /** The outbox as events, resuming after a disconnect (admin key). */
  events(opts?: EventOptions): AsyncGenerator<HoldEvent>;
}

export interface EventOptions {
  /** Start after this cursor; "0" replays from the start. Default: from now. */
  after?: string;
  /** Only these event types. */
  types?: string[];
  signal?: AbortSignal;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

/** Creates a client. */
export function holdfast(opts: Options): Holdfast {
  const baseFetch = opts.fetch ?? globalThis.fetch;
  const attempts = Math.max(1, opts.attempts ?? 3);
  const maxWait = opts.maxRetryWait ?? 5000;
  const auth: Record<string, string> = opts.key ? { Authorization: `Bearer ${opts.key}` } : {};

  // Every POST carries an Idempotency-Key (the caller's, or a new one);
  // a lost answer or a 503 is retried with the same key.
  const retrying = async (request: Request): Promise<Response> => {
    if (request.method === "POST" && !request.headers.has("Idempotency-Key")) {
      request.headers.set("Idempotency-Key", crypto.randomUUID());
    }
    for (let i = 1; ; i++) {
      try {
        const res = await baseFetch(request.clone());
        if (res.status !== 503 || i >= attempts) return res;
        const after = Number(res.headers.get("Retry-After") ?? "1");
        await res.body?.cancel();
        await sleep(Math.min(maxWait, (Number.isFinite(after) ? after : 1) * 1000), request.signal);
      } catch (err) {
        if (i >= attempts || request.signal?.aborted) throw err;
        await sleep(Math.min(maxWait, 100 * 2 ** i), request.signal);
      }
    }
  };

  const problems: Middleware = {
    async onResponse({ response }) {
      if (response.ok) return undefined;
      const type = response.headers.get("Content-Type") ?? "";
      if (type.includes("json")) {
        const body = (await response.clone().json()) as Partial<Problem>;
        if (body && typeof body.code === "string") throw new HoldfastError(body as Problem);
      }
      throw new HoldfastError({
        type: "about:blank", title: response.statusText, status: response.status,
        code: response.status >= 500 ? "internal" : "invalid",
        detail: `holdfast answered ${response.status}`,
      });
    },
  };

  const api = createClient<paths>({ baseUrl: opts.baseUrl, headers: auth, fetch: retrying });
  api.use(problems);

  async function* events(eo: EventOptions = {}): AsyncGenerator<HoldEvent> {
    let cursor = eo.after;
    let failures = 0;
    while (!eo.signal?.aborted) {
      const url = new URL("/v1/events/stream", opts.baseUrl);
      if (eo.types?.length) url.searchParams.set("types", eo.types.join(","));
      const headers: Record<string, string> = { ...auth, Accept: "text/event-stream" };
      // Start, or resume, after the last event seen: the server sends
      // what came after it (from its memory, or from the database), none
      // twice and none skipped.
      if (cursor) headers["Last-Event-ID"] = cursor;
      let res: Response;
      try {
        res = await baseFetch(url, { headers, signal: eo.signal });
      } catch (err) {
        if (eo.signal?.aborted) return;
        if (++failures > 5) throw err;
        await sleep(Math.min(maxWait, 200 * 2 ** failures), eo.signal);
        continue;
      }
      if (!res.ok || !res.body) {
        const body = (await res.json().catch(() => ({}))) as Partial<Problem>;
        if (typeof body.code === "string") throw new HoldfastError(body as Problem);
        throw new HoldfastError({ type: "about:blank", title: res.statusText, status: res.status, code: "internal" });
      }
      failures = 0;
      const decoder = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
          let end: number;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let id: string | undefined;
            const data: string[] = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("id:")) id = line.slice(3).trimStart();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (data.length === 0) continue; // a comment, a keep-alive, retry:
            const event = JSON.parse(data.join("\n")) as HoldEvent;
            if (id) cursor = id;
            yield event;
          }
        }
      } catch {
        if (eo.signal?.aborted) return;
        // The connection broke mid-stream: reconnect from the last id.
      }
    }
  }

  return { api, events };
}
