// A run's page: the graph repainted live from the run's event stream (server-sent events),
// zoom and pan, a timeline tab, and a node's panel with its live log and actions.
const token = document.querySelector('meta[name=dagrq-token]').content;
const finals = ['succeeded', 'cached', 'failed', 'upstream_failed', 'skipped', 'canceled'];
const live = ['queued', 'running'];
const DARK = ['running', 'failed', 'succeeded'];
let runState = document.getElementById('runstate').dataset.state;
let selected = null;  // the node whose panel is open: it follows that node's changes
let signalDraft = null, signalNote = '', markDraft = '', nodeNote = '';
let logs = null, lastLog = null;  // the open node's log stream, and the last line's id
let status = null;  // the run's newest status (GET /api/runs/<id>)

function esc(s) { return String(s ?? '').replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c])); }
function badge(state, id) {
  return `<span class="st s-${esc(state)}" data-state="${esc(state)}"><b aria-hidden="true">${GLYPHS[state] || '?'}</b> <span${id ? ` id=${id}` : ''}>${esc(state)}</span></span>`;
}
function took(s) {
  if (s == null) return '';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor(s % 3600 / 60) + ' min';
}
const when = (iso) => iso ? Date.parse(iso) / 1000 : null;

// ------------------------------------------------------------------ the graph
function paint(node, state) {
  const g = document.getElementById('node-' + node); if (!g || g.dataset.state === state) return;
  g.dataset.state = state; g.setAttribute('aria-label', node + ': ' + state);
  const rect = g.querySelector('rect');
  rect.setAttribute('fill', COLORS[state] || '#fff');
  if (state === 'upstream_failed') rect.setAttribute('stroke-dasharray', '5 3'); else rect.removeAttribute('stroke-dasharray');
  g.querySelector('title').textContent = node + ': ' + state;
  g.querySelector('.glyph').textContent = GLYPHS[state] || '?';
  g.querySelectorAll('text').forEach(t => t.setAttribute('fill', DARK.includes(state) ? '#fff' : '#111'));
  const ring = g.querySelector('.ring'); if (ring) ring.setAttribute('stroke', DARK.includes(state) ? '#fff' : '#111');
  progress();
}
function progress() {
  const all = [...document.querySelectorAll('g.node')], counts = {};
  all.forEach(g => { counts[g.dataset.state] = (counts[g.dataset.state] || 0) + 1; });
  const done = all.filter(n => finals.includes(n.dataset.state)).length;
  const bar = document.getElementById('progress');
  bar.innerHTML = Object.keys(COLORS).filter(s => counts[s]).map(s =>
    `<span class="s-${s}" data-state="${s}" style="width:${100 * counts[s] / all.length}%" title="${counts[s]} ${s}"></span>`).join('');
  bar.setAttribute('aria-valuenow', done);
  document.getElementById('progresstext').textContent = done + '/' + all.length + ' nodes ended';
}
function setRunState(state) {
  runState = state;
  document.getElementById('runstate').outerHTML = badge(state).replace('<span class', '<span id="runstate" class');
  document.getElementById('cancel').hidden = !live.includes(state);
  document.getElementById('resume').hidden = !['failed', 'canceled'].includes(state);
}
// durations, map progress and states from a fresh status: after events, never on a timer
let pending = null;
function refreshSoon() { if (!pending) pending = setTimeout(refresh, 700); }
async function refresh() {
  pending = null;
  const r = await fetch('/api/runs/' + RUN); if (!r.ok) return;
  status = await r.json();
  for (const [name, n] of Object.entries(status.nodes)) {
    paint(name, n.state);
    const g = document.getElementById('node-' + name); if (!g) continue;
    const items = n.items && n.items.total ? n.items : null;
    g.querySelector('.detail').textContent = items ? `${items.done}/${items.total} items` : took(n.duration_s);
    const ring = g.querySelector('.ring');
    if (ring && items) { const c = 2 * Math.PI * 9; ring.setAttribute('stroke-dasharray', `${(items.done / items.total) * c} ${c}`); }
  }
  if (status.state !== runState) setRunState(status.state);
  if (!document.getElementById('timeline').hidden) timeline();
}
const source = new EventSource('/api/runs/' + RUN + '/events?after=' + SEEN);  // what the page has not drawn
source.onmessage = (m) => {
  const e = JSON.parse(m.data);
  if (e.node) { paint(e.node, e.state); if (e.node === selected) show(selected); }
  else setRunState(e.state);
  refreshSoon();
};
document.querySelectorAll('g.node').forEach(g => {
  g.addEventListener('click', () => open(g.dataset.node));
  g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(g.dataset.node); } });
});
function open(node) {
  if (node !== selected) { signalDraft = null; signalNote = ''; markDraft = ''; nodeNote = ''; }
  document.querySelectorAll('g.node.selected').forEach(g => g.classList.remove('selected'));
  const g = document.getElementById('node-' + node); if (g) g.classList.add('selected');
  show(node);
}

