// A sandbox's background processes: start one, list them, follow one's logs as they come
// (GET .../logs as an event stream), kill one.

import { del, get, post, stream } from './api.js';
import { attempt, errorLine, field, h, pairs, table, time } from './dom.js';

/** A command line: a JSON array as is, else words split at spaces. */
function argv(text) {
  const t = text.trim();
  if (t.startsWith('[')) return JSON.parse(t);
  return t.split(/\s+/).filter(Boolean);
}

export function processesSection(sb, signal) {
  const base = `/v1/sandboxes/${sb.id}/processes`;
  const errors = errorLine('processes-error');
  const list = h('div', { testid: 'process-list', 'aria-live': 'polite' });
  const logs = h('div', { class: 'logs' });
  const command = h('input', { type: 'text', testid: 'process-command', placeholder: 'python3 -m http.server 8000', spellcheck: 'false' });
  const cwd = h('input', { type: 'text', testid: 'process-cwd', placeholder: 'the work dir' });
  const env = h('textarea', { rows: 1, testid: 'process-env', placeholder: 'PORT=8000' });
  let following = null;

  async function refresh() {
    await attempt(errors, async () => {
      const { processes } = await get(base, { signal });
      list.replaceChildren(
        processes.length === 0
          ? h('p', { class: 'muted' }, 'No background processes.')
          : table(['Process', 'Command', 'State', 'Exit', 'Started', ''], processes.map(row)),
      );
    });
  }

  function row(p) {
    const ended = p.state !== 'running';
    return h(
      'tr',
      { testid: 'process-row', 'data-id': p.id },
      h('td', { class: 'mono' }, p.id),
      h('td', { class: 'mono' }, p.command.join(' ')),
      h('td', {}, p.state),
      h('td', {}, ended ? (p.signal || String(p.exit_code)) : ''),
      h('td', {}, time(p.started_at)),
      h(
        'td',
        { class: 'actions' },
        h('button', { type: 'button', testid: 'process-logs', onclick: () => follow(p) }, 'Logs'),
        h('button', {
          type: 'button',
          class: 'danger',
          testid: 'process-kill',
          'aria-label': `Kill ${p.id}`,
          onclick: () => attempt(errors, async () => { await del(`${base}/${p.id}`); await refresh(); }),
        }, ended ? 'Remove' : 'Kill'),
      ),
    );
  }

  async function follow(p) {
    if (following) following.abort();
    following = new AbortController();
    const out = h('pre', { class: 'out', testid: 'process-stdout', tabindex: 0, 'aria-label': `stdout of ${p.id}` });
    const err = h('pre', { class: 'out err', testid: 'process-stderr', tabindex: 0, 'aria-label': `stderr of ${p.id}` });
    const state = h('p', { class: 'muted', testid: 'process-state', role: 'status' }, 'following…');
    logs.replaceChildren(h('h3', {}, `Logs of ${p.id}`), state, h('h4', {}, 'stdout'), out, h('h4', {}, 'stderr'), err);
    const mine = following;
    await attempt(errors, async () => {
      await stream('GET', `${base}/${p.id}/logs`, {
        signal: mine.signal,
        onEvent: (name, data) => {
          if (name === 'stdout') out.append(data.data);
          else if (name === 'stderr') err.append(data.data);
          else if (name === 'end') {
            state.textContent = data
              ? `exited: ${data.signal || `exit code ${data.exit_code}`}`
              : 'the process is gone';
          } else if (name === 'error') errors.show(data.error);
        },
      });
    });
    if (following === mine) refresh();
  }
  signal.addEventListener('abort', () => following && following.abort());

  const start = () =>
    attempt(errors, async () => {
      const body = { command: argv(command.value) };
      if (cwd.value.trim()) body.cwd = cwd.value.trim();
      const vars = pairs(env.value, 'env');
      if (Object.keys(vars).length) body.env = vars;
      const p = await post(base, body);
      await refresh();
      follow(p);
    });

  refresh();
  return h(
    'section',
    { id: 'processes', 'aria-labelledby': 'processes-h' },
    h('h2', { id: 'processes-h', tabindex: -1 }, 'Background processes'),
    h(
      'form',
      { class: 'row wrap', novalidate: true, onsubmit: (e) => { e.preventDefault(); start(); } },
      field('Command', command, 'words split at spaces, or a JSON array'),
      field('Working dir', cwd),
      field('Environment', env, 'KEY=VALUE per line'),
      h('div', { class: 'actions' }, h('button', { type: 'submit', testid: 'process-start' }, 'Start'), h('button', { type: 'button', onclick: refresh }, 'Refresh')),
    ),
    errors.el,
    list,
    logs,
  );
}
