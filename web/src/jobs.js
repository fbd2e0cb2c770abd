// The jobs view (#jobs): what an endpoint serving this page is doing, live. The
// list comes from GET /jobs (a page at a time, newest first); a job's detail from
// GET /jobs/{id} (the document), /jobs/{id}/summary and /jobs/{id}/trials. With
// a token on the endpoint, the page asks for it once and keeps it in this tab's
// sessionStorage only (never in a URL). Every number shown is the API's, formatted.

import { COLORS, draw, ticksAt } from './charts.js';
import { duration, joules, joulesWithBound, policyName, toCsv, utc, verdict } from './format.js';
import { markScrollers } from './scroll.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'wattwise-token';
const REFRESH_MS = Number(new URLSearchParams(location.search).get('refresh_ms')) || 3000;
const PAGE = 50;

/** What the view shows, also read by the end-to-end test. */
export const jobsState = {
  page: null, // the current page of summaries
  cursors: [null], // the cursor of each page seen so far (null: the first)
  pageIndex: 0,
  sort: { key: 'created_ms', dir: -1 },
  prefix: '',
  detail: null, // { summary, doc, trials, defaultEstimate, charts }
  closest: null, // the core's closest workload for the last "simulate this job"
  reachable: null,
  refreshes: 0,
};
window.wattwiseJobs = jobsState;

// ---------------------------------------------------------------- the API

class NeedToken extends Error {}
class NoEndpoint extends Error {}
/** A job the endpoint does not know (404 on its detail). */
class NotFound extends Error {}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let r;
  try {
    r = await fetch(path, { headers, cache: 'no-store' });
  } catch (e) {
    throw new NoEndpoint(`the endpoint cannot be reached (${e.message})`);
  }
  if (r.status === 401) throw new NeedToken();
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    if (r.status === 404 && path.startsWith('/jobs?')) throw new NoEndpoint('this page is not served by a wattwise endpoint that lists jobs');
    if (r.status === 404) throw new NotFound(body?.message ?? 'no such job');
    throw new Error(body?.message ?? `${r.status} ${r.statusText}`);
  }
  return body;
}

function notice(text) {
  $('jobs-notice').hidden = !text;
  $('jobs-notice').textContent = text ?? '';
}

function askToken(again) {
  $('token-form').hidden = false;
  $('token-why').textContent = again ? 'That token was refused; enter the endpoint’s token.' : 'This endpoint needs its bearer token.';
  $('token-input').focus();
}

