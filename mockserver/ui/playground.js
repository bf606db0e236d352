// The playground: drives the mock's chat API as a browser frontend does (fetch, and a
// ReadableStream line reader for the NDJSON stream) and its control API (same origin).
'use strict';

// The fault kinds of X-Mock-Fault and their parameters (docs/scripts.md, "Faults").
// A test checks that these name every fault the server knows.
const FAULTS = [
  { kind: 'drop_after_records', label: 'drop the connection', params: [['drop_after_records', 'after records', 2]] },
  { kind: 'upstream_error', label: 'upstream error', params: [['upstream_error_after_chunks', 'after chunks', 3]] },
  { kind: 'stall', label: 'stall', params: [['stall_seconds', 'seconds', 2], ['stall_after_chunks', 'before chunk', 0]] },
  {
    kind: 'malformed_line', label: 'malformed line',
    params: [['malformed_line_after_records', 'after records', 1], ['malformed_line', 'line (optional)', '']],
  },
  { kind: 'first_byte_delay', label: 'first byte delay', params: [['first_byte_delay_ms', 'ms', 2000]] },
];
const JOURNAL_POLL_MS = 1000;
const TITLE_PROMPT = 'Give this conversation a short title';

const $ = (selector) => document.querySelector(selector);
const state = { users: [], user: null, threads: [], thread: null, messages: [], streaming: null };

