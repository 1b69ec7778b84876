// The Run page, and the run panel it shares with a sandbox: language, executor and policy (or
// the sandbox's, and a stateful context), code, stdin, arguments and limits; the output streams
// in as the program writes it (POST .../execute with Accept: text/event-stream), then the result.

import { loadCatalog, post, stream, del, get } from './api.js';
import { Editor } from './editor.js';
import { attempt, bytes, errorLine, field, h, ms, select, setOptions } from './dom.js';

const SAMPLES = {
  python: 'import sys\n\nname = sys.stdin.readline().strip() or "world"\nprint(f"hello, {name}", sys.argv[1:])\n',
  bash: 'read -r name\necho "hello, ${name:-world}" "$@"\n',
  javascript: 'const input = require("fs").readFileSync(0, "utf8").trim();\nconsole.log(`hello, ${input || "world"}`, process.argv.slice(2));\n',
  c: '#include <stdio.h>\n\nint main(int argc, char **argv) {\n    char name[64] = "world";\n    scanf("%63s", name);\n    printf("hello, %s (%d args)\\n", name, argc - 1);\n    return 0;\n}\n',
  cpp: '#include <iostream>\n#include <string>\n\nint main(int argc, char **argv) {\n    std::string name = "world";\n    std::cin >> name;\n    std::cout << "hello, " << name << " (" << argc - 1 << " args)\\n";\n}\n',
};

const LIMITS = [
  ['wall_time_ms', 'Wall time (ms)', ms],
  ['cpu_time_ms', 'CPU time (ms)', ms],
  ['memory_bytes', 'Memory (bytes)', bytes],
  ['pids', 'Processes', String],
  ['output_bytes', 'Output per stream (bytes)', bytes],
  ['disk_bytes', 'Disk (bytes)', bytes],
];

export async function runPage(main, signal) {
  main.append(h('h1', {}, 'Run code'));
  const catalog = await loadCatalog();
  if (signal.aborted) return;
  main.append(runPanel({ catalog, signal }).el);
}

/**
 * The run panel. Without `sandbox`, one-off runs (POST /v1/execute) with executor and policy
 * choices; with it, calls in that sandbox, optionally in one of its stateful contexts.
 */