// ------------------------------------------------------------------ zoom and pan
const svg = document.getElementById('dag'), pane = document.getElementById('graph');
const full = svg.viewBox.baseVal; const W = full.width, H = full.height;
let view = {x: 0, y: 0, w: W, h: H};
function apply() { svg.setAttribute('viewBox', `${view.x} ${view.y} ${view.w} ${view.h}`); }
function fit(whole) {  // the whole drawing; at first, one too wide to read whole starts at its left
  const scale = Math.min(pane.clientWidth / W, pane.clientHeight / H);
  const s = whole === true || scale >= 0.35 ? Math.min(scale, 1.5) : 0.6;
  view = {x: 0, y: 0, w: pane.clientWidth / s, h: pane.clientHeight / s};
  if (s === Math.min(scale, 1.5)) { view.x = (W - view.w) / 2; view.y = (H - view.h) / 2; }
  apply();
}
function zoom(factor, cx, cy) {
  cx = cx ?? view.x + view.w / 2; cy = cy ?? view.y + view.h / 2;
  view = {x: cx - (cx - view.x) * factor, y: cy - (cy - view.y) * factor, w: view.w * factor, h: view.h * factor};
  apply();
}
svg.setAttribute('width', '100%'); svg.setAttribute('height', '100%');
fit();
pane.addEventListener('wheel', (e) => {
  e.preventDefault(); const box = svg.getBoundingClientRect();
  zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, view.x + (e.clientX - box.left) / box.width * view.w, view.y + (e.clientY - box.top) / box.height * view.h);
}, {passive: false});
let drag = null;
pane.addEventListener('pointerdown', (e) => { if (!e.target.closest('g.node')) drag = {x: e.clientX, y: e.clientY, v: {...view}}; });
window.addEventListener('pointermove', (e) => {
  if (!drag) return; const box = svg.getBoundingClientRect();
  view.x = drag.v.x - (e.clientX - drag.x) / box.width * view.w; view.y = drag.v.y - (e.clientY - drag.y) / box.height * view.h; apply();
});
window.addEventListener('pointerup', () => { drag = null; });
document.getElementById('zoomin').onclick = () => zoom(1 / 1.3);
document.getElementById('zoomout').onclick = () => zoom(1.3);
document.getElementById('zoomfit').onclick = () => fit(true);

// ------------------------------------------------------------------ tabs and keys
function tab(name) {
  const graph = name === 'graph';
  document.getElementById('graph').hidden = !graph; document.getElementById('timeline').hidden = graph;
  document.getElementById('tab-graph').setAttribute('aria-selected', graph);
  document.getElementById('tab-timeline').setAttribute('aria-selected', !graph);
  document.querySelector('.zoom').style.visibility = graph ? 'visible' : 'hidden';
  if (!graph) { if (status) timeline(); else refresh(); }
}
document.getElementById('tab-graph').onclick = () => tab('graph');
document.getElementById('tab-timeline').onclick = () => tab('timeline');
document.addEventListener('keydown', (e) => {
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName) || e.ctrlKey || e.metaKey) return;
  const keys = {'+': () => zoom(1 / 1.3), '=': () => zoom(1 / 1.3), '-': () => zoom(1.3), '0': () => fit(true),
    't': () => tab('timeline'), 'g': () => tab('graph'), 'Escape': closePanel};
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