/** An element with text and attributes: the page never puts server data into innerHTML. */
function el(tag, text = '', attributes = {}) {
  const node = document.createElement(tag);
  if (text !== '') node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function notice(text, isError = false) {
  const node = $('#notice');
  node.textContent = text;
  node.classList.toggle('error', isError);
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/** The chat API as the selected user. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Authorization: `Token ${state.user.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: response.status, ok: response.ok, data: parseJson(await response.text()) };
}

/** The control API: same origin, so its origin guard lets the page through. */
async function control(path, method = 'GET', body = undefined) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/__mock__/${path}`, init);
  const data = parseJson(await response.text());
  if (!response.ok) throw new Error(`${method} /__mock__/${path}: ${response.status} ${JSON.stringify(data)}`);
  return data;
}

// -- users, profile, session ----------------------------------------------------------------

async function loadUsers() {
  state.users = (await control('users')).users;
  const select = $('#user');
  select.replaceChildren(...state.users.map((u, i) => el('option', `${u.username} (${u.role})`, { value: String(i) })));
  state.user = state.users[0];
}

async function loadProfile() {
  const health = await control('health');
  $('#profile').textContent = health.profile ?? `Waldur ${health.spec_version}`;
}

async function loadSession() {
  const { ok, status, data } = await api('/api/chat-sessions/current/');
  const list = $('#session');
  list.replaceChildren();
  if (!ok) {
    list.append(el('dt', `HTTP ${status}`), el('dd', JSON.stringify(data)));
    return;
  }
  for (const key of ['uuid', 'user_username', 'created', 'modified']) list.append(el('dt', key), el('dd', data[key]));
}

// -- threads and messages ---------------------------------------------------------------------

async function loadThreads() {
  const { ok, data, status } = await api('/api/chat-threads/?o=-created&page_size=100');
  state.threads = ok ? data : [];
  if (!ok) notice(`threads: HTTP ${status} ${JSON.stringify(data)}`, true);
  const list = $('#threads');
  list.replaceChildren(...state.threads.map(threadItem));
}

function threadItem(thread) {
  const item = el('li', '', { 'data-uuid': thread.uuid });
  item.classList.toggle('selected', thread.uuid === state.thread?.uuid);
  item.classList.toggle('archived', thread.is_archived);
  const name = el('button', thread.name || '(untitled)', { type: 'button', class: 'link' });
  name.addEventListener('click', () => selectThread(thread.uuid));
  const meta = el('small', ` ${thread.message_count} messages${thread.is_archived ? ' · archived' : ''}`);
  const action = thread.is_archived ? 'unarchive' : 'archive';
  const toggle = el('button', action === 'archive' ? 'Archive' : 'Unarchive', { type: 'button', class: action });
  toggle.addEventListener('click', () => setArchived(thread.uuid, action));
  item.append(name, meta, toggle);
  return item;
}

async function setArchived(uuid, action) {
  const { status, data } = await api(`/api/chat-threads/${uuid}/${action}/`, { method: 'POST' });
  notice(status === 204 ? `${action}d ${uuid}` : `${action}: HTTP ${status} ${JSON.stringify(data)}`, status !== 204);
  await loadThreads();
}

async function selectThread(uuid) {
  state.thread = { uuid, name: '' };
  await loadThreads(); // marks the selection and brings the thread's current name
  state.thread = state.threads.find((t) => t.uuid === uuid) ?? state.thread;
  await loadMessages();
}

async function loadMessages() {
  $('#thread-name').textContent = state.thread ? state.thread.name || state.thread.uuid : '(new thread)';
  const list = $('#messages');
  if (!state.thread) {
    state.messages = [];
    list.replaceChildren(el('li', 'Nothing yet: Send starts a new thread.', { class: 'hint' }));
    return;
  }
  const query = `thread=${state.thread.uuid}&include_history=true&page_size=200`;
  const { ok, data, status } = await api(`/api/chat-messages/?${query}`);
  state.messages = ok ? [...data].sort((a, b) => a.sequence_index - b.sequence_index) : [];
  if (!ok) notice(`messages: HTTP ${status} ${JSON.stringify(data)}`, true);
  const replaced = new Set(state.messages.map((m) => m.replaces).filter(Boolean));
  list.replaceChildren(...state.messages.map((m) => messageItem(m, replaced.has(m.uuid))));
}

function messageItem(message, isReplaced) {
  const item = el('li', '', { class: `message ${message.role}`, 'data-uuid': message.uuid });
  item.classList.toggle('replaced', isReplaced);
  const tags = [`#${message.sequence_index}`, message.role];
  if (isReplaced) tags.push('replaced');
  if (message.replaces) tags.push(`replaces ${message.replaces.slice(0, 8)}`);
  item.append(el('small', tags.join(' · ')), el('div', message.content || '(empty)', { class: 'content' }));
  return item;
}

/** The active rows (not replaced), newest last. */
function activeMessages() {
  const replaced = new Set(state.messages.map((m) => m.replaces).filter(Boolean));
  return state.messages.filter((m) => !replaced.has(m.uuid));
}

// -- composer ---------------------------------------------------------------------------------

function faultHeader() {
  const fault = FAULTS.find((f) => f.kind === $('#fault').value);
  if (!fault) return '';
  const items = [];
  for (const [name] of fault.params) {
    const value = document.getElementById(`fault-${name}`).value.trim();
    if (value !== '') items.push(`${name}=${value}`);
  }
  return items.join(',');
}

function renderFaultParams() {
  const fault = FAULTS.find((f) => f.kind === $('#fault').value);
  const holder = $('#fault-params');
  holder.replaceChildren();
  for (const [name, label, initial] of fault?.params ?? []) {
    const field = el('label', `${label} `);
    field.append(el('input', '', { id: `fault-${name}`, value: String(initial), size: '6', title: name }));
    holder.append(field);
  }
}

/** The body of POST /api/chat/stream/ for the chosen action, or an explanation why there is none. */
function requestBody() {
  const input = $('#input').value.trim();
  const mode = $('#mode').value;
  const thread = state.thread?.uuid;
  if (mode === 'message') return input ? { input, ...(thread ? { thread_uuid: thread } : {}) } : 'Type a message first.';
  if (!thread) return 'Pick a thread first.';
  const active = activeMessages();
  if (mode === 'reload') {
    const lastUser = active.filter((m) => m.role === 'user').at(-1);
    return { input: input || lastUser?.content || 'again', thread_uuid: thread, mode: 'reload' };
  }
  if (mode === 'edit') {
    const lastUser = active.filter((m) => m.role === 'user').at(-1);
    if (!lastUser) return 'This thread has no user message to edit.';
    if (!input) return 'Type the new text of the last user message.';
    return { input, thread_uuid: thread, mode: 'edit', edit_message_uuid: lastUser.uuid };
  }
  return { input: input || TITLE_PROMPT, update_thread_name: thread };
}

async function send(event) {
  event.preventDefault();
  const body = requestBody();
  if (typeof body === 'string') {
    notice(body, true);
    return;
  }
  const headers = { Authorization: `Token ${state.user.token}`, 'Content-Type': 'application/json', Accept: 'application/json' };
  if ($('#scenario').value) headers['X-Mock-Scenario'] = $('#scenario').value;
  const fault = faultHeader();
  if (fault) headers['X-Mock-Fault'] = fault;
  const shown = Object.entries(headers).filter(([name]) => name.startsWith('X-Mock'));
  $('#request-line').textContent = `POST /api/chat/stream/ ${JSON.stringify(body)} ${shown.map((h) => h.join(': ')).join(' ')}`;
  notice('');
  const controller = new AbortController();
  state.streaming = controller;
  $('#send').disabled = true;
  $('#stop').disabled = false;
  try {
    const outcome = await readStream('/api/chat/stream/', { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal }, new StreamView(!body.update_thread_name));
    await afterStream(outcome, body);
  } finally {
    state.streaming = null;
    $('#send').disabled = false;
    $('#stop').disabled = true;
  }
}

// -- the stream -------------------------------------------------------------------------------

/**
 * Reads an NDJSON response the way homeport does: fetch, then a line reader over the body's
 * ReadableStream (a record split across chunks waits for its end). Every line goes to `view`
 * with its arrival time. Resolves with what happened; never throws.
 */
async function readStream(url, init, view) {
  const started = performance.now();
  const since = () => Math.round(performance.now() - started);
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    return view.finish({ kind: 'network', message: String(error) }, since());
  }
  view.headers(response.status, since());
  if (!response.ok) return view.finish({ kind: 'http', status: response.status, body: parseJson(await response.text()) }, since());
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  try {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      const lines = (pending + chunk.value).split('\n');
      pending = lines.pop();
      for (const line of lines) view.line(line, since());
    }
  } catch (error) {
    return view.finish({ kind: error.name === 'AbortError' ? 'aborted' : 'cut', message: String(error), pending }, since());
  }
  return view.finish({ kind: 'ended', pending }, since());
}

