const token = document.querySelector('meta[name=dagrq-token]').content;
const finals = ['succeeded','cached','failed','upstream_failed','skipped','canceled'];
let selected = null;  // the node whose panel is open: it follows that node's changes
let signalDraft = null, signalNote = '';  // a wait node's form, kept across the panel's redraws
function paint(node, state) {
  const g = document.getElementById('node-' + node); if (!g) return;
  g.dataset.state = state; g.querySelector('rect').setAttribute('fill', COLORS[state] || '#fff');
  g.querySelector('title').textContent = node + ': ' + state;
  const all = [...document.querySelectorAll('g.node')];
  const done = all.filter(n => finals.includes(n.dataset.state)).length;
  document.getElementById('progress').style.width = (100 * done / all.length) + '%';
  document.getElementById('progresstext').textContent = done + '/' + all.length + ' nodes ended';
}
const source = new EventSource('/api/runs/' + RUN + '/events');
source.onmessage = (m) => { const e = JSON.parse(m.data);
  if (e.node) { paint(e.node, e.state); if (e.node === selected) show(selected); }
  else document.getElementById('runstate').textContent = e.state; };
function esc(s) { return String(s ?? '').replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c])); }
async function show(node) {
  selected = node;
  const r = await fetch('/api/runs/' + RUN + '/nodes/' + encodeURIComponent(node));
  const n = await r.json(); const why = n.why || {};
  const tries = (n.attempt_errors || []).map(a =>
    `<li>attempt ${a.attempt}: ${esc(a.error)}</li>`).join('');
  document.getElementById('panel').innerHTML =
    `<h2 id=panelnode>${esc(node)}</h2><p>state <b id=panelstate>${esc(n.state)}</b> · ` +
    `attempts ${n.attempts} · ran on ${esc(n.worker)} · ${n.duration_s == null ? '' : n.duration_s.toFixed(3) + ' s'}</p>` +
    (n.error ? `<p>error: ${esc(n.error)}</p>` : '') +
    (tries ? `<h3>failed attempts</h3><ul id=attempterrors>${tries}</ul>` : '') +
    (n.traceback ? `<pre>${esc(n.traceback)}</pre>` : '') +
    `<p>why: rule ${esc(why.rule)}, decision ${esc(why.decision)}${(why.causes || []).map(c => '; ' + esc(c)).join('')}</p>` +
    (n.output_preview != null ? `<h3>output</h3><pre>${esc(n.output_preview)}${n.output_truncated ? '…' : ''}</pre>` : '') +
    (why.waiting ? `<p id=waitingfor><b>${esc(why.waiting)}</b></p>` : '') +
    ((why.children || []).length ? `<p>child runs: ${why.children.map(c => `<a href="/runs/${esc(c)}">${esc(c.slice(0, 8))}</a>`).join(' ')}</p>` : '') +
    (n.signal && !finals.includes(n.state) ? signalForm(n.signal) : '') +
    `<h3>logs</h3><pre>${(n.logs || []).filter(l => l.stream !== 'meta').map(l => esc(l.line)).join('\n')}</pre>`;
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
    `<textarea id=signalvalue rows=3 cols=50 aria-label="value as JSON" oninput="signalDraft = this.value">${esc(signalDraft ?? text)}</textarea><br>` +
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
  const r = await fetch('/api/runs/' + RUN + '/nodes/' + encodeURIComponent(selected) + '/signal', {method: 'POST', headers: {'X-Dagrq-Token': token, 'Content-Type': 'application/json'}, body: JSON.stringify({value})});
  const j = await r.json(); signalNote = j.answer || j.error;
  const shown = document.getElementById('signalresult'); if (shown) shown.textContent = signalNote;
  if (j.answer === 'accepted') setTimeout(() => show(selected), 500);
  return false;
}
document.querySelectorAll('g.node').forEach(g => g.addEventListener('click', () => {
  if (g.dataset.node !== selected) { signalDraft = null; signalNote = ''; }
  show(g.dataset.node);
}));
async function act(verb) {
  const r = await fetch('/api/runs/' + RUN + '/' + verb, {method: 'POST', headers: {'X-Dagrq-Token': token}});
  const j = await r.json(); document.getElementById('actionresult').textContent = ' ' + verb + ': ' + (j.state || j.error);
  if (j.state) document.getElementById('runstate').textContent = j.state;
}
document.getElementById('cancel').onclick = () => act('cancel');
document.getElementById('resume').onclick = () => act('resume');