// ------------------------------------------------------------------ the timeline (Gantt)
function timeline() {
  const t0 = when(status.created_at), now = Date.now() / 1000;
  const rows = Object.entries(status.nodes).map(([name, n]) => {
    const q = when(n.queued_at), s = when(n.started_at), e = when(n.ended_at);
    const start = s ?? e ?? null, end = e ?? (s != null ? now : null);
    return {name, n, q, start, end};
  }).sort((a, b) => (a.start ?? Infinity) - (b.start ?? Infinity) || a.name.localeCompare(b.name));
  const t1 = Math.max(t0 + 0.001, ...rows.map(r => r.end ?? t0));
  const el = document.getElementById('timeline');
  const left = 180, width = Math.max(400, el.clientWidth - left - 160), rowH = 22;
  const x = (t) => left + (t - t0) / (t1 - t0) * width;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(f => `<line x1="${left + f * width}" y1="18" x2="${left + f * width}" y2="${24 + rows.length * rowH}" stroke="#ddd"/><text x="${left + f * width}" y="12" text-anchor="middle" font-size="11">+${took(f * (t1 - t0)) || '0 s'}</text>`).join('');
  const bars = rows.map((r, i) => {
    const y = 24 + i * rowH, n = r.n;
    let body = `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${esc(r.name)}</text>`;
    if (r.start == null) body += `<text x="${left + 4}" y="${y + 14}" fill="#777">not started</text>`;
    else {
      if (r.q != null && r.q < r.start) body += `<rect class="wait" x="${x(r.q)}" y="${y + 6}" width="${Math.max(1, x(r.start) - x(r.q))}" height="8" fill="#ccc"><title>queued ${took(r.start - r.q)}</title></rect>`;
      body += `<rect class="ran s-${n.state}" x="${x(r.start)}" y="${y + 2}" width="${Math.max(2, x(r.end) - x(r.start))}" height="16" fill="${COLORS[n.state]}" stroke="#333" stroke-width=".5"><title>${esc(r.name)}: ${n.state}, ${took(r.end - r.start)}${n.attempts > 1 ? ', ' + n.attempts + ' attempts' : ''}</title></rect>`;
      body += `<text x="${x(r.end) + 4}" y="${y + 14}" font-size="11">${GLYPHS[n.state] || ''} ${n.started_at ? took(r.end - r.start) : n.state}${n.attempts > 1 ? ' ×' + n.attempts : ''}</text>`;
    }
    return `<g class="span" data-node="${esc(r.name)}" data-start="${r.start ?? ''}" data-end="${r.end ?? ''}" data-queued="${r.q ?? ''}" style="cursor:pointer">${body}</g>`;
  }).join('');
  el.innerHTML = `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 120}" height="${30 + rows.length * rowH}" font-family="sans-serif" font-size="12">${ticks}${bars}</svg>` +
    '<p class="hint">grey: waiting in its queue; coloured: running, to its end (the last attempt)</p>';
  el.querySelectorAll('g.span').forEach(g => g.addEventListener('click', () => open(g.dataset.node)));
}