const RECORD_LABELS = { markdown: 'markdown', load: 'load', code: 'code', mermaid: 'mermaid', table: 'table' };

function recordLabel(record) {
  if (typeof record !== 'object' || record === null) return 'not a record';
  if ('m' in record) return record.m.thread_uuid ? 'm (thread)' : 'm (message uuids)';
  if ('e' in record) return 'e (error)';
  if ('k' in record) return RECORD_LABELS[record.k] ? `${record.k}${record.t ? ` ${record.t}` : ''}` : `k=${record.k}`;
  if ('c' in record) return 'c (raw output)';
  return 'unknown';
}

/** What one stream shows: the rendered records, the timeline and the raw lines. */
class StreamView {
  /** `expectsFinalM`: false for a title call, which never sends `m` records. */
  constructor(expectsFinalM) {
    this.expectsFinalM = expectsFinalM;
    this.records = [];
    this.markdown = null;
    this.loading = null;
    $('#rendered').replaceChildren();
    $('#timeline tbody').replaceChildren();
    $('#track').replaceChildren();
    $('#afterwards').textContent = '';
    $('#timeline-summary').textContent = '';
    this.status('waiting for the response…', 'pending');
  }

  status(text, kind) {
    const node = $('#stream-status');
    node.textContent = text;
    node.className = kind;
  }

  headers(status, at) {
    this.status(`HTTP ${status} after ${at} ms, reading…`, 'pending');
  }

  line(raw, at) {
    if (raw.trim() === '') return;
    const record = parseJson(raw);
    const isRecord = typeof record === 'object' && record !== null;
    const gap = this.records.length ? at - this.records.at(-1).at : at;
    this.records.push({ record: isRecord ? record : null, at });
    this.render(isRecord ? record : null, raw);
    this.timelineRow(this.records.length, at, gap, isRecord ? recordLabel(record) : 'not JSON (skipped)', raw);
    this.summarize();
  }

  render(record, raw) {
    const out = $('#rendered');
    if (record === null) {
      out.append(el('div', `unparseable line: ${raw}`, { class: 'record bad' }));
      return;
    }
    if (record.k === 'markdown') {
      if (!this.markdown) {
        this.markdown = el('div', '', { class: 'record markdown' });
        out.append(this.markdown);
      }
      this.markdown.textContent += record.c;
      return;
    }
    this.markdown = null;
    if (record.k === 'load') {
      this.loading = el('div', `loading ${record.t}…`, { class: 'record load' });
      out.append(this.loading);
      return;
    }
    const node = this.component(record);
    if (this.loading && (record.k === 'code' || record.k === 'mermaid')) this.loading.replaceWith(node);
    else out.append(node);
    this.loading = null;
  }

