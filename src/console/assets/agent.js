// The Agent runs page: start a run, the team's past runs, and one run followed live from its
// event stream (every message so far, then each new one, model replies as they stream), with
// approval of a held block and cancelling.

import { del, get, loadCatalog, post, stream } from './api.js';
import { attempt, checkbox, errorLine, field, h, ms, select, setOptions, table, time } from './dom.js';

const ENDED = ['finished', 'failed', 'cancelled'];

export async function agentPage(main, signal, [id]) {
  if (id) {
    await runPage(main, signal, decodeURIComponent(id));
    return;
  }
  const catalog = await loadCatalog();
  if (signal.aborted) return;
  main.append(h('h1', {}, 'Agent runs'), startForm(catalog), pastRuns(signal));
}

function startForm(catalog) {
  const errors = errorLine();
  const provider = select([['openai', 'OpenAI-compatible'], ['anthropic', 'Anthropic']], { testid: 'agent-provider' });
  const model = h('input', { type: 'text', testid: 'agent-model', value: 'gpt-4o-mini', spellcheck: 'false', required: true });
  const baseUrl = h('input', { type: 'url', testid: 'agent-base-url', placeholder: 'https://api.openai.com/v1', spellcheck: 'false' });
  const keyEnv = h('input', { type: 'text', testid: 'agent-key-env', placeholder: 'OPENAI_API_KEY', spellcheck: 'false' });
  const key = h('input', { type: 'password', testid: 'agent-key', autocomplete: 'off' });
  const task = h('textarea', { testid: 'agent-task', rows: 4, required: true });
  const maxTurns = h('input', { type: 'number', min: 1, testid: 'agent-max-turns', placeholder: 'the service default' });
  const executor = select(catalog.executors, { testid: 'agent-executor' }, 'local');
  const policy = select([], { testid: 'agent-policy' });
  const sandbox = select([['', 'a new one, deleted at the end']], { testid: 'agent-sandbox' });
  const critic = checkbox('Critic: a second model reviews each round', { testid: 'agent-critic' });
  const approval = checkbox('Approval: hold every block until I approve it', { testid: 'agent-approval' });
  const stateful = checkbox('Stateful: Python blocks share one interpreter', { testid: 'agent-stateful' });
  const streamed = checkbox('Stream the model\'s replies', { testid: 'agent-stream', checked: true });

  const defaults = {
    openai: ['gpt-4o-mini', 'https://api.openai.com/v1', 'OPENAI_API_KEY'],
    anthropic: ['claude-sonnet-4-5', 'https://api.anthropic.com', 'ANTHROPIC_API_KEY'],
  };
  provider.addEventListener('change', () => {
    const [m, url, env] = defaults[provider.value];
    if (Object.values(defaults).some(([dm]) => dm === model.value)) model.value = m;
    baseUrl.placeholder = url;
    keyEnv.placeholder = env;
  });
  const policies = () =>
    setOptions(policy, catalog.policies.filter((p) => p.executors.includes(executor.value)).map((p) => p.name), 'default');
  executor.addEventListener('change', policies);
  policies();
  get('/v1/sandboxes')
    .then(({ sandboxes }) =>
      setOptions(sandbox, [['', 'a new one, deleted at the end'], ...sandboxes.map((s) => [s.id, `${s.id} (${s.executor})`])]))
    .catch((e) => errors.show(e));
  const fresh = () => {
    executor.disabled = sandbox.value !== '';
    policy.disabled = sandbox.value !== '';
  };
  sandbox.addEventListener('change', fresh);

  const start = () =>
    attempt(errors, async () => {
      const m = { provider: provider.value, model: model.value.trim(), stream: streamed.box.checked };
      if (baseUrl.value.trim()) m.base_url = baseUrl.value.trim();
      if (key.value) m.api_key = key.value;
      else if (keyEnv.value.trim()) m.api_key_env = keyEnv.value.trim();
      const body = { task: task.value, model: m, require_approval: approval.box.checked, stateful: stateful.box.checked };
      if (maxTurns.value.trim()) body.max_turns = Number(maxTurns.value);
      if (critic.box.checked) body.critic = {};
      if (sandbox.value) body.sandbox_id = sandbox.value;
      else {
        body.executor = executor.value;
        body.policy = policy.value;
      }
      const run = await post('/v1/agent/runs', body);
      location.hash = `#/agent/${run.id}`;
    });

  return h(
    'details',
    { class: 'card', open: true },
    h('summary', {}, 'New agent run'),
    h(
      'form',
      { novalidate: true, onsubmit: (e) => { e.preventDefault(); start(); } },
      field('Task', task, 'what the coder should do'),
      h(
        'div',
        { class: 'row wrap' },
        field('Provider', provider),
        field('Model', model),
        field('Base URL', baseUrl, 'empty: the provider\'s own'),
        field('API key variable', keyEnv, 'a variable of the service\'s environment that the operator allows'),
        field('API key', key, 'or your own key: sent with this run only, never stored'),
      ),
      h(
        'div',
        { class: 'row wrap' },
        field('Max turns', maxTurns),
        field('Sandbox', sandbox),
        field('Executor', executor),
        field('Policy', policy),
      ),
      h('div', { class: 'row wrap checks' }, critic.el, approval.el, stateful.el, streamed.el),
      errors.el,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'agent-start' }, 'Start run')),
    ),
  );
}

