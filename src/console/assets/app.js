// The console's entry: find out which team we act as (GET /v1/team), asking for an API key when
// the service wants one, then route between the pages by the URL's hash (#/run, #/sandboxes/ID,
// ...). Each page gets an AbortSignal that fires when the user leaves it, ending its streams.

import { apiKey, get, onUnauthorized, setApiKey } from './api.js';
import { agentPage } from './agent.js';
import { attempt, errorLine, field, h } from './dom.js';
import { runPage } from './run.js';
import { sandboxesPage } from './sandboxes.js';
import { servicePage } from './service.js';

const PAGES = {
  run: ['Run', runPage],
  sandboxes: ['Sandboxes', sandboxesPage],
  agent: ['Agent runs', agentPage],
  service: ['Service', servicePage],
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const teamName = document.getElementById('team');
const signOut = document.getElementById('sign-out');
let page = null;

async function boot() {
  try {
    const team = await get('/v1/team');
    signedIn(team);
  } catch (e) {
    if (e.status === 401) askForKey(apiKey() ? e : null);
    else fatal(e);
  }
}

function signedIn(team) {
  teamName.textContent = team.name;
  who.hidden = false;
  signOut.hidden = team.auth !== 'api-key';
  nav.hidden = false;
  window.addEventListener('hashchange', route);
  route();
}

/** The key form; `why` is the API's refusal of the key tried last. */
function askForKey(why) {
  leave();
  window.removeEventListener('hashchange', route);
  setApiKey(null);
  nav.hidden = true;
  who.hidden = true;
  const errors = errorLine();
  const key = h('input', { type: 'password', testid: 'api-key', autocomplete: 'off', required: true, spellcheck: 'false' });
  const submit = async () => {
    setApiKey(key.value.trim());
    const team = await attempt(errors, () => get('/v1/team'));
    if (team) {
      main.replaceChildren();
      signedIn(team);
    } else {
      setApiKey(null);
      key.focus();
    }
  };
  main.replaceChildren(
    h('h1', {}, 'Sign in'),
    h('p', {}, 'This service needs an API key. It is kept in this browser tab only, until you close it or sign out.'),
    h(
      'form',
      { class: 'signin', onsubmit: (e) => { e.preventDefault(); submit(); } },
      field('API key', key, 'exb_… from `execbox keys create --team NAME`'),
      errors.el,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'api-key-submit' }, 'Sign in')),
    ),
  );
  if (why) errors.show(why);
  key.focus();
}

function fatal(e) {
  main.replaceChildren(h('h1', {}, 'The console cannot start'), h('p', { class: 'error', role: 'alert', testid: 'error' }, e.message));
}

function leave() {
  if (page) page.abort();
  page = null;
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const name = PAGES[parts[0]] ? parts[0] : 'run';
  const [title, render] = PAGES[name];
  leave();
  page = new AbortController();
  const { signal } = page;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${title} · execbox console`;
  main.replaceChildren();
  main.dataset.page = name;
  const errors = errorLine();
  await attempt(errors, () => render(main, signal, parts.slice(1)));
  if (errors.el.textContent && !signal.aborted) main.append(errors.el);
  if (signal.aborted) return;
  // Tell keyboard and screen-reader users where they are: focus the page's heading.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

onUnauthorized((e) => {
  if (!nav.hidden) askForKey(e);
});

signOut.addEventListener('click', () => askForKey(null));

boot();