  component(record) {
    if (record.k === 'code' || record.k === 'mermaid') {
      const figure = el('figure', '', { class: `record ${record.k}` });
      figure.append(el('figcaption', record.k === 'code' ? `code · ${record.t}` : 'mermaid source'), el('pre', record.c));
      return figure;
    }
    if (record.k === 'table') return resourcesTable(record);
    if ('e' in record) return el('div', `error: ${record.e}`, { class: 'record error' });
    if ('m' in record) {
      const text = Object.entries(record.m).map(([key, value]) => `${key} ${value}`).join(', ');
      return el('div', text, { class: 'record meta' });
    }
    if ('c' in record) return el('pre', record.c, { class: 'record raw' });
    return el('pre', JSON.stringify(record), { class: 'record unknown' });
  }

  timelineRow(index, at, gap, label, raw) {
    const row = el('tr', '', { 'data-offset': String(at) });
    const line = el('td', raw, { class: 'raw', title: 'click to wrap or unwrap' });
    line.addEventListener('click', () => line.classList.toggle('expanded'));
    row.append(el('td', String(index)), el('td', String(at)), el('td', String(gap)), el('td', label), line);
    $('#timeline tbody').append(row);
    const total = Math.max(at, 1);
    const track = $('#track');
    track.append(el('span', '', { title: `#${index} ${label} at ${at} ms` }));
    [...track.children].forEach((tick, i) => {
      tick.style.left = `${(this.records[i].at / total) * 100}%`;
    });
  }

  summarize() {
    const times = this.records.map((r) => r.at);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    const distinct = new Set(times).size;
    $('#timeline-summary').textContent = `${times.length} records · first after ${times[0]} ms · largest gap ` +
      `${gaps.length ? Math.max(...gaps) : 0} ms · last at ${times.at(-1)} ms · ${distinct} distinct arrival times`;
  }

  finish(outcome, at) {
    const last = this.records.at(-1)?.record;
    const finalM = Boolean(last?.m && (last.m.assistant_message_uuid || last.m.user_message_uuid));
    outcome.finalM = finalM;
    outcome.records = this.records;
    outcome.threadUuid = this.records.find((r) => r.record?.m?.thread_uuid)?.record.m.thread_uuid;
    const n = this.records.length;
    if (outcome.kind === 'http') {
      const detail = outcome.body?.detail ?? JSON.stringify(outcome.body);
      this.status(`HTTP ${outcome.status}: ${detail}`, 'failed');
      $('#rendered').append(el('div', `HTTP ${outcome.status}: ${detail}`, { class: 'record error' }));
    } else if (outcome.kind === 'network') {
      this.status(`request failed: ${outcome.message}`, 'failed');
    } else if (outcome.kind === 'cut' || outcome.kind === 'aborted') {
      const who = outcome.kind === 'cut' ? 'connection cut' : 'stopped by you';
      this.status(`${who} after ${n} records at ${at} ms, no final m (${outcome.message})`, 'cut');
      $('#rendered').append(el('div', `✂ ${who}: the body ended without its final m record`, { class: 'record cut' }));
    } else if (outcome.pending) {
      this.status(`ended after ${n} records with an unterminated line (dropped, as homeport drops it)`, 'cut');
    } else if (finalM || !this.expectsFinalM) {
      this.status(`complete: ${n} records in ${at} ms${finalM ? '' : ' (a title call: no m records)'}`, 'ok');
    } else {
      this.status(`ended after ${n} records in ${at} ms without the final m record`, 'warn');
    }
    return outcome;
  }
}

function resourcesTable(record) {
  const table = el('table', '', { class: 'record resources' });
  table.append(el('caption', `resources (${record.n})`));
  const head = el('tr');
  head.append(...record.h.map((h) => el('th', h)));
  table.append(head);
  for (const row of record.r) {
    const tr = el('tr');
    tr.append(...row.map((cell) => el('td', String(cell ?? ''))));
    table.append(tr);
  }
  return table;
}

/** After a stream: what the thread holds now (the records were only what the wire said). */
async function afterStream(outcome, body) {
  const uuid = outcome.threadUuid ?? body.thread_uuid ?? body.update_thread_name;
  await (uuid ? selectThread(uuid) : loadThreads());
  await loadSession();
  if (!uuid || outcome.kind === 'http' || outcome.kind === 'network') return;
  const active = activeMessages();
  const roles = active.map((m) => m.role).join(', ') || 'nothing';
  $('#afterwards').textContent = `Afterwards the thread holds ${active.length} active messages (${roles}); ` +
    `${state.messages.length - active.length} replaced.`;
}

// -- deployment switches, journal, speed ----------------------------------------------------------

const SWITCHES = ['chat_enabled', 'upstream_url_configured', 'upstream_token_configured'];

