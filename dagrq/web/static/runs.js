// The runs list is rendered by the server (it reads without JavaScript); this keeps it live.
// Every 3 s, while the tab is visible, it asks whether anything it shows moved on (a newer
// run, or a shown run that is not over changed): one Redis command when nothing runs. Only
// then is the list fetched again, as the same HTML the server rendered first.
const list = document.getElementById('runlist');
async function refresh() {
  if (document.hidden) return;
  const rows = [...list.querySelectorAll('tr[data-run]')];
  const live = rows.filter(r => ['queued', 'running'].includes(r.dataset.state))
    .map(r => `${r.dataset.run}:${r.dataset.state}:${r.dataset.pending}`);
  const url = new URL(list.dataset.url, location.href);
  url.searchParams.set('newest', list.querySelector('#runrows').dataset.head);
  url.searchParams.set('live', live.join(','));
  const r = await fetch(url); if (r.status !== 200) return;
  list.innerHTML = await r.text();
}
setInterval(refresh, 3000);
document.addEventListener('keydown', (e) => {
  if (e.key === '/' && !['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName)) {
    e.preventDefault(); document.querySelector('input[name=q]').focus();
  }
});