async function guarded(load) {
  try {
    await load();
    jobsState.reachable = true;
    notice(null);
  } catch (e) {
    if (e instanceof NeedToken) {
      askToken(Boolean(sessionStorage.getItem(TOKEN_KEY)));
    } else if (e instanceof NotFound) {
      stopPolling();
      showNotFound(e.message);
    } else if (e instanceof NoEndpoint) {
      jobsState.reachable = false;
      notice(`Endpoint unreachable: ${e.message}. Showing the last data received; retrying every ${REFRESH_MS / 1000} s.`);
    } else {
      notice(`The endpoint answered with an error: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------- the list

/** The optimizer's stage in plain words. */
export function stageWords(s) {
  if (s.policy === 'wattwise') return 'searching nearby batch sizes';
  return s.stage === 'Pruning' ? 'trying each batch size' : 'settled: picking among the best batch sizes';
}

/** The GPUs of a job: `2 × A40`. */
export const gpus = (s) => `${s.number_of_gpus} × ${s.gpu_model}`;

/** Jobs, counted in words: `1 job`, `2 jobs`. */
const jobsWord = (n) => `${n} job${n === 1 ? '' : 's'}`;

/**
 * The workload a job names, and whether it learned from the workload's other
 * jobs on this endpoint (issue 27): `imagenet (learned from 2 jobs)`; a dash
 * without a workload.
 */
export function workloadWords(s) {
  if (!s.workload) return '—';
  const sh = s.sharing;
  if (sh?.dropped) return `${s.workload} (dropped what it learned)`;
  if (sh?.from.length) return `${s.workload} (learned from ${jobsWord(sh.from.length)})`;
  return s.workload;
}

/** What a job reused of its workload's other jobs and taught them, in words (HTML; ids escaped). */
export function sharingHtml(s) {
  const sh = s.sharing;
  if (!sh) return '';
  const w = `workload <strong>${escape(s.workload)}</strong>`;
  const link = (id) => `<a href="#jobs/${encodeURIComponent(id)}">${escape(id)}</a>`;
  const parts = [];
  if (sh.from.length || sh.reused_runs) {
    const from = sh.from.length ? `${jobsWord(sh.from.length)} of ${w} (${sh.from.map(link).join(', ')})` : `earlier jobs of ${w}`;
    parts.push(`Started from what ${from} learned: ${sh.reused_runs} of their runs, epochs to the target at batch size${sh.reused_batch_sizes.length === 1 ? '' : 's'} ${sh.reused_batch_sizes.join(', ')}; the time and power of an epoch are this job's own.`);
    if (sh.probed.length) parts.push(`Probed batch size${sh.probed.length === 1 ? '' : 's'} ${sh.probed.join(', ')} for one epoch instead of a whole run.`);
    if (sh.dropped) parts.push('Its own runs disagreed with theirs, so it dropped what they taught and explores on its own.');
  } else {
    parts.push(`Shares ${w} with this endpoint's other wattwise jobs; no other job's run had reached the target when it started.`);
  }
  parts.push(`Its own ${sh.taught_runs} finished run${sh.taught_runs === 1 ? ' teaches' : 's teach'} the workload's other jobs.`);
  return parts.join(' ');
}

/** A saving, or a dash until the job has run its default batch size to the target. */
const saved = (s, f) => (s.savings ? f(s.savings) : '—');

/** A saving's verdict, with its standard error when the API gives one (within noise under two). */
const savingVerdict = (v) => verdict(v.cost_fraction, v.cost_fraction_uncertainty);

/** What the ± of a saving is, for its title: one standard error, or why there is none. */
function uncertaintyWords(v) {
  if (v.cost_fraction_uncertainty === undefined) {
    return v.basis_runs === 1 ? 'one run at the default batch size: uncertainty unknown' : 'uncertainty unknown';
  }
  return `± one standard error of the default's estimate (the spread of its ${v.basis_runs} runs); under two standard errors is within noise`;
}

/** The totals' energy, with its bound when every finished run gave one. */
const totalEnergy = (s) => joulesWithBound(s.totals.energy, s.totals.energy_uncertainty_j);

const COLUMNS = [
  ['job_id', 'job', (s) => s.job_id],
  ['saved', 'saved against the default (cost)', (s) => saved(s, (v) => savingVerdict(v).words), (s) => s.savings?.cost_fraction ?? -Infinity],
  ['saved_energy', 'energy saved', (s) => saved(s, (v) => joules(v.energy)), (s) => s.savings?.energy ?? -Infinity],
  ['saved_time', 'time saved', (s) => saved(s, (v) => duration(v.time)), (s) => s.savings?.time ?? -Infinity],
  ['stage', 'stage', stageWords],
  ['policy', 'policy', (s) => policyName(s.policy)],
  ['gpus', 'GPUs', gpus],
  ['workload', 'workload', workloadWords],
  ['best_batch_size', 'best batch size', (s) => s.best_batch_size],
  ['best_power_limit', 'power limit', (s) => (s.best_power_limit === null ? '—' : `${s.best_power_limit} W`), (s) => s.best_power_limit ?? -Infinity],
  ['trials', 'trials', (s) => s.trials],
  ['open_trials', 'running', (s) => s.open_trials],
  ['energy', 'energy (± bound)', totalEnergy, (s) => s.totals.energy],
  ['time', 'time', (s) => duration(s.totals.time), (s) => s.totals.time],
  ['cost', 'cost (Zeus)', (s) => joules(s.totals.cost), (s) => s.totals.cost],
  ['last_activity_ms', 'last activity (UTC)', (s) => utc(s.last_activity_ms)],
  ['created_ms', 'created (UTC)', (s) => utc(s.created_ms)],
];
const CSV_COLUMNS = [
  ['job_id', (s) => s.job_id], ['stage', (s) => s.stage], ['policy', (s) => s.policy],
  ['gpu_model', (s) => s.gpu_model], ['number_of_gpus', (s) => s.number_of_gpus],
  ['default_batch_size', (s) => s.default_batch_size], ['best_batch_size', (s) => s.best_batch_size],
  ['best_power_limit', (s) => s.best_power_limit], ['min_cost', (s) => s.min_cost],
  ['trials', (s) => s.trials], ['open_trials', (s) => s.open_trials],
  ['finished_trials', (s) => s.totals.finished_trials], ['failed_trials', (s) => s.totals.failed_trials],
  ['energy_j', (s) => s.totals.energy], ['energy_uncertainty_j', (s) => s.totals.energy_uncertainty_j],
  ['time_s', (s) => s.totals.time], ['cost', (s) => s.totals.cost],
  ['saved_energy_j', (s) => s.savings?.energy], ['saved_time_s', (s) => s.savings?.time], ['saved_cost', (s) => s.savings?.cost],
  ['saved_cost_fraction', (s) => s.savings?.cost_fraction], ['saved_basis_runs', (s) => s.savings?.basis_runs],
  ['saved_cost_uncertainty', (s) => s.savings?.cost_uncertainty],
  ['saved_cost_fraction_uncertainty', (s) => s.savings?.cost_fraction_uncertainty],
  ['last_activity_ms', (s) => s.last_activity_ms], ['created_ms', (s) => s.created_ms],
  ['workload', (s) => s.workload], ['learned_from', (s) => s.sharing?.from.join(' ')],
  ['reused_runs', (s) => s.sharing?.reused_runs], ['taught_runs', (s) => s.sharing?.taught_runs],
];

function sortValue(s, key) {
  const col = COLUMNS.find(([k]) => k === key);
  return col[3] ? col[3](s) : (s[key] ?? -Infinity);
}

/** The rows on screen: the page, filtered by id prefix, sorted. */
function visibleRows() {
  const { key, dir } = jobsState.sort;
  return (jobsState.page?.jobs ?? [])
    .filter((s) => s.job_id.startsWith(jobsState.prefix))
    .sort((a, b) => {
      const [x, y] = [sortValue(a, key), sortValue(b, key)];
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
}

function renderList() {
  const table = $('jobs-table');
  const head = COLUMNS.map(([k, label]) => {
    const mark = jobsState.sort.key === k ? (jobsState.sort.dir > 0 ? ' ▲' : ' ▼') : '';
    return `<th scope="col" data-key="${k}" aria-sort="${mark ? (jobsState.sort.dir > 0 ? 'ascending' : 'descending') : 'none'}"><button type="button" class="sort">${label}${mark}</button></th>`;
  }).join('');
  table.tHead.innerHTML = `<tr>${head}</tr>`;
  const body = table.tBodies[0];
  body.replaceChildren();
  const rows = visibleRows();
  for (const s of rows) {
    const tr = body.insertRow();
    tr.dataset.job = s.job_id;
    for (const [k, , fmt] of COLUMNS) {
      const td = tr.insertCell();
      td.dataset.key = k;
      if (k === 'job_id') {
        const a = document.createElement('a');
        a.href = `#jobs/${encodeURIComponent(s.job_id)}`;
        a.textContent = s.job_id;
        td.append(a);
      } else {
        td.textContent = String(fmt(s));
        if (k === 'saved' && s.savings) {
          markVerdict(td, s.savings.cost_fraction, s.savings.cost_fraction_uncertainty);
          td.title = uncertaintyWords(s.savings);
        }
      }
    }
  }
  renderFleet();
  const n = jobsState.page?.jobs.length ?? 0;
  $('jobs-status').textContent = jobsState.page
    ? `Page ${jobsState.pageIndex + 1}: ${rows.length} of ${n} jobs shown${jobsState.prefix ? ` (id starts with “${jobsState.prefix}”)` : ''}.`
    : '';
  $('jobs-prev').disabled = jobsState.pageIndex === 0;
  $('jobs-next').disabled = !jobsState.page?.next_cursor;
  const empty = jobsState.page && jobsState.page.jobs.length === 0 && jobsState.pageIndex === 0;
  $('jobs-empty').hidden = !empty;
  $('jobs-table').closest('.table-wrap').hidden = Boolean(empty);
  if (empty) {
    // Nothing to refresh: a job appears when a client registers one.
    stopPolling();
    $('jobs-empty').textContent = 'No jobs on this endpoint yet. A job appears when a training script (Zeus\'s client) or `wattwise run` registers one; reload this page then.';
  }
  markScrollers();
}

/** The fleet's saving: the sum over the jobs on this page with an estimate. */
function renderFleet() {
  const jobs = visibleRows();
  const est = jobs.filter((s) => s.savings);
  const sum = (f) => est.reduce((a, s) => a + f(s.savings), 0);
  const fleet = { jobs: jobs.length, estimated: est.length, energy: sum((v) => v.energy), time: sum((v) => v.time), cost: sum((v) => v.cost), default_cost: sum((v) => v.default_cost) };
  jobsState.fleet = fleet;
  $('fleet').hidden = jobs.length === 0;
  const fraction = fleet.default_cost > 0 ? fleet.cost / fleet.default_cost : NaN;
  // The jobs' estimates are independent: the sum's standard error is the root of
  // the sum of their squares, known only when every job's is.
  const sure = est.length > 0 && est.every((s) => s.savings.cost_uncertainty !== undefined);
  const u = sure ? Math.sqrt(sum((v) => v.cost_uncertainty ** 2)) / fleet.default_cost : undefined;
  const v = verdict(fraction, u);
  const of = `${est.length} of ${jobs.length} jobs shown have a default estimate`;
  const fleetHtml = [
    card('saved against the default (cost), these jobs', est.length ? v.words : '—', `verdict-card ${v.cls}`, 'fleet-saved', of),
    card('energy saved', est.length ? joules(fleet.energy) : '—', '', 'fleet-energy', 'against each job\'s default batch size'),
    card('time saved', est.length ? duration(fleet.time) : '—', '', 'fleet-time', 'summed over the jobs\' finished runs'),
  ].join('');
  $('fleet').innerHTML = fleetHtml;
  if (est.length) markVerdict($('fleet-saved').querySelector('.value'), fraction, u);
}

async function loadList() {
  const cursor = jobsState.cursors[jobsState.pageIndex];
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (cursor) q.set('cursor', cursor);
  jobsState.page = await api(`/jobs?${q}`);
  jobsState.cursors[jobsState.pageIndex + 1] = jobsState.page.next_cursor;
  renderList();
}

// ---------------------------------------------------------------- a job

/** The trials export's rows with their Zeus cost (eta·E + (1−eta)·max_power·T). */
function withCost(trials, params) {
  return trials.map((t) => ({
    ...t,
    cost: t.status === 'Succeeded' ? params.eta_knob * t.energy + (1 - params.eta_knob) * params.max_power * t.time : null,
  }));
}

/**
 * What the default batch size at full power would have cost on the trials seen:
 * the mean cost of the job's succeeded runs at the default batch size that reached
 * the target (Zeus's first trial runs it), times the number of finished runs.
 * None without such a run.
 */
export function defaultEstimate(trials, params) {
  const runs = trials.filter((t) => t.status === 'Succeeded' && t.batch_size === params.default_batch_size && t.converged);
  if (runs.length === 0) return null;
  return { perRun: runs.reduce((a, t) => a + t.cost, 0) / runs.length, basis: runs.length };
}

/** Colours an element holding a verdict's words, and keeps the fraction (and its standard error, if known) beside them. */
function markVerdict(el, saved, u) {
  el.classList.add('verdict-text', verdict(saved, u).cls);
  el.dataset.saved = String(saved);
  if (Number.isFinite(u)) el.dataset.uncertainty = String(u);
}

const escape = (t) => String(t).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

function card(label, value, cls = '', id = '', sub = '') {
  return `<div class="card ${cls}"${id ? ` id="${id}"` : ''}><div class="label">${escape(label)}</div><div class="value">${escape(value)}</div>${sub ? `<div class="sub">${escape(sub)}</div>` : ''}</div>`;
}

const TRIAL_COLUMNS = [
  ['trial_number', 'trial', (t) => t.trial_number],
  ['batch_size', 'batch size', (t) => t.batch_size],
  ['type', 'type', (t) => t.type],
  ['outcome', 'outcome', (t) => (t.status === 'Succeeded' ? (t.converged ? 'reached target' : 'stopped early') : t.status === 'Failed' ? 'failed' : 'running')],
  ['energy', 'energy (± bound)', (t) => (t.energy === null || t.energy === undefined ? '' : joulesWithBound(t.energy, t.energy_uncertainty_j))],
  ['time', 'time', (t) => (t.time === null || t.time === undefined ? '' : duration(t.time))],
  ['cost', 'cost (Zeus)', (t) => (t.cost === null ? '' : joules(t.cost))],
  ['start_ms', 'start (UTC)', (t) => utc(t.start_ms)],
  ['end_ms', 'end (UTC)', (t) => (t.end_ms ? utc(t.end_ms) : '')],
];

const BANDIT_COLUMNS = [
  ['batch_size', 'batch size'],
  ['pruning', 'pruning'],
  ['explored', 'exploration runs'],
  ['last_exploration_cost', 'last exploration cost'],
  ['runs', 'succeeded runs'],
  ['mean_cost', 'mean cost'],
  ['posterior_mean_cost', 'posterior mean cost'],
  ['posterior_spread', 'posterior spread (1/√precision)'],
];

/** How many rewards a reward history holds (Welford statistics or a window). */
const rewardCount = (h) => (h ? (h.kind === 'Window' ? h.rewards.length : h.count) : 0);

function banditRows(doc) {
  // Rounds that are over are folded into doc.pruned; doc.explorations holds the current round's.
  const pruned = doc.pruned ?? { rounds: 0, survivors: [] };
  return doc.batch_sizes.map((b) => {
    const ex = (doc.explorations ?? []).filter((e) => e.batch_size === b.batch_size);
    const last = [...ex].reverse().find((e) => e.outcome);
    const r = b.rewards ?? {};
    const round = `round ${pruned.rounds + 1}`;
    return {
      batch_size: b.batch_size,
      pruning: pruned.rounds === 0 ? round : pruned.survivors.includes(b.batch_size) ? `kept after ${pruned.rounds} round(s)` : 'pruned',
      explored: rewardCount(b.explored) + ex.length,
      last_exploration_cost: last ? joules(last.outcome.cost) : null,
      runs: r.count ?? null,
      mean_cost: r.count ? joules(-r.mean) : null,
      posterior_mean_cost: b.arm ? joules(-b.arm.param_mean) : null,
      posterior_spread: b.arm && b.arm.param_precision > 0 ? joules(1 / Math.sqrt(b.arm.param_precision)) : null,
    };
  });
}

function fillTable(table, columns, rows, get) {
  table.innerHTML = `<thead><tr>${columns.map(([, l]) => `<th scope="col">${l}</th>`).join('')}</tr></thead><tbody></tbody>`;
  const body = table.tBodies[0];
  for (const row of rows) {
    const tr = body.insertRow();
    for (const c of columns) {
      const td = tr.insertCell();
      td.dataset.key = c[0];
      const v = get(row, c);
      td.textContent = v === null || v === undefined ? '—' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v);
    }
  }
}

/** How sure a job's saving is, in a sentence for its note. */
function savingNote(v) {
  if (v.cost_fraction_uncertainty === undefined) {
    return v.basis_runs === 1
      ? 'One run: uncertainty unknown (a second run at the default batch size that reaches the target measures the spread).'
      : 'Uncertainty unknown.';
  }
  const pct = `${(v.cost_fraction_uncertainty * 100).toFixed(1)}%`;
  return `± ${pct} (${joules(v.cost_uncertainty)}) is one standard error of that estimate, from the spread of those ${v.basis_runs} runs' costs (not a bound); a saving under two standard errors is within noise, neither saved nor spent.`;
}

function renderDetail() {
  const d = jobsState.detail;
  const { summary: s, doc, trials } = d;
  $('job-title').textContent = s.job_id;
  $('job-notfound').hidden = true;
  $('job-body').hidden = false;
  const v = s.savings;
  const vd = v ? savingVerdict(v) : verdict(NaN);
  $('job-cards').innerHTML = [
    card('saved against the default (cost)', v ? vd.words : '— (no estimate yet)', `verdict-card ${v ? vd.cls : 'even'}`, 'job-saved', v ? `${joules(Math.abs(v.cost))} ${v.cost >= 0 ? 'less' : 'more'} than the default's ${joules(v.default_cost)} (Zeus cost)` : ''),
    card('energy saved', v ? joules(v.energy) : '—', '', 'job-saved-energy'),
    card('time saved', v ? duration(v.time) : '—', '', 'job-saved-time'),
    card('GPUs', gpus(s)),
    card('policy', policyName(s.policy)),
    card('workload', workloadWords(s)),
    card('stage', stageWords(s)),
    card('best batch size', s.best_batch_size),
    card('power limit', s.best_power_limit === null ? '— (no profile)' : `${s.best_power_limit} W`),
    card('trials', `${s.trials} (${s.open_trials} running)`),
    card('energy', totalEnergy(s)),
    card('time', duration(s.totals.time)),
    card('cost', joules(s.totals.cost)),
  ].join('');
  if (v) markVerdict($('job-saved').querySelector('.value'), v.cost_fraction, v.cost_fraction_uncertainty);
  $('job-saving-note').textContent = v
    ? `Saved against the default: the job's default batch size (${s.default_batch_size}) on every finished run, estimated as the mean energy and time of its ${v.basis_runs} recent run(s) at that batch size that reached the target, times the ${v.runs} finished run(s), less what the job used. Positive is saved. ${savingNote(v)}`
    : `No estimate of the default yet: no recent run at the default batch size (${s.default_batch_size}) has reached the target.`;
  $('job-sharing').hidden = !s.sharing;
  $('job-sharing').innerHTML = sharingHtml(s);
  const none = trials.every((t) => t.status === 'Dispatched');
  $('job-no-trials').hidden = !none;
  $('job-charts').hidden = none;
  fillTable($('job-trials'), TRIAL_COLUMNS, trials, (t, c) => c[2](t));
  fillTable($('job-bandit'), BANDIT_COLUMNS, banditRows(doc), (r, [k]) => r[k]);

  // Trials over time: batch size of each trial, by outcome.
  const finished = trials.filter((t) => t.status !== 'Dispatched');
  const point = (t) => ({ x: t.trial_number, y: t.batch_size });
  const byOutcome = (f) => finished.filter(f).map(point);
  d.charts.trials = {
    reached: byOutcome((t) => t.status === 'Succeeded' && t.converged),
    stopped: byOutcome((t) => t.status === 'Succeeded' && !t.converged),
    failed: byOutcome((t) => t.status === 'Failed'),
  };
  draw('chart-job-trials', {
    type: 'scatter',
    data: {
      datasets: [
        { label: 'reached the target', data: d.charts.trials.reached, backgroundColor: COLORS.wattwise },
        { label: 'stopped early', data: d.charts.trials.stopped, backgroundColor: COLORS.power, pointStyle: 'triangle', pointRadius: 5 },
        { label: 'failed (ended without a result)', data: d.charts.trials.failed, backgroundColor: COLORS.default, pointStyle: 'crossRot', pointRadius: 6, borderColor: COLORS.default },
      ],
    },
    options: { scales: { x: { title: { display: true, text: 'trial' }, ticks: { precision: 0 } }, y: { type: 'logarithmic', title: { display: true, text: 'batch size' }, afterBuildTicks: ticksAt(doc.batch_sizes.map((b) => b.batch_size)), ticks: { callback: (v) => String(v) } } } },
  });

  // Cumulative cost against the default at full power.
  const succeeded = trials.filter((t) => t.status === 'Succeeded');
  let sum = 0;
  const cum = succeeded.map((t, i) => ({ x: i + 1, y: (sum += t.cost) }));
  const est = d.defaultEstimate;
  d.charts.cost = { cumulative: cum, default: est ? cum.map((p) => ({ x: p.x, y: p.x * est.perRun })) : [] };
  $('job-estimate').textContent = est
    ? `Default estimate: the mean cost of the ${est.basis} run(s) at the default batch size (${doc.params.default_batch_size}) that reached the target, ${joules(est.perRun)} per run, times the runs finished. Those runs ran at whatever power limit the GPU had (full power unless an agent lowered it), so the estimate is of the default batch size, not of a measured full-power run.`
    : `Not enough data for a default estimate: no run at the default batch size (${doc.params.default_batch_size}) has reached the target yet.`;
  draw('chart-job-cost', {
    type: 'line',
    data: {
      datasets: [
        { label: 'this job', data: d.charts.cost.cumulative, borderColor: COLORS.wattwise, backgroundColor: COLORS.wattwise, pointRadius: 0, borderWidth: 2 },
        { label: `default (bs ${doc.params.default_batch_size}), estimated`, data: d.charts.cost.default, borderColor: COLORS.default, borderDash: [6, 4], pointRadius: 0, borderWidth: 2 },
      ],
    },
    options: { scales: { x: { type: 'linear', title: { display: true, text: 'finished run' }, ticks: { precision: 0 } }, y: { ticks: { callback: (v) => joules(v) } } } },
  });

  // Power profiles: average power and throughput against the limit; the chosen limit marked.
  const profiles = doc.profiles ?? [];
  $('job-profiles-none').hidden = profiles.length > 0;
  $('job-profiles-figure').hidden = profiles.length === 0;
  d.charts.profiles = profiles.map((p) => ({
    batch_size: p.batch_size,
    phase: p.phase,
    power: p.measurements.map((m) => ({ x: m.power_limit, y: m.average_power })),
    throughput: p.measurements.map((m) => ({ x: m.power_limit, y: m.throughput })),
    chosen: p.batch_size === s.best_batch_size && p.phase === 'train' ? s.best_power_limit : null,
  }));
  const palette = ['#15803d', '#7c3aed', '#1d4ed8', '#b45309', '#0e7490', '#be185d'];
  draw('chart-job-profiles', {
    type: 'scatter',
    data: {
      datasets: d.charts.profiles.flatMap((p, i) => [
        { label: `bs ${p.batch_size} ${p.phase}: average power (W)`, data: p.power, yAxisID: 'w', showLine: true, borderColor: palette[i % 6], backgroundColor: palette[i % 6],
          pointRadius: p.power.map((q) => (q.x === p.chosen ? 8 : 3)), pointStyle: p.power.map((q) => (q.x === p.chosen ? 'star' : 'circle')) },
        { label: `bs ${p.batch_size} ${p.phase}: throughput (samples/s)`, data: p.throughput, yAxisID: 'tp', showLine: true, borderDash: [4, 3], borderColor: palette[i % 6], backgroundColor: palette[i % 6],
          pointRadius: p.throughput.map((q) => (q.x === p.chosen ? 8 : 3)), pointStyle: p.throughput.map((q) => (q.x === p.chosen ? 'star' : 'circle')) },
      ]),
    },
    options: {
      scales: {
        x: { title: { display: true, text: 'power limit (W)' } },
        w: { position: 'left', title: { display: true, text: 'average power (W)' } },
        tp: { position: 'right', title: { display: true, text: 'throughput (samples/s)' }, grid: { drawOnChartArea: false } },
      },
    },
  });
  $('job-chosen').textContent = s.best_power_limit === null ? '' : `★ marks the chosen limit: ${s.best_power_limit} W for batch size ${s.best_batch_size} (least Zeus cost on its training profile).`;
  d.profileBounds = profileBoundLines(profiles);
  const bounds = $('job-profile-bounds');
  bounds.replaceChildren(...d.profileBounds.map((line) => Object.assign(document.createElement('li'), { textContent: line })));
  bounds.hidden = d.profileBounds.length === 0;
}

/**
 * One line per profile that carries energy bounds or the uncertain note: each
 * limit's energy of one step per GPU (average power × batch size ÷ throughput)
 * ± its bound, and, when the profile windows were too short to tell the chosen
 * limit from others, which limits.
 */
export function profileBoundLines(profiles) {
  const j = (v) => `${Number(v.toPrecision(3))} J`;
  const lines = [];
  for (const p of profiles) {
    const bounded = p.measurements.some((m) => typeof m.energy_uncertainty_j === 'number');
    const uncertain = p.uncertain ?? [];
    if (!bounded && uncertain.length === 0) continue;
    const head = `bs ${p.batch_size} ${p.phase}`;
    if (bounded) {
      const per = p.measurements.map((m) => {
        if (!(m.throughput > 0)) return `${m.power_limit} W —`;
        const e = (m.average_power * p.batch_size) / m.throughput;
        const u = typeof m.energy_uncertainty_j === 'number' ? ` ± ${j(m.energy_uncertainty_j)}` : ' (no bound)';
        return `${m.power_limit} W ${j(e)}${u}`;
      });
      lines.push(`${head}, energy per step per GPU: ${per.join(' · ')}`);
    }
    if (uncertain.length > 0) {
      const [chosen, ...others] = uncertain;
      lines.push(`${head}: profile uncertain: its windows were too short to tell the chosen ${chosen} W from ${others.map((w) => `${w} W`).join(', ')} (their energies lie within each other's bounds).`);
    }
  }
  return lines;
}

async function loadDetail(jobId) {
  const id = encodeURIComponent(jobId);
  // The summary first: an unknown job costs one request (its 404), then no more.
  const summary = await api(`/jobs/${id}/summary`);
  const [doc, rows] = await Promise.all([api(`/jobs/${id}`), api(`/jobs/${id}/trials`)]);
  const trials = withCost(rows, doc.params);
  jobsState.detail = { summary, doc, trials, defaultEstimate: defaultEstimate(trials, doc.params), charts: {} };
  renderDetail();
}

// ---------------------------------------------------------------- routing and wiring

let timer = null;

/** Ends the refreshes of the view shown (a job that does not exist, an empty list). */
function stopPolling() {
  clearInterval(timer);
  timer = null;
  jobsState.polling = false;
}

function showNotFound(message) {
  jobsState.notFound = true;
  $('job-body').hidden = true;
  $('job-notfound').hidden = false;
  const id = decodeURIComponent(location.hash.replace(/^#jobs\//, ''));
  $('job-title').textContent = id;
  $('job-notfound').textContent = `This endpoint has no job ${id} (${message}). Check the id in the list of jobs; this view no longer refreshes.`;
}

function route() {
  const m = location.hash.match(/^#jobs(?:\/(.+))?$/);
  const jobs = Boolean(m);
  document.body.classList.toggle('jobs-mode', jobs);
  document.querySelector('.top h1 span').textContent = jobs ? 'jobs' : 'what-if simulator';
  $('jobs-view').hidden = !jobs;
  document.querySelector('main.layout').hidden = jobs;
  $('nav-whatif').setAttribute('aria-current', jobs ? 'false' : 'page');
  $('nav-jobs').setAttribute('aria-current', jobs ? 'page' : 'false');
  stopPolling();
  jobsState.notFound = false;
  if (!jobs) return;
  const jobId = m[1] ? decodeURIComponent(m[1]) : null;
  $('jobs-list').hidden = Boolean(jobId);
  $('job-detail').hidden = !jobId;
  const refresh = () => guarded(() => (jobId ? loadDetail(jobId) : loadList())).then(() => jobsState.refreshes++);
  refresh();
  // Live: re-read what is on screen while the view is open.
  jobsState.polling = true;
  timer = setInterval(() => {
    if ($('token-form').hidden) refresh();
  }, REFRESH_MS);
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The CSV of the list as shown (filter and sort applied). */
export function listCsv() {
  return toCsv(CSV_COLUMNS.map(([k]) => k), visibleRows().map((s) => CSV_COLUMNS.map(([, get]) => get(s))));
}

/** The CSV of a job's trials as shown. */
export function trialsCsv() {
  const d = jobsState.detail;
  const cols = ['job_id', 'trial_number', 'batch_size', 'type', 'status', 'converged', 'energy', 'energy_uncertainty_j', 'time', 'cost', 'start_ms', 'end_ms'];
  return toCsv(cols, d.trials.map((t) => cols.map((c) => (c === 'job_id' ? d.summary.job_id : t[c]))));
}

/**
 * "Simulate this job": asks the core (through the simulator's worker) for the
 * built-in workload closest to the job's spec and profiles, then opens the what-if
 * view on it with the job's knobs.
 */
async function simulateJob(closest) {
  const d = jobsState.detail;
  if (!d) return;
  $('job-simulate-error').hidden = true;
  try {
    const c = await closest({ params: d.doc.params, profiles: d.doc.profiles ?? [] });
    jobsState.closest = c;
    const pairs = c.batch_sizes.map((b) => (b.job === b.trace ? `${b.job}` : `${b.job}→${b.trace}`)).join(', ');
    const match = `${c.dataset} on ${c.gpu}, GPU by ${c.gpu_match === 'name' ? 'name' : 'largest power limit'}; batch sizes ${pairs}`;
    const q = new URLSearchParams({
      source: 'zeus', workload: c.dataset, gpu: c.gpu, default_batch_size: String(c.default_batch_size),
      policy: c.policy, eta: String(c.eta), beta: c.beta === null ? 'inf' : String(c.beta),
      from_job: d.summary.job_id, match,
    });
    const keep = new URLSearchParams(location.search).get('refresh_ms');
    if (keep) q.set('refresh_ms', keep);
    location.assign(`${location.pathname}?${q}`);
  } catch (e) {
    $('job-simulate-error').hidden = false;
    $('job-simulate-error').textContent = `Cannot match this job to a built-in workload: ${e.message}`;
  }
}

export function initJobs({ closest } = {}) {
  $('job-simulate').addEventListener('click', () => simulateJob(closest));
  $('jobs-table').addEventListener('click', (e) => {
    const th = e.target.closest('th[data-key]');
    if (!th) return;
    const key = th.dataset.key;
    jobsState.sort = { key, dir: jobsState.sort.key === key ? -jobsState.sort.dir : -1 };
    renderList();
  });
  $('jobs-search').addEventListener('input', (e) => {
    jobsState.prefix = e.target.value.trim();
    renderList();
  });
  $('jobs-next').addEventListener('click', () => {
    jobsState.pageIndex++;
    guarded(loadList);
  });
  $('jobs-prev').addEventListener('click', () => {
    jobsState.pageIndex = Math.max(0, jobsState.pageIndex - 1);
    guarded(loadList);
  });
  $('jobs-csv').addEventListener('click', () => download('wattwise-jobs.csv', listCsv()));
  $('job-csv').addEventListener('click', () => download(`wattwise-${jobsState.detail.summary.job_id}-trials.csv`, trialsCsv()));
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-input').value = '';
    $('token-form').hidden = true;
    route();
  });
  window.addEventListener('hashchange', route);
  route();
}
