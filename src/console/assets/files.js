// A sandbox's file browser: the recursive listing, a text file opened in the editor and saved
// back, uploads of files and of a tar, downloads of a file and of the whole work dir.

import { call, get, pathOf } from './api.js';
import { Editor } from './editor.js';
import { attempt, bytes, errorLine, field, h, saveBlob, table } from './dom.js';

/** The largest file opened in the editor; larger ones are for downloading. */
const EDITABLE = 2 * 1024 * 1024;

export function filesSection(sb, signal) {
  const base = `/v1/sandboxes/${sb.id}`;
  const errors = errorLine('files-error');
  const list = h('div', { testid: 'file-list', 'aria-live': 'polite' });
  const pane = h('div', { class: 'file-pane', testid: 'file-pane' });
  const notice = h('p', { class: 'muted', testid: 'file-status', role: 'status' });

  const urlOf = (entry) =>
    `${base}/files/${pathOf(entry.path)}${entry.path_encoding === 'percent' ? '?path_encoding=percent' : ''}`;

  async function refresh() {
    await attempt(errors, async () => {
      const { files } = await get(`${base}/files`, { signal });
      list.replaceChildren(
        files.length === 0
          ? h('p', { class: 'muted' }, 'The work dir is empty.')
          : table(['Path', 'Type', 'Size', ''], files.map(row)),
      );
    });
  }

  function row(entry) {
    const name = entry.path + (entry.type === 'dir' ? '/' : '');
    const shown = entry.path_encoding === 'percent' ? h('span', { title: 'not UTF-8: shown percent-encoded' }, name, ' ⚠') : name;
    const isFile = entry.type === 'file';
    return h(
      'tr',
      { testid: 'file-row', 'data-path': entry.path },
      h('td', { class: 'mono' }, isFile ? h('button', { type: 'button', class: 'link', testid: 'file-open', onclick: () => open(entry) }, shown) : shown),
      h('td', {}, entry.type),
      h('td', {}, isFile ? bytes(entry.size) : ''),
      h('td', {}, isFile ? h('button', { type: 'button', testid: 'file-download', 'aria-label': `Download ${entry.path}`, onclick: () => download(entry) }, 'Download') : ''),
    );
  }

  async function download(entry) {
    await attempt(errors, async () => {
      const resp = await call('GET', urlOf(entry), { raw: true });
      saveBlob(await resp.blob(), entry.path.split('/').pop());
    });
  }

  async function open(entry) {
    await attempt(errors, async () => {
      if (entry.size > EDITABLE) {
        showBinary(entry, `${bytes(entry.size)}: too large to edit here`);
        return;
      }
      const resp = await call('GET', urlOf(entry), { raw: true });
      const raw = await resp.arrayBuffer();
      let text;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
      } catch {
        showBinary(entry, `${bytes(raw.byteLength)} that are not UTF-8 text`);
        return;
      }
      showEditor(entry, text);
    });
  }

  function showBinary(entry, why) {
    pane.replaceChildren(
      h('h3', { class: 'mono' }, entry.path),
      h('p', {}, `This file is ${why}. `),
      h('button', { type: 'button', onclick: () => download(entry) }, 'Download'),
    );
  }

  function showEditor(entry, text) {
    const editor = new Editor({ label: `Contents of ${entry.path}`, testid: 'file-content', value: text, rows: 14 });
    const save = () =>
      attempt(errors, async () => {
        const written = await call('PUT', urlOf(entry), { body: editor.value, raw: false });
        notice.textContent = `Saved ${written.path} (${bytes(written.size)}).`;
        await refresh();
      });
    editor.onSubmit = save;
    pane.replaceChildren(
      h('h3', { class: 'mono' }, entry.path),
      editor.el,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'primary', testid: 'file-save', onclick: save }, 'Save'),
        h('button', { type: 'button', testid: 'file-editor-download', onclick: () => download(entry) }, 'Download'),
        h('button', { type: 'button', onclick: () => pane.replaceChildren() }, 'Close'),
      ),
    );
    notice.textContent = '';
  }

  // Uploads: files into a folder, or a tar unpacked over the work dir.
  const dir = h('input', { type: 'text', testid: 'upload-dir', placeholder: 'the work dir' });
  const upload = h('input', { type: 'file', multiple: true, testid: 'file-upload' });
  upload.addEventListener('change', () =>
    attempt(errors, async () => {
      const folder = dir.value.trim().replace(/^\/+|\/+$/g, '');
      for (const f of upload.files) {
        const path = folder ? `${folder}/${f.name}` : f.name;
        const written = await call('PUT', `${base}/files/${pathOf(path)}`, { body: f });
        notice.textContent = `Uploaded ${written.path} (${bytes(written.size)}).`;
      }
      upload.value = '';
      await refresh();
    }),
  );
  const tar = h('input', { type: 'file', accept: '.tar,application/x-tar', testid: 'archive-upload' });
  tar.addEventListener('change', () =>
    attempt(errors, async () => {
      await call('POST', `${base}/archive`, { body: tar.files[0], headers: { 'Content-Type': 'application/x-tar' } });
      notice.textContent = `Unpacked ${tar.files[0].name}.`;
      tar.value = '';
      await refresh();
    }),
  );
  const newPath = h('input', { type: 'text', testid: 'new-file-path', placeholder: 'notes/todo.txt' });
  const create = () => {
    const path = newPath.value.trim();
    if (path) showEditor({ path, path_encoding: 'utf-8' }, '');
  };

  refresh();
  return h(
    'section',
    { id: 'files', 'aria-labelledby': 'files-h' },
    h('h2', { id: 'files-h', tabindex: -1 }, 'Files'),
    h(
      'div',
      { class: 'row wrap toolbar' },
      field('Upload into folder', dir, 'empty: the work dir'),
      field('Upload files', upload),
      field('Upload a tar', tar, 'unpacked over the work dir'),
      h(
        'form',
        { class: 'inline', onsubmit: (e) => { e.preventDefault(); create(); } },
        field('New file', newPath),
        h('button', { type: 'submit', testid: 'new-file' }, 'Edit new file'),
      ),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', testid: 'files-refresh', onclick: refresh }, 'Refresh'),
      h('button', {
        type: 'button',
        testid: 'archive-download',
        onclick: () =>
          attempt(errors, async () => {
            const resp = await call('GET', `${base}/archive`, { raw: true });
            saveBlob(await resp.blob(), `${sb.id}.tar`);
          }),
      }, 'Download all (tar)'),
    ),
    errors.el,
    notice,
    h('div', { class: 'files' }, list, pane),
  );
}
