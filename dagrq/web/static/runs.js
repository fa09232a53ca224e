const token = document.querySelector('meta[name=dagrq-token]').content;
async function refresh() {
  const q = new URLSearchParams(location.search); q.set('limit', '100');
  const r = await fetch('/api/runs?' + q); if (!r.ok) return;
  const runs = await r.json(); const body = document.querySelector('#runs tbody');
  const counts = {};
  body.innerHTML = runs.map(x => { counts[x.state] = (counts[x.state] || 0) + 1;
    return `<tr data-run="${x.id}"><td><a href="/runs/${x.id}">${x.id}</a></td><td>${x.dag}</td>` +
      `<td>${x.name || ''}</td><td class=st>${x.state}</td><td>${x.created_at}</td>` +
      `<td>${x.duration_s == null ? '' : x.duration_s.toFixed(1) + 's'}</td>` +
      `<td>${x.done}/${x.total}</td></tr>`; }).join('');
  document.querySelector('#counts').textContent =
    Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(' · ') || 'no runs';
}
refresh(); setInterval(refresh, 3000);