function pastRuns(signal) {
  const errors = errorLine('runs-error');
  const list = h('div', { testid: 'agent-runs' });
  const refresh = () =>
    attempt(errors, async () => {
      const { runs } = await get('/v1/agent/runs?limit=50', { signal });
      list.replaceChildren(
        runs.length === 0
          ? h('p', { class: 'muted' }, 'No agent runs yet.')
          : table(
              ['Run', 'State', 'Stop reason', 'Model', 'Tokens in / out / total', 'Turns', 'Started'],
              runs.map((r) =>
                h(
                  'tr',
                  { testid: 'agent-run-row', 'data-id': r.id },
                  h('td', {}, h('a', { href: `#/agent/${r.id}`, class: 'mono' }, r.id)),
                  h('td', { testid: 'agent-run-state' }, r.state),
                  h('td', {}, r.stop_reason || r.error || '—'),
                  h('td', {}, `${r.model.provider}:${r.model.model}`),
                  h('td', { testid: 'agent-run-tokens' }, tokens(r.usage)),
                  h('td', {}, String(r.usage.turns)),
                  h('td', {}, time(r.created_at)),
                ),
              ),
            ),
      );
    });
  refresh();
  return h(
    'section',
    { 'aria-labelledby': 'past-h' },
    h('h2', { id: 'past-h' }, 'Past runs'),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: refresh }, 'Refresh')),
    errors.el,
    list,
  );
}

function tokens(u) {
  return `${u.input_tokens} / ${u.output_tokens} / ${u.total_tokens}${u.estimated ? ' (estimated)' : ''}`;
}