// ------------------------------------------------------------------ a node's panel
function closePanel() {
  selected = null; if (logs) { logs.close(); logs = null; }
  document.querySelectorAll('g.node.selected').forEach(g => g.classList.remove('selected'));
  document.getElementById('panel').innerHTML = '<p class="hint">click a node to see its details</p>';
}
function fact(k, v) { return v == null || v === '' ? '' : `<dt>${k}</dt><dd>${v}</dd>`; }
async function show(node) {
  selected = node;
  const r = await fetch('/api/runs/' + RUN + '/nodes/' + encodeURIComponent(node));
  const n = await r.json(); if (selected !== node) return;
  const tries = (n.attempt_errors || []).map(a => `<li>attempt ${a.attempt}: ${esc(a.error)}</li>`).join('');
  const wait = n.queued_at && n.started_at ? when(n.started_at) - when(n.queued_at) : null;
  const ended = !live.includes(runState);
  document.getElementById('panel').innerHTML =
    `<h2 id=panelnode>${esc(node)}</h2><p>${badge(n.state, 'panelstate')} <button id=closepanel title="close (Esc)">×</button></p>` +
    `<p id=panelwhy class=why>${esc(n.words)}</p>` +
    `<dl>${fact('attempts', n.attempts)}${fact('ran on', esc(n.worker))}${fact('queue', esc(n.queue))}` +
    `${fact('queued', n.queued_at && new Date(n.queued_at).toLocaleTimeString())}${fact('started', n.started_at && new Date(n.started_at).toLocaleTimeString())}` +
    `${fact('ended', n.ended_at && new Date(n.ended_at).toLocaleTimeString())}${fact('waited', wait == null ? null : took(wait))}${fact('ran', took(n.duration_s))}` +
    `${fact('rule', esc(n.rule))}${n.items ? fact('items', `${n.items.done}/${n.items.total} done, ${n.items.failed} failed`) : ''}</dl>` +
    (ended ? actions(n) : '') +
    (n.why && n.why.waiting ? `<p id=waitingfor><b>${esc(n.why.waiting)}</b></p>` : '') +
    ((n.why && n.why.children || []).length ? `<p>child runs: ${n.why.children.map(c => `<a href="/runs/${esc(c)}">${esc(c.slice(0, 8))}</a>`).join(' ')}</p>` : '') +
    (n.signal && !finals.includes(n.state) ? signalForm(n.signal) : '') +
    (tries ? `<h3>failed attempts</h3><ul id=attempterrors>${tries}</ul>` : '') +
    (n.traceback ? `<details><summary>traceback</summary><pre>${esc(n.traceback)}</pre></details>` : '') +
    (Object.keys(n.inputs || {}).length ? `<h3>inputs</h3>${Object.entries(n.inputs).map(([p, v]) => `<p><b>${esc(p)}</b></p><pre class=preview>${esc(v)}</pre>`).join('')}` : '') +
    (n.output_preview != null ? `<h3>output</h3><pre id=output class=preview>${esc(n.output_preview)}${n.output_truncated ? '…' : ''}</pre>` : '') +
    `<h3>log ${finals.includes(n.state) ? '' : '<small>(live)</small>'}</h3><pre id=logtail>${(n.logs || []).filter(l => l.stream !== 'meta').map(l => esc(l.line)).join('\n')}</pre>`;
  document.getElementById('closepanel').onclick = closePanel;
  if (ended) wireActions(node);
  lastLog = (n.logs || []).length ? n.logs[n.logs.length - 1].id : '0-0';
  if (logs) { logs.close(); logs = null; }
  if (!finals.includes(n.state)) follow(node);
}
function follow(node) {  // the node's log, line by line while it runs (server-sent events)
  logs = new EventSource(`/api/runs/${RUN}/nodes/${encodeURIComponent(node)}/logs?after=${lastLog}`);
  logs.onmessage = (m) => {
    const l = JSON.parse(m.data); if (l.stream === 'meta') return;
    const pre = document.getElementById('logtail'); if (!pre || selected !== node) return;
    const bottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent += (pre.textContent ? '\n' : '') + l.line; lastLog = l.id;
    if (bottom) pre.scrollTop = pre.scrollHeight;
  };
}
function actions(n) {
  const marks = ['succeeded', 'skipped'].filter(s => s !== n.state).map(s =>
    `<button type=button id=mark${s} data-outcome=${s}>mark ${s}</button>`).join(' ');
  return `<div class=actions><button type=button id=clear title="Airflow's clear: this node and its downstream run again">re-run this node and everything downstream</button>` +
    `<form id=markform onsubmit="return false"><input id=markreason aria-label="reason" placeholder="reason (kept in the run's events)" size=30 value="${esc(markDraft)}"> ` +
    (n.state !== 'succeeded' ? `<input id=markoutput aria-label="output if marked succeeded, as JSON" placeholder="output as JSON (succeeded)" size=24> ` : '') + `${marks}</form>` +
    `<span id=noderesult role=status>${esc(nodeNote)}</span></div>`;
}
function wireActions(node) {
  const say = (t) => {  // in the panel, and beside the run's buttons (the panel may redraw)
    nodeNote = t; const el = document.getElementById('noderesult'); if (el) el.textContent = t;
    document.getElementById('actionresult').textContent = ' ' + node + ': ' + t;
  };
  document.getElementById('markreason').oninput = (e) => { markDraft = e.target.value; };
  document.getElementById('clear').onclick = async () => {
    const j = await post(`/api/runs/${RUN}/nodes/${encodeURIComponent(node)}/clear`, {});
    say(j.error || 'run ' + j.state); if (j.state) { setRunState(j.state); refresh(); show(node); }
  };
  document.querySelectorAll('#markform button').forEach(b => b.onclick = async () => {
    const reason = document.getElementById('markreason').value;
    if (!reason.trim()) { say('say why (a reason is kept)'); return; }
    const given = (document.getElementById('markoutput') || {}).value || '';
    let output = null;
    if (b.dataset.outcome === 'succeeded' && given.trim()) { try { output = JSON.parse(given); } catch (e) { say('output is not JSON: ' + e.message); return; } }
    const j = await post(`/api/runs/${RUN}/nodes/${encodeURIComponent(node)}/mark`, {outcome: b.dataset.outcome, reason, output});
    say(j.error || 'run ' + j.state); if (j.state) { markDraft = ''; setRunState(j.state); refresh(); show(node); }
  });
}
async function post(url, body) {
  const r = await fetch(url, {method: 'POST', headers: {'X-Dagrq-Token': token, 'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  return r.json();
}
// A wait node's form, from its value's JSON schema: approve/reject for a yes-or-no value
// (a boolean, or an object whose one required boolean is the decision), else JSON text.
function signalForm(sig) {
  const s = sig.schema || {}, props = s.properties || {};
  const bools = Object.keys(props).filter(k => props[k].type === 'boolean');
  const example = {};
  Object.keys(props).forEach(k => { example[k] = props[k].type === 'boolean' ? true : props[k].type === 'integer' || props[k].type === 'number' ? 0 : ''; });
  const text = s.type === 'object' ? JSON.stringify(example) : s.type === 'boolean' ? 'true' : '""';
  const yesno = s.type === 'boolean' || bools.length === 1;
  return `<h3>signal (type ${esc(sig.type)})</h3><form id=signalform onsubmit="return sendSignal(event)">` +
    `<textarea id=signalvalue rows=3 cols=44 aria-label="value as JSON" oninput="signalDraft = this.value">${esc(signalDraft ?? text)}</textarea><br>` +
    (yesno ? `<button type=button onclick="decide(true)">approve</button> <button type=button onclick="decide(false)">reject</button> ` : '') +
    `<button type=submit>send</button> <span id=signalresult>${esc(signalNote)}</span></form>`;
}
function decide(yes) {
  const box = document.getElementById('signalvalue'); let v;
  try { v = JSON.parse(box.value); } catch (e) { v = {}; }
  if (typeof v === 'object' && v !== null) { const k = Object.keys(v).find(k => typeof v[k] === 'boolean'); if (k) v[k] = yes; else v = yes; } else v = yes;
  box.value = signalDraft = JSON.stringify(v); sendSignal();
}
async function sendSignal(ev) {
  if (ev) ev.preventDefault();
  let value; signalDraft = document.getElementById('signalvalue').value;
  try { value = JSON.parse(signalDraft); } catch (e) { signalNote = 'not JSON: ' + e.message; document.getElementById('signalresult').textContent = signalNote; return false; }
  const j = await post('/api/runs/' + RUN + '/nodes/' + encodeURIComponent(selected) + '/signal', {value});
  signalNote = j.answer || j.error;
  const shown = document.getElementById('signalresult'); if (shown) shown.textContent = signalNote;
  if (j.answer === 'accepted') setTimeout(() => show(selected), 500);
  return false;
}
async function act(verb) {
  const r = await fetch('/api/runs/' + RUN + '/' + verb, {method: 'POST', headers: {'X-Dagrq-Token': token}});
  const j = await r.json(); document.getElementById('actionresult').textContent = ' ' + verb + ': ' + (j.state || j.error);
  if (j.state) { setRunState(j.state); refresh(); }
}
document.getElementById('cancel').onclick = () => act('cancel');
document.getElementById('resume').onclick = () => act('resume');
if (OPEN) open(OPEN);
