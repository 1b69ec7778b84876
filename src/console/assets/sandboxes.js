// The Sandboxes page: the team's sandboxes (create, keep alive, delete, filter by metadata), and
// one sandbox: its facts, its files, a run panel for calls in it, and its background processes.

import { del, get, loadCatalog, post } from './api.js';
import { attempt, errorLine, field, h, pairs, select, setOptions, table, time } from './dom.js';
import { filesSection } from './files.js';
import { processesSection } from './processes.js';
import { runPanel } from './run.js';

export async function sandboxesPage(main, signal, [id]) {
  const catalog = await loadCatalog();
  if (signal.aborted) return;
  if (id) await sandboxPage(main, signal, catalog, decodeURIComponent(id));
  else listPage(main, catalog);
}

function listPage(main, catalog) {
  const errors = errorLine();
  const list = h('div', { testid: 'sandbox-list', 'aria-live': 'polite' });
  const filter = h('input', { type: 'text', testid: 'sandbox-filter', placeholder: 'project=demo' });

  async function refresh() {
    await attempt(errors, async () => {
      const query = Object.entries(pairs(filter.value, 'filter'))
        .map(([k, v]) => `metadata.${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join('&');
      const { sandboxes } = await get(`/v1/sandboxes${query ? `?${query}` : ''}`);
      list.replaceChildren(
        sandboxes.length === 0
          ? h('p', { class: 'muted' }, 'No sandboxes.')
          : table(
              ['Sandbox', 'Executor', 'Policy', 'Created', 'Expires', 'Metadata', 'Actions'],
              sandboxes.map((sb) => row(sb)),
            ),
      );
    });
  }

  function row(sb) {
    return h(
      'tr',
      { testid: 'sandbox-row', 'data-id': sb.id },
      h('td', {}, h('a', { href: `#/sandboxes/${sb.id}`, class: 'mono' }, sb.id)),
      h('td', {}, sb.executor),
      h('td', {}, sb.policy),
      h('td', {}, time(sb.created_at)),
      h('td', {}, time(sb.expires_at)),
      h('td', {}, metadata(sb.metadata)),
      h(
        'td',
        { class: 'actions' },
        h('button', {
          type: 'button',
          testid: 'sandbox-keepalive',
          'aria-label': `Keep ${sb.id} alive`,
          onclick: () => attempt(errors, async () => { await post(`/v1/sandboxes/${sb.id}/keepalive`, {}); await refresh(); }),
        }, 'Keep alive'),
        deleteButton(sb.id, errors, refresh),
      ),
    );
  }

  main.append(
    h('h1', {}, 'Sandboxes'),
    createForm(catalog, errors, refresh),
    h(
      'form',
      { class: 'row compact', onsubmit: (e) => { e.preventDefault(); refresh(); } },
      field('Filter by metadata', filter, 'KEY=VALUE, one pair per line, all must match'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')),
    ),
    errors.el,
    list,
  );
  refresh();
}

function createForm(catalog, errors, refresh) {
  const executor = select(catalog.executors, { testid: 'sandbox-executor' }, 'local');
  const policy = select([], { testid: 'sandbox-policy' });
  const ttl = h('input', { type: 'number', min: 1, value: '3600', testid: 'sandbox-ttl' });
  const idle = h('input', { type: 'number', min: 1, testid: 'sandbox-idle' });
  const metadata = h('textarea', { rows: 2, testid: 'sandbox-metadata', placeholder: 'project=demo' });
  const env = h('textarea', { rows: 2, testid: 'sandbox-env', placeholder: 'GREETING=hello' });
  const policies = () =>
    setOptions(policy, catalog.policies.filter((p) => p.executors.includes(executor.value)).map((p) => p.name), 'default');
  executor.addEventListener('change', policies);
  policies();
  const create = () =>
    attempt(errors, async () => {
      const body = {
        ttl_seconds: Number(ttl.value),
        executor: executor.value,
        policy: policy.value,
        metadata: pairs(metadata.value, 'metadata'),
        env: pairs(env.value, 'env'),
      };
      if (idle.value.trim()) body.idle_timeout_seconds = Number(idle.value);
      await post('/v1/sandboxes', body);
      await refresh();
    });
  return h(
    'details',
    { class: 'card', open: true },
    h('summary', {}, 'New sandbox'),
    h(
      'form',
      { novalidate: true, onsubmit: (e) => { e.preventDefault(); create(); } },
      h(
        'div',
        { class: 'row wrap' },
        field('Executor', executor),
        field('Policy', policy),
        field('TTL (seconds)', ttl),
        field('Idle timeout (seconds)', idle, 'optional'),
      ),
      h('div', { class: 'row' }, field('Metadata', metadata, 'KEY=VALUE per line'), field('Environment', env, 'KEY=VALUE per line, for every call')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'sandbox-create' }, 'Create sandbox')),
    ),
  );
}

function metadata(m) {
  const entries = Object.entries(m || {});
  if (!entries.length) return '—';
  return h('ul', { class: 'chips' }, entries.map(([k, v]) => h('li', {}, `${k}=${v}`)));
}

/** Delete, after a second press within five seconds (no dialog to get in the way). */
function deleteButton(id, errors, done) {
  let armed = null;
  const button = h('button', { type: 'button', class: 'danger', testid: 'sandbox-delete', 'aria-label': `Delete ${id}` }, 'Delete');
  button.addEventListener('click', () => {
    if (!armed) {
      button.textContent = 'Really delete?';
      armed = setTimeout(() => {
        armed = null;
        button.textContent = 'Delete';
      }, 5000);
      return;
    }
    clearTimeout(armed);
    attempt(errors, async () => {
      await del(`/v1/sandboxes/${id}`);
      await done();
    });
  });
  return button;
}

async function sandboxPage(main, signal, catalog, id) {
  const errors = errorLine();
  main.append(h('p', {}, h('a', { href: '#/sandboxes' }, '← All sandboxes')), h('h1', { class: 'mono' }, id), errors.el);
  const sb = await attempt(errors, () => get(`/v1/sandboxes/${encodeURIComponent(id)}`));
  if (!sb || signal.aborted) return;
  const facts = h('dl', { class: 'facts', testid: 'sandbox-facts' });
  const ttl = h('input', { type: 'number', min: 1, testid: 'keepalive-ttl', placeholder: 'its own TTL' });
  const show = (s) =>
    facts.replaceChildren(
      ...[
        ['Executor', s.executor],
        ['Policy', s.policy],
        ['State', s.state],
        ['Created', time(s.created_at)],
        ['Expires', time(s.expires_at)],
        ['Last used', time(s.last_used_at)],
        ['Idle timeout', s.idle_timeout_seconds === null ? '—' : `${s.idle_timeout_seconds} s`],
        ['Metadata', metadata(s.metadata)],
      ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    );
  show(sb);
  const keepalive = () =>
    attempt(errors, async () => {
      const body = ttl.value.trim() ? { ttl_seconds: Number(ttl.value) } : {};
      show(await post(`/v1/sandboxes/${id}/keepalive`, body));
    });
  main.append(
    facts,
    h(
      'form',
      { class: 'row compact', novalidate: true, onsubmit: (e) => { e.preventDefault(); keepalive(); } },
      field('Keep alive for (seconds)', ttl),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', testid: 'sandbox-keepalive' }, 'Keep alive'),
        deleteButton(id, errors, () => { location.hash = '#/sandboxes'; }),
      ),
    ),
    h('nav', { class: 'jump', 'aria-label': 'Sections' }, jump('files', 'Files'), jump('run', 'Run'), jump('processes', 'Processes')),
    filesSection(sb, signal),
    h('section', { id: 'run', 'aria-labelledby': 'run-h' }, h('h2', { id: 'run-h' }, 'Run in this sandbox'), runPanel({ catalog, sandbox: sb, signal, runTestid: 'sandbox-run' }).el),
    processesSection(sb, signal),
  );
}


/** A link to a section of this page that leaves the route (the hash) alone. */
function jump(target, label) {
  return h('a', {
    href: `#${target}`,
    onclick: (e) => {
      e.preventDefault();
      const section = document.getElementById(target);
      section.scrollIntoView();
      section.querySelector('h2').focus();
    },
  }, label);
}