async function runPage(main, signal, id) {
  const errors = errorLine();
  const state = h('output', { testid: 'agent-state', class: 'status' }, '…');
  const facts = h('dl', { class: 'facts', testid: 'agent-facts' });
  const messages = h('ol', { class: 'messages', testid: 'agent-messages', 'aria-live': 'polite' });
  const live = h('div', { class: 'live', testid: 'agent-delta', 'aria-hidden': 'true' });
  const cancel = h('button', { type: 'button', class: 'danger', testid: 'agent-cancel' }, 'Cancel run');
  main.append(
    h('p', {}, h('a', { href: '#/agent' }, '← All agent runs')),
    h('h1', { class: 'mono' }, id),
    h('div', { class: 'status-line' }, h('span', {}, 'State: '), state),
    facts,
    h('div', { class: 'actions' }, cancel),
    errors.el,
    h('h2', {}, 'Messages'),
    messages,
    live,
  );

  let view = null;
  const showView = (v) => {
    view = v;
    state.textContent = v.awaiting_approval && !ENDED.includes(v.state) ? `${v.state}, awaiting approval` : v.state;
    state.dataset.state = v.state;
    cancel.hidden = ENDED.includes(v.state);
    const sandbox = v.sandbox_id ? h('a', { href: `#/sandboxes/${v.sandbox_id}`, class: 'mono' }, v.sandbox_id) : '—';
    facts.replaceChildren(
      ...[
        ['Stop reason', v.stop_reason || '—', 'agent-stop-reason'],
        ['Error', v.error || '—', 'agent-error'],
        ['Model', `${v.model.provider}:${v.model.model}${v.model.base_url ? ` at ${v.model.base_url}` : ''}`],
        ['Tokens in / out / total', tokens(v.usage), 'agent-tokens'],
        ['Turns, executions', `${v.usage.turns}, ${v.usage.executions}`],
        ['Sandbox', v.executor ? [sandbox, ` (${v.executor}, ${v.policy})`] : sandbox],
        ['Started', time(v.created_at)],
        ['Ended', time(v.ended_at)],
      ].flatMap(([k, val, testid]) => [h('dt', {}, k), h('dd', { testid }, val)]),
    );
    updateApprovals();
  };
  // Views are asked for on every message; only the newest asked for is shown.
  let asked = 0;
  const reload = () =>
    attempt(errors, async () => {
      asked += 1;
      const mine = asked;
      const v = await get(`/v1/agent/runs/${encodeURIComponent(id)}`, { signal });
      if (mine === asked) showView(v);
    });

  cancel.addEventListener('click', () =>
    attempt(errors, async () => {
      showView(await del(`/v1/agent/runs/${encodeURIComponent(id)}`));
    }));

  // Approval buttons belong to the last request, and only while the run still holds it.
  const approvals = [];
  function updateApprovals() {
    approvals.forEach((a, i) => {
      a.hidden = !(view && view.awaiting_approval && i === approvals.length - 1 && !ENDED.includes(view.state));
    });
  }
  function approvalControls() {
    const comment = h('input', { type: 'text', testid: 'agent-approval-comment' });
    const decide = (approved) =>
      attempt(errors, async () => {
        const body = { approved };
        if (comment.value.trim()) body.comment = comment.value.trim();
        await post(`/v1/agent/runs/${encodeURIComponent(id)}/approval`, body);
        box.hidden = true;
        await reload();
      });
    const box = h(
      'div',
      { class: 'approval', hidden: true },
      field('Comment (passed to the model)', comment),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'primary', testid: 'agent-approve', onclick: () => decide(true) }, 'Approve'),
        h('button', { type: 'button', class: 'danger', testid: 'agent-reject', onclick: () => decide(false) }, 'Reject'),
      ),
    );
    approvals.push(box);
    return box;
  }

  function render(m) {
    const head = h('div', { class: 'msg-head' }, h('strong', {}, m.source), ' · ', m.type.replace(/_/g, ' '), ' · ', time(m.at));
    const body = [];
    if (m.type === 'task' || m.type === 'text') {
      body.push(richText(m.content));
      if (m.usage) body.push(h('small', { class: 'muted' }, `${m.usage.input_tokens} in, ${m.usage.output_tokens} out`));
    } else if (m.type === 'code_execution') {
      const r = m.result;
      body.push(
        code(m.language, m.code),
        h('p', { testid: 'agent-result' }, `${r.status} · exit code ${r.exit_code === null ? '—' : r.exit_code}${r.signal ? ` · ${r.signal}` : ''} · ${ms(r.usage.wall_time_ms)}`),
      );
      if (r.stdout) body.push(h('pre', { class: 'out', testid: 'agent-stdout' }, r.stdout));
      if (r.stderr) body.push(h('pre', { class: 'out err' }, r.stderr));
      if (r.compile && r.compile.stderr) body.push(h('pre', { class: 'out err' }, r.compile.stderr));
    } else if (m.type === 'code_not_run') {
      body.push(code(m.language, m.code), h('p', {}, `Not run: ${m.reason}`));
    } else if (m.type === 'model_retry') {
      body.push(h('p', {}, `The endpoint failed (${m.reason}); attempt ${m.attempt} of ${m.max_attempts} in ${ms(m.delay_ms)}.`));
    } else if (m.type === 'approval_request') {
      body.push(code(m.language, m.code), approvalControls());
    } else if (m.type === 'approval_decision') {
      body.push(h('p', { testid: 'agent-decision' }, m.approved ? 'Approved' : 'Rejected', m.comment ? `: ${m.comment}` : ''));
    } else {
      body.push(h('pre', { class: 'out' }, JSON.stringify(m, null, 2)));
    }
    return h('li', { class: `msg ${m.source}`, testid: 'agent-message', 'data-type': m.type }, head, body);
  }

  await reload();
  if (!view || signal.aborted) return;
  // The stream replays every message, then follows; it ends with the run (not awaited: the
  // page is ready as soon as it follows).
  attempt(errors, () =>
    stream('GET', `/v1/agent/runs/${encodeURIComponent(id)}/events`, {
      signal,
      onEvent: (name, data) => {
        if (name === 'message') {
          live.replaceChildren();
          messages.append(render(data));
          updateApprovals();
          if (!ENDED.includes(view.state)) reload();
        } else if (name === 'delta') {
          if (!live.firstChild) live.append(h('div', { class: 'msg-head' }, h('strong', {}, data.source), ' · writing…'), h('div', { class: 'text' }));
          live.lastChild.append(data.text);
        } else if (name === 'end') {
          live.replaceChildren();
          reload();
        }
      },
    }));
}

function code(language, text) {
  return h('figure', { class: 'code' }, h('figcaption', {}, language), h('pre', { class: 'out' }, h('code', {}, text)));
}

/** A model's text with its fenced blocks shown as code, the rest as it was written. */
function richText(content) {
  const parts = [];
  const fence = /```([\w+#-]*)[^\n]*\n([\s\S]*?)```/g;
  let at = 0;
  for (let m = fence.exec(content); m; m = fence.exec(content)) {
    const before = content.slice(at, m.index).trim();
    if (before) parts.push(h('div', { class: 'text' }, before));
    parts.push(code(m[1] || 'code', m[2].replace(/\n$/, '')));
    at = fence.lastIndex;
  }
  const rest = content.slice(at).trim();
  if (rest || !parts.length) parts.push(h('div', { class: 'text' }, rest));
  return parts;
}
