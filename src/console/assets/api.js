// The console's only way to the service: the public HTTP API, with the session's key. Errors
// become ApiError carrying the API's own code and message. Event streams are read from a fetch
// body, since EventSource cannot send an Authorization header.

const KEY = 'execbox.apiKey';

/** The API key of this browser session (sessionStorage: gone when the tab is closed). */
export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

/** Called with the ApiError of every 401, so the app can ask for a key again. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

function headersWith(extra) {
  const headers = new Headers(extra || {});
  const key = apiKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  return headers;
}

/** The API's error answer as an ApiError (any body that is not one says so). */
async function errorOf(resp) {
  let code = `http_${resp.status}`;
  let message = `the service answered HTTP ${resp.status} ${resp.statusText}`.trim();
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  const err = new ApiError(resp.status, code, message);
  if (resp.status === 401) unauthorized(err);
  return err;
}

async function send(method, path, { json, body, headers, signal } = {}) {
  const init = { method, headers: headersWith(headers), signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers.set('Content-Type', 'application/json');
  } else if (body !== undefined) {
    init.body = body;
  }
  try {
    return await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', `the service could not be reached (${e.message})`);
  }
}

/**
 * One API call. Answers the parsed JSON (null for 204), or the Response itself with `raw`.
 * `accept` lists non-2xx statuses whose JSON body is an answer, not an error (`/readyz`'s 503).
 */
export async function call(method, path, options = {}) {
  const resp = await send(method, path, options);
  if (!resp.ok && !(options.accept || []).includes(resp.status)) throw await errorOf(resp);
  if (options.raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

export const get = (path, options) => call('GET', path, options);
export const post = (path, json, options = {}) => call('POST', path, { ...options, json });
export const del = (path, options) => call('DELETE', path, options);

/**
 * Follow an event stream: `onEvent(name, data)` for each event, data parsed as JSON. Resolves
 * when the stream ends; rejects with ApiError when the request is refused, or AbortError when
 * `signal` aborts (which, for a run, cancels it).
 */
export async function stream(method, path, { json, signal, onEvent }) {
  const resp = await send(method, path, {
    json,
    signal,
    headers: { Accept: 'text/event-stream' },
  });
  if (!resp.ok) throw await errorOf(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent);
    }
  }
}

function dispatch(block, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue; // a keepalive comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length) onEvent(name, JSON.parse(data.join('\n')));
}

/** A path segment or a file path for a URL: each segment percent-encoded, slashes kept. */
export function pathOf(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

let catalog = null;

/** What the forms offer: runtimes, policies and executors' readiness, fetched once. */
export function loadCatalog(fresh = false) {
  if (!catalog || fresh) {
    catalog = Promise.all([
      get('/v1/runtimes'),
      get('/v1/policies'),
      get('/readyz', { accept: [503] }),
    ]).then(([r, p, ready]) => ({
      runtimes: r.runtimes,
      policies: p.policies,
      minimums: p.minimums,
      executors: Object.keys(ready.executors).sort(),
      ready: ready.executors,
    }));
    catalog.catch(() => {
      catalog = null;
    });
  }
  return catalog;
}
