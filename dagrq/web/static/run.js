const token = document.querySelector('meta[name=dagrq-token]').content;
const finals = ['succeeded','cached','failed','upstream_failed','skipped','canceled'];
let selected = null;  // the node whose panel is open: it follows that node's changes
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
    `<h3>logs</h3><pre>${(n.logs || []).filter(l => l.stream !== 'meta').map(l => esc(l.line)).join('\n')}</pre>`;
}
document.querySelectorAll('g.node').forEach(g => g.addEventListener('click', () => show(g.dataset.node)));
async function act(verb) {
  const r = await fetch('/api/runs/' + RUN + '/' + verb, {method: 'POST', headers: {'X-Dagrq-Token': token}});
  const j = await r.json(); document.getElementById('actionresult').textContent = ' ' + verb + ': ' + (j.state || j.error);
  if (j.state) document.getElementById('runstate').textContent = j.state;
}
document.getElementById('cancel').onclick = () => act('cancel');
document.getElementById('resume').onclick = () => act('resume');