export function runPanel({ catalog, sandbox = null, signal, runTestid = 'run' }) {
  const errors = errorLine();
  const language = select([], { testid: 'language' });
  const executor = select(
    catalog.executors.map((e) => [e, catalog.ready[e].ready ? e : `${e} (not ready)`]),
    { testid: 'executor' },
    'local',
  );
  const policy = select([], { testid: 'policy' });
  const context = select([], { testid: 'context' });
  const editor = new Editor({ label: 'Code', testid: 'code', onSubmit: () => start() });
  const stdin = h('textarea', { testid: 'stdin', rows: 3, spellcheck: 'false' });
  const args = h('textarea', { testid: 'args', rows: 2, spellcheck: 'false' });
  const limitInputs = Object.fromEntries(
    LIMITS.map(([name]) => [name, h('input', { type: 'number', testid: `limit-${name}`, inputmode: 'numeric' })]),
  );
  const limitHints = {};
  const runButton = h('button', { type: 'submit', class: 'primary', testid: runTestid }, 'Run');
  const stopButton = h('button', { type: 'button', testid: 'stop', disabled: true }, 'Stop');

  const status = h('output', { testid: 'status', class: 'status' }, 'not run yet');
  const facts = h('dl', { class: 'facts', testid: 'result' });
  const stdout = h('pre', { testid: 'stdout', class: 'out', tabindex: 0, 'aria-label': 'stdout' });
  const stderr = h('pre', { testid: 'stderr', class: 'out err', tabindex: 0, 'aria-label': 'stderr' });
  const extra = h('div', { class: 'extra' });

  const currentPolicy = () => {
    const name = sandbox ? sandbox.policy : policy.value;
    return catalog.policies.find((p) => p.name === name);
  };
  const currentExecutor = () => (sandbox ? sandbox.executor : executor.value);

  let lastSample = null;
  function refreshChoices() {
    const ex = currentExecutor();
    const langs = catalog.runtimes.filter((r) => r.executors.includes(ex));
    setOptions(
      language,
      langs.map((r) => [r.language, `${r.language} (${r.versions[ex]})`]),
      'python',
    );
    if (!sandbox) {
      setOptions(
        policy,
        catalog.policies.filter((p) => p.executors.includes(ex)).map((p) => [p.name, p.name]),
        'default',
      );
    }
    refreshLimits();
    refreshSample();
  }
  function refreshSample() {
    const sample = SAMPLES[language.value] || '';
    if (editor.value === '' || editor.value === lastSample) {
      editor.value = sample;
      lastSample = sample;
    }
  }
  function refreshLimits() {
    const p = currentPolicy();
    if (!p) return;
    for (const [name, , fmt] of LIMITS) {
      const input = limitInputs[name];
      const def = sandbox && name === 'disk_bytes' ? Math.min(p.defaults[name], p.maxima[name]) : p.defaults[name];
      const max = sandbox && name === 'disk_bytes' ? def : p.maxima[name];
      input.placeholder = String(def);
      input.min = String(catalog.minimums[name]);
      input.max = String(max);
      limitHints[name].textContent = `default ${fmt(def)}, at most ${fmt(max)}`;
    }
  }
  function refreshContextFields() {
    const stateful = context.value !== '';
    stdinField.hidden = stateful;
    argsField.hidden = stateful;
    if (stateful) setOptions(language, [['python', 'python (context)']]);
    else refreshChoices();
  }

  const limitFields = LIMITS.map(([name, label]) => {
    const f = field(label, limitInputs[name], ' ');
    limitHints[name] = f.querySelector('small');
    return f;
  });
  const stdinField = field('Stdin', stdin);
  const argsField = field('Arguments', args, 'one per line');
  const choices = [field('Language', language)];
  if (!sandbox) choices.push(field('Executor', executor), field('Policy', policy));
  else choices.push(contextControls());

  const form = h(
    'form',
    { class: 'run-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); start(); } },
    h('div', { class: 'row' }, choices),
    editor.el,
    h('div', { class: 'row' }, stdinField, argsField),
    h('details', { class: 'limits' }, h('summary', {}, 'Limits'), h('div', { class: 'row wrap' }, limitFields)),
    h('div', { class: 'actions' }, runButton, stopButton),
  );
  const output = h(
    'section',
    { class: 'run-output', 'aria-label': 'Output', 'aria-live': 'polite' },
    h('div', { class: 'status-line' }, h('span', {}, 'Status: '), status),
    errors.el,
    facts,
    h('h3', {}, 'stdout'),
    stdout,
    h('h3', {}, 'stderr'),
    stderr,
    extra,
  );

  executor.addEventListener('change', refreshChoices);
  policy.addEventListener('change', refreshLimits);
  language.addEventListener('change', refreshSample);
  context.addEventListener('change', refreshContextFields);
  refreshChoices();

  let controller = null;
  signal.addEventListener('abort', () => controller && controller.abort());

  function body() {
    const b = { language: language.value, code: editor.value };
    if (!sandbox) {
      b.executor = executor.value;
      b.policy = policy.value;
    }
    if (context.value) {
      b.context = context.value;
    } else {
      if (stdin.value) b.stdin = stdin.value;
      const list = args.value === '' ? [] : args.value.replace(/\n$/, '').split('\n');
      if (list.length) b.args = list;
    }
    const limits = {};
    for (const [name] of LIMITS) {
      const v = limitInputs[name].value.trim();
      if (v !== '') limits[name] = Number(v);
    }
    if (Object.keys(limits).length) b.limits = limits;
    return b;
  }

  async function start() {
    if (controller) return;
    controller = new AbortController();
    runButton.disabled = true;
    stopButton.disabled = false;
    stdout.textContent = '';
    stderr.textContent = '';
    facts.replaceChildren();
    extra.replaceChildren();
    status.textContent = 'running';
    status.dataset.state = 'running';
    const path = sandbox ? `/v1/sandboxes/${sandbox.id}/execute` : '/v1/execute';
    let ended = false;
    const ok = await attempt(errors, async () => {
      await stream('POST', path, {
        json: body(),
        signal: controller.signal,
        onEvent: (name, data) => {
          if (name === 'stdout') stdout.append(data.data);
          else if (name === 'stderr') stderr.append(data.data);
          else if (name === 'result') {
            ended = true;
            showResult(data);
          } else if (name === 'error') {
            ended = true;
            status.textContent = 'failed';
            status.dataset.state = 'failed';
            errors.show(data.error);
          }
        },
      });
      return true;
    });
    if (!ended) {
      const [state, text] = controller.signal.aborted
        ? ['cancelled', 'stopped (the run was cancelled)']
        : ok
          ? ['failed', 'the stream ended without a result']
          : ['refused', 'not run'];
      status.textContent = text;
      status.dataset.state = state;
    }
    controller = null;
    runButton.disabled = false;
    stopButton.disabled = true;
  }

  stopButton.addEventListener('click', () => controller && controller.abort());

  function showResult(r) {
    status.textContent = r.status;
    status.dataset.state = r.status;
    stdout.textContent = r.stdout;
    stderr.textContent = r.stderr;
    const fact = (label, value, testid) => [h('dt', {}, label), h('dd', { testid }, value)];
    facts.replaceChildren(
      ...fact('Exit code', r.exit_code === null ? '—' : String(r.exit_code), 'exit-code'),
      ...fact('Signal', r.signal || '—', 'signal'),
      ...fact('Wall time', ms(r.usage.wall_time_ms), 'wall-time'),
      ...fact('CPU time', ms(r.usage.cpu_time_ms), 'cpu-time'),
      ...fact('Peak memory', bytes(r.usage.peak_memory_bytes), 'peak-memory'),
      ...fact('Ran', `${r.runtime_version} · ${r.executor} · ${r.policy}`, 'ran'),
    );
    if (r.stdout_truncated || r.stderr_truncated) {
      extra.append(h('p', { class: 'muted' }, 'Output was cut at the run\'s output_bytes.'));
    }
    if (r.compile) {
      extra.append(
        h(
          'details',
          { open: r.status === 'compile_error' },
          h('summary', {}, `Compile step: ${r.compile.status}`),
          h('pre', { class: 'out' }, r.compile.stdout),
          h('pre', { class: 'out err' }, r.compile.stderr),
        ),
      );
    }
    for (const bundle of r.results || []) extra.append(displayBundle(bundle));
    if (r.error) {
      extra.append(h('h3', {}, `${r.error.name}: ${r.error.value}`), h('pre', { class: 'out err' }, r.error.traceback));
    }
  }

  function contextControls() {
    const ctxErrors = errorLine('context-error');
    const load = () =>
      attempt(ctxErrors, async () => {
        const { contexts } = await get(`/v1/sandboxes/${sandbox.id}/contexts`);
        setOptions(context, [['', 'none: a fresh process per call'], ...contexts.map((c) => [c.id, `${c.id} (${c.state})`])]);
        refreshContextFields();
      });
    const create = h('button', {
      type: 'button',
      testid: 'context-create',
      onclick: () =>
        attempt(ctxErrors, async () => {
          const c = await post(`/v1/sandboxes/${sandbox.id}/contexts`, { language: 'python' });
          await load();
          context.value = c.id;
          refreshContextFields();
        }),
    }, 'New Python context');
    const remove = h('button', {
      type: 'button',
      onclick: () =>
        context.value &&
        attempt(ctxErrors, async () => {
          await del(`/v1/sandboxes/${sandbox.id}/contexts/${context.value}`);
          context.value = '';
          await load();
        }),
    }, 'Delete context');
    setOptions(context, [['', 'none: a fresh process per call']]);
    load();
    return h('div', { class: 'context' }, field('Stateful context', context), h('div', { class: 'actions' }, create, remove), ctxErrors.el);
  }

  return { el: h('div', { class: 'run-panel' }, form, output), editor, start };
}

/** A context's display bundle: an image when there is one, else its text. */
function displayBundle(bundle) {
  if (bundle['image/png']) {
    return h('img', { src: `data:image/png;base64,${bundle['image/png']}`, alt: bundle['text/plain'] || 'a figure' });
  }
  return h('pre', { class: 'out result', testid: 'display' }, bundle['text/plain'] || JSON.stringify(bundle));
}
