// A code editor made for the console: a textarea with a gutter of line numbers. Tab and
// Shift+Tab indent and unindent (the line, or every selected line), Enter keeps the line's
// indentation (one level more after ':', '{', '(' or '['), Ctrl+Enter submits. Escape hands Tab
// back to the page for one press, so a keyboard user can always leave the editor.

import { h, uid } from './dom.js';

const INDENT = '    ';

export class Editor {
  /** `label` names the textarea; `onSubmit` runs on Ctrl+Enter (or Cmd+Enter). */
  constructor({ label, testid, value = '', rows = 12, onSubmit }) {
    this.onSubmit = onSubmit;
    this.escaped = false;
    const hintId = uid('edhint');
    this.textarea = h('textarea', {
      id: uid('code'),
      class: 'code-input',
      testid,
      rows,
      wrap: 'off',
      spellcheck: 'false',
      autocapitalize: 'off',
      autocomplete: 'off',
      'aria-describedby': hintId,
    });
    this.textarea.value = value;
    this.gutter = h('pre', { class: 'gutter', 'aria-hidden': 'true' });
    this.label = h('label', { for: this.textarea.id }, label);
    this.el = h(
      'div',
      { class: 'field' },
      this.label,
      h('div', { class: 'editor' }, this.gutter, this.textarea),
      h(
        'small',
        { class: 'hint', id: hintId },
        'Tab indents, Shift+Tab unindents; press Escape then Tab to leave the editor',
        onSubmit ? '; Ctrl+Enter runs.' : '.',
      ),
    );
    this.textarea.addEventListener('input', () => this.number());
    this.textarea.addEventListener('scroll', () => {
      this.gutter.scrollTop = this.textarea.scrollTop;
    });
    this.textarea.addEventListener('keydown', (e) => this.key(e));
    this.number();
  }

  get value() {
    return this.textarea.value;
  }

  set value(v) {
    this.textarea.value = v;
    this.number();
  }

  number() {
    const lines = this.textarea.value.split('\n').length;
    if (lines === this.lines) return;
    this.lines = lines;
    this.gutter.textContent = Array.from({ length: lines }, (_, i) => i + 1).join('\n');
  }

  key(e) {
    if (e.key === 'Escape') {
      this.escaped = true;
      return;
    }
    if (e.key === 'Tab' && !this.escaped && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      if (e.shiftKey) this.unindent();
      else this.indent();
    } else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (this.onSubmit) this.onSubmit();
    } else if (e.key === 'Enter' && !e.shiftKey && !e.altKey) {
      e.preventDefault();
      this.newline();
    }
    if (e.key !== 'Shift') this.escaped = false;
  }

  /** The text between start and end replaced, undoable where the browser allows. */
  replace(start, end, text, selectStart, selectEnd) {
    const ta = this.textarea;
    ta.setSelectionRange(start, end);
    // execCommand keeps the browser's undo history; setRangeText is the fallback.
    if (!document.execCommand('insertText', false, text)) {
      ta.setRangeText(text, start, end, 'end');
      ta.dispatchEvent(new Event('input', { bubbles: true }));
    }
    if (selectStart !== undefined) ta.setSelectionRange(selectStart, selectEnd);
  }

  /** The start of the line holding `pos`, and the end of the line holding `end`. */
  lineSpan(pos, end) {
    const v = this.textarea.value;
    const from = v.lastIndexOf('\n', pos - 1) + 1;
    let to = v.indexOf('\n', end);
    if (to < 0) to = v.length;
    return [from, to];
  }

  indent() {
    const ta = this.textarea;
    const { selectionStart: s, selectionEnd: e, value } = ta;
    if (value.slice(s, e).includes('\n')) {
      const [from, to] = this.lineSpan(s, e);
      const lines = value.slice(from, to).split('\n');
      const text = lines.map((l) => INDENT + l).join('\n');
      this.replace(from, to, text, s + INDENT.length, e + INDENT.length * lines.length);
      return;
    }
    const column = s - (value.lastIndexOf('\n', s - 1) + 1);
    this.replace(s, e, ' '.repeat(INDENT.length - (column % INDENT.length)));
  }

  unindent() {
    const ta = this.textarea;
    const { selectionStart: s, selectionEnd: e, value } = ta;
    const [from, to] = this.lineSpan(s, e);
    const lines = value.slice(from, to).split('\n');
    const cut = lines.map((l) => l.length - l.replace(/^ {1,4}|^\t/, '').length);
    if (cut.every((n) => n === 0)) return;
    const text = lines.map((l, i) => l.slice(cut[i])).join('\n');
    const total = cut.reduce((a, b) => a + b, 0);
    this.replace(from, to, text, Math.max(from, s - cut[0]), Math.max(from, e - total));
  }

  newline() {
    const { selectionStart: s, selectionEnd: e, value } = this.textarea;
    const [from] = this.lineSpan(s, s);
    const before = value.slice(from, s);
    let indent = before.match(/^[ \t]*/)[0];
    if (/[:{([]\s*$/.test(before)) indent += INDENT;
    this.replace(s, e, `\n${indent}`);
  }
}