async function loadConfig(config = undefined) {
  const current = config ?? (await control('config'));
  for (const name of SWITCHES) document.getElementById(name).checked = current[name];
  const user = state.user.username;
  const limit = current.token_limits[user]?.daily_limit;
  const used = current.token_usage[user]?.daily ?? 0;
  $('#at_limit').checked = limit !== null && limit !== undefined && limit >= 0 && used >= limit;
  $('#at-limit-label').textContent = user;
  $('#system_daily').value = current.system_token_limits.daily_limit ?? '';
  $('#speed').value = current.speed;
  $('#config').textContent = JSON.stringify(current, null, 2);
}

async function patchConfig(patch) {
  try {
    await loadConfig(await control('config', 'PATCH', patch));
    notice(`config: ${JSON.stringify(patch)}`);
  } catch (error) {
    notice(String(error), true);
    await loadConfig();
  }
}

function atLimitPatch(on) {
  const user = state.user.username;
  if (!on) return { token_limits: { [user]: null }, token_usage: { [user]: null } };
  return { token_limits: { [user]: { daily_limit: 100 } }, token_usage: { [user]: { daily: 100 } } };
}

async function pollJournal() {
  try {
    const { requests } = await control('requests?limit=30');
    $('#journal').replaceChildren(...requests.reverse().map(journalItem));
  } catch (error) {
    notice(String(error), true);
  }
}

function journalItem(entry) {
  const item = el('li', '', { 'data-seq': String(entry.seq) });
  const line = `${entry.time.slice(11, 23)} ${entry.method} ${entry.path}${entry.query ? `?${entry.query}` : ''} → ` +
    `${entry.status ?? '…'} ${entry.user ?? 'anonymous'} ${entry.duration_ms ?? '…'} ms`;
  const details = el('details');
  details.append(el('summary', line));
  const response = entry.response.records ? entry.response.records.map((r) => JSON.stringify(r)).join('\n') : entry.response.body;
  details.append(el('pre', `request: ${entry.request.body ?? ''}\nresponse:\n${response ?? ''}`));
  for (const warning of entry.warnings) details.append(el('p', `warning: ${warning}`, { class: 'warning' }));
  item.append(details);
  item.classList.toggle('failed', (entry.status ?? 0) >= 400);
  return item;
}

// -- start ------------------------------------------------------------------------------------

async function loadScenarios() {
  const { scripts } = await control('scripts');
  const select = $('#scenario');
  select.replaceChildren(el('option', '(match by input)', { value: '' }));
  for (const script of scripts) {
    select.append(el('option', script.name, { value: script.name, title: script.description ?? '' }));
  }
}

async function switchUser(index) {
  state.user = state.users[Number(index)];
  state.thread = null;
  await Promise.all([loadThreads(), loadSession(), loadConfig()]);
  await loadMessages();
}

function wire() {
  $('#user').addEventListener('change', (event) => switchUser(event.target.value));
  $('#composer').addEventListener('submit', send);
  $('#stop').addEventListener('click', () => state.streaming?.abort());
  $('#new-thread').addEventListener('click', async () => {
    state.thread = null;
    await loadThreads();
    await loadMessages();
  });
  $('#fault').append(...FAULTS.map((f) => el('option', f.label, { value: f.kind })));
  $('#fault').addEventListener('change', renderFaultParams);
  for (const name of SWITCHES) {
    document.getElementById(name).addEventListener('change', (event) => patchConfig({ [name]: event.target.checked }));
  }
  $('#at_limit').addEventListener('change', (event) => patchConfig(atLimitPatch(event.target.checked)));
  $('#system_daily').addEventListener('change', (event) => {
    const value = event.target.value.trim();
    patchConfig({ system_token_limits: { daily_limit: value === '' ? -1 : Number(value) } });
  });
  $('#speed').addEventListener('change', (event) => patchConfig({ speed: Number(event.target.value) }));
  $('#reset').addEventListener('click', async () => {
    await control('reset', 'POST');
    await switchUser($('#user').value);
    await loadScenarios();
    notice('mock reset to its seed state');
  });
  $('#clear-journal').addEventListener('click', async () => {
    await control('requests', 'DELETE');
    await pollJournal();
  });
}

async function start() {
  wire();
  try {
    await Promise.all([loadUsers(), loadProfile(), loadScenarios()]);
    await switchUser(0);
  } catch (error) {
    notice(`start-up failed: ${error}`, true);
    return;
  }
  await pollJournal();
  setInterval(() => {
    if (!document.hidden) pollJournal();
  }, JOURNAL_POLL_MS);
  document.body.dataset.ready = 'true';
}

start();
