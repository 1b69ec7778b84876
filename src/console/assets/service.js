// The Service page: the team and its quota use, each executor's readiness, the runtimes with
// their versions, and the policies with their limits.

import { get, loadCatalog } from './api.js';
import { attempt, bytes, errorLine, h, ms, table } from './dom.js';

const LIMITS = [
  ['wall_time_ms', 'wall', ms],
  ['cpu_time_ms', 'CPU', ms],
  ['memory_bytes', 'memory', bytes],
  ['pids', 'pids', String],
  ['output_bytes', 'output', bytes],
  ['disk_bytes', 'disk', bytes],
];

export async function servicePage(main, signal) {
  const errors = errorLine();
  main.append(h('h1', {}, 'Service'), errors.el);
  const [team, catalog] = (await attempt(errors, () => Promise.all([get('/v1/team', { signal }), loadCatalog(true)]))) || [];
  if (!team || signal.aborted) return;
  main.append(
    section('Team', 'service-team', teamView(team)),
    section('Executors', 'service-executors', executors(catalog.ready)),
    section('Runtimes', 'service-runtimes', runtimes(catalog)),
    section('Policies', 'service-policies', policies(catalog)),
  );
}

function section(title, testid, ...content) {
  const id = `${testid}-h`;
  return h('section', { testid, 'aria-labelledby': id }, h('h2', { id }, title), content);
}

function teamView(team) {
  const rows = [
    ['Concurrent runs', team.quotas.concurrent_runs, 'quotas.max_concurrent_runs_per_team'],
    ['Sandboxes', team.quotas.sandboxes, 'quotas.max_sandboxes_per_team'],
    ['Agent runs working', team.quotas.agent_runs, 'agent.max_concurrent_runs_per_team'],
  ];
  return [
    h('p', {}, 'Acting as team ', h('strong', { testid: 'service-team-name' }, team.name), ` (auth: ${team.auth}).`),
    table(
      ['Quota', 'Used', 'Limit', 'Setting'],
      rows.map(([label, q, key]) =>
        h(
          'tr',
          { testid: 'quota-row' },
          h('th', { scope: 'row' }, label),
          h('td', { testid: 'quota-used' }, String(q.used)),
          h('td', { testid: 'quota-limit' }, q.limit === null ? 'unlimited' : String(q.limit)),
          h('td', { class: 'mono' }, key),
        ),
      ),
    ),
  ];
}

function executors(ready) {
  return h('div', { class: 'cards' }, Object.entries(ready).map(([name, r]) =>
    h(
      'article',
      { class: 'card executor', testid: 'executor-card', 'data-executor': name },
      h(
        'h3',
        {},
        name,
        ' ',
        h('span', { class: `badge ${r.ready ? 'ok' : 'bad'}`, testid: 'executor-ready' }, r.ready ? (r.degraded ? 'ready, degraded' : 'ready') : 'not ready'),
      ),
      r.detail ? h('p', {}, r.detail) : null,
      h('details', {}, h('summary', {}, 'Features'), features(r.features)),
    ),
  ));
}

function features(f) {
  if (!f || typeof f !== 'object') return h('p', { class: 'muted' }, 'none reported');
  return h(
    'dl',
    { class: 'facts' },
    Object.entries(f).flatMap(([k, v]) => [
      h('dt', {}, k),
      h('dd', { class: 'mono' }, typeof v === 'object' ? JSON.stringify(v) : String(v)),
    ]),
  );
}

function runtimes(catalog) {
  return table(
    ['Language', 'Aliases', ...catalog.executors, 'Image'],
    catalog.runtimes.map((r) =>
      h(
        'tr',
        { testid: 'runtime-row', 'data-language': r.language },
        h('th', { scope: 'row' }, r.language),
        h('td', {}, r.aliases.join(', ') || '—'),
        catalog.executors.map((e) => h('td', { 'data-executor': e }, r.versions[e] || '—')),
        h('td', { class: 'mono' }, r.image || '—'),
      ),
    ),
  );
}

function policies(catalog) {
  const limits = (l) => LIMITS.map(([k, label, fmt]) => `${label} ${fmt(l[k])}`).join(' · ');
  return [
    table(
      ['Policy', 'Executors', 'Defaults', 'Maxima'],
      catalog.policies.map((p) =>
        h(
          'tr',
          { testid: 'policy-row', 'data-policy': p.name },
          h('th', { scope: 'row' }, p.name, h('br'), h('small', { class: 'muted' }, p.description)),
          h('td', {}, p.executors.join(', ')),
          h('td', {}, limits(p.defaults)),
          h('td', { testid: 'policy-maxima' }, limits(p.maxima)),
        ),
      ),
    ),
    h('p', { class: 'muted' }, `Every run may ask for at least: ${limits(catalog.minimums)}.`),
  ];
}
