/**
 * The dashboard's Runs page: server-rendered HTML of the run views (queue/run-view.ts), the same
 * cells as `cascade status`'s run list, with links to each run's jobs in bull-board. No script:
 * the page reloads itself, and every value from Redis is escaped.
 */
import { mergeJobId, stageQueueName } from '../queue/jobs.js';
import type { RunView } from '../queue/run-view.js';
import { formatListingWindow, RUN_LIST_COLUMNS, runListCells } from './format-status.js';

/** Text made safe for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Links are relative to the page (served at `runs` beside bull-board's root), so a proxy's path prefix is kept.
function jobLinks(r: RunView): string {
  const link = (href: string, text: string, title: string) => `<a href="${escapeHtml(href)}" title="${escapeHtml(title)}">${escapeHtml(text)}</a>`;
  const stages = r.stageNames.map((name) =>
    link(
      `queue/${encodeURIComponent(stageQueueName(name))}?status=failed`,
      name,
      `failed batches in ${stageQueueName(name)} (job ids start with ${r.runId}-b)`,
    ),
  );
  return [link(`queue/merge/${encodeURIComponent(mergeJobId(r.runId))}`, 'merge', `the run's merge job`), ...stages].join(' · ');
}

function runRow(r: RunView): string {
  // Seconds are enough on a page (the full time is the cell's title).
  const cells = { ...runListCells(r), STARTED: r.startedAt ? `${r.startedAt.slice(0, 19).replace('T', ' ')} UTC` : '-' };
  const tds = RUN_LIST_COLUMNS.map(
    (c) => `<td class="${c.toLowerCase()}">${c === 'STATE' ? `<span class="badge">${escapeHtml(cells[c])}</span>` : escapeHtml(cells[c])}</td>`,
  );
  // Where a windowed listing stands rides on the bar's title: the row stays one line.
  const listing = formatListingWindow(r)?.trim();
  const bar = `<div class="bar"${listing ? ` title="${escapeHtml(listing)}"` : ''}><div style="width:${(100 * Math.min(1, Math.max(0, r.fraction))).toFixed(1)}%"></div></div>`;
  const failed =
    r.state === 'failed' && r.failedReason
      ? `<tr class="reason" data-state="failed"><td></td><td colspan="${RUN_LIST_COLUMNS.length}">${escapeHtml(r.failedReason)}</td></tr>`
      : '';
  return `<tr class="run" data-run="${escapeHtml(r.runId)}" data-state="${r.state}" data-errors="${r.errors}">${tds.join('')}<td class="jobs">${jobLinks(r)}</td></tr>\n<tr class="progress" data-state="${r.state}"><td colspan="${RUN_LIST_COLUMNS.length + 1}">${bar}</td></tr>${failed}`;
}

const STYLE = `
body { font: 13px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2433; background: #f6f7f9; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.note { color: #5a6478; margin: 0 0 16px; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.12); width: 100%; }
th, td { padding: 6px 10px; text-align: left; white-space: nowrap; }
th { background: #2b3445; color: #fff; font-weight: 600; font-size: 12px; }
tr.run td { border-top: 1px solid #e3e6eb; }
td.progress, td.routed, td.saved, td.eta { text-align: right; font-variant-numeric: tabular-nums; }
tr.progress td { padding: 0 10px 6px; }
.bar { height: 6px; background: #e3e6eb; border-radius: 3px; overflow: hidden; }
.bar div { height: 100%; background: #3b82f6; }
.badge { padding: 2px 8px; border-radius: 10px; font-weight: 600; font-size: 12px; background: #dbeafe; color: #1e40af; }
tr[data-state="done"] .badge { background: #dcfce7; color: #166534; }
tr[data-state="done"] .bar div { background: #22c55e; }
tr[data-state="done-with-errors"] .badge { background: #ffedd5; color: #9a3412; }
tr[data-state="done-with-errors"] .bar div { background: #f97316; }
tr[data-state="failed"] .badge { background: #fee2e2; color: #991b1b; }
tr[data-state="failed"] .bar div { background: #ef4444; }
tr.reason td { color: #991b1b; padding-top: 0; }
td.errors { color: #9a3412; }
tr[data-errors="0"] td.errors { color: inherit; }
td.out, td.errors { white-space: normal; overflow-wrap: anywhere; min-width: 8em; }
a { color: #2563eb; }
`;

/** The whole Runs page for `runs` (newest first) under `prefix`, reloading every `refreshSeconds`. */
export function renderRunsPage(runs: readonly RunView[], o: { prefix: string; refreshSeconds: number; now: Date }): string {
  const head = RUN_LIST_COLUMNS.map((c) => `<th>${c}</th>`).join('');
  const body = runs.length === 0 ? `<tr><td colspan="${RUN_LIST_COLUMNS.length + 1}">no runs yet</td></tr>` : runs.map(runRow).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="${o.refreshSeconds}">
<title>Cascade runs (${escapeHtml(o.prefix)})</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Cascade runs (${escapeHtml(o.prefix)})</h1>
<p class="note">Read-only, as of ${escapeHtml(o.now.toISOString())}; the same view as <code>cascade status</code>. <a href="./">Queues (bull-board)</a></p>
<table>
<thead><tr>${head}<th title="the run's jobs in bull-board: its merge job, each stage's failed batches">JOBS</th></tr></thead>
<tbody>
${body}
</tbody>
</table>
</body>
</html>
`;
}
