// Small DOM helpers shared by the pages: an element builder, labelled fields, the error line,
// and formatting of sizes and times. Text always goes in as text, never as HTML.

/**
 * h('button', {type: 'button', onclick: f, testid: 'run'}, 'Run'): an element. `testid` sets
 * data-testid; `on*` attach listeners; `class`, `text` and known properties (value, checked,
 * disabled, hidden, ...) are set as such; anything else becomes an attribute. Children may be
 * nodes, strings, or arrays of them; null and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'testid') el.dataset.testid = v;
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (['value', 'checked', 'disabled', 'hidden', 'selected', 'open'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

let counter = 0;

/** A fresh id for tying a label to its control. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled field: the label names the control (for keyboard and screen-reader users). */
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  const parts = [h('label', { for: control.id }, label), control];
  if (hint) {
    const hintEl = h('small', { id: uid('hint'), class: 'hint' }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
    parts.push(hintEl);
  }
  return h('div', { class: 'field' }, parts);
}

/** A labelled checkbox. */
export function checkbox(label, attrs = {}) {
  const box = h('input', { type: 'checkbox', id: uid('c'), ...attrs });
  return { box, el: h('div', { class: 'check' }, box, h('label', { for: box.id }, label)) };
}

/** A <select> of [value, label] pairs (or plain values), on `prefer` when it is offered. */
export function select(options, attrs = {}, prefer = undefined) {
  const el = h('select', attrs);
  setOptions(el, options, prefer);
  return el;
}

/** Replace a select's options, keeping its choice when it is still offered, else `prefer`. */
export function setOptions(sel, options, prefer) {
  const before = sel.value;
  sel.replaceChildren(
    ...options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value }, label);
    }),
  );
  const offered = (v) => [...sel.options].some((o) => o.value === v);
  if (offered(before)) sel.value = before;
  else if (prefer !== undefined && offered(prefer)) sel.value = prefer;
}

/** The place a section shows the API's error message, announced to screen readers. */
export function errorLine(testid = 'error') {
  const el = h('p', { class: 'error', role: 'alert', testid, hidden: true });
  return {
    el,
    show(err) {
      el.textContent = err && err.message ? err.message : String(err);
      el.hidden = false;
    },
    clear() {
      el.textContent = '';
      el.hidden = true;
    },
  };
}

/** Run `action`, showing its failure in `errors`; an aborted request is not a failure. */
export async function attempt(errors, action) {
  errors.clear();
  try {
    return await action();
  } catch (e) {
    if (e.name !== 'AbortError') errors.show(e);
    return undefined;
  }
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0).replace(/\.0$/, '')} ${units[i]}`;
}

export function ms(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1000) return `${n} ms`;
  return n % 1000 === 0 ? `${n / 1000} s` : `${(n / 1000).toFixed(2)} s`;
}

/** An RFC 3339 time in the browser's zone, to the second; the exact value on hover. */
export function time(iso) {
  if (!iso) return h('span', {}, '—');
  const d = new Date(iso);
  const text = Number.isNaN(d.getTime())
    ? iso
    : d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  return h('time', { datetime: iso, title: iso }, text);
}

/** A table in a wrapper that scrolls sideways on a narrow screen (the page never does). */
export function table(head, rows, attrs = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows),
    ),
  );
}

/** KEY=VALUE lines as an object; a line without '=' is an error naming it. */
export function pairs(text, what) {
  const out = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${what}: "${line}" is not KEY=VALUE`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  return out;
}

/** Save a Blob as a file, the way a link with `download` does. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
