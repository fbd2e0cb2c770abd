// End-to-end test of the jobs view (#jobs) in Debian's headless Chromium, driven by
// playwright-core, against a real endpoint serving the page (tests/jobs-page/run.sh
// starts wattwise-server with a token and --web web/dist). The jobs are made by real
// clients: Zeus's own Python client and the agent on the fake NVML (run.sh, before
// this test; the agent again during it, tests/jobs-page/clients.py), and this
// process over HTTP as a training script would (register, ask for a batch size,
// report; a power profile as the agent posts it). Settings:
//   BASE_URL      the endpoint (which serves the page at /)
//   TOKEN         its bearer token
//   ARTIFACTS_DIR where the screenshots go
//   CLIENT_JOBS   the JSON file clients.py wrote (the Zeus client's jobs)
//   AGENT_JOB     the agent's job id;  CLIENTS  tests/jobs-page/clients.py

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { duration, joules, joulesWithBound } from '../../web/src/format.js';
import { VIEWPORTS, assertLayout, assertVerdicts, expectedVerdict } from './layout.mjs';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/$/, '');
const TOKEN = process.env.TOKEN;
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'artifacts';
const { CLIENT_JOBS, AGENT_JOB, CLIENTS } = process.env;
for (const [k, v] of Object.entries({ BASE_URL, TOKEN, CLIENT_JOBS, AGENT_JOB, CLIENTS })) {
  if (!v) throw new Error(`${k} is not set (run tests/jobs-page/run.sh)`);
}

let context;
let page;
let userDataDir;
const errors = [];
const run = Math.random().toString(16).slice(2, 8);

/** The endpoint, as a client calls it. */
async function call(method, p, body) {
  const r = await fetch(`${BASE_URL}${p}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function spec(jobId, extra = {}) {
  return {
    job_id: jobId, job_id_prefix: `e2e${run}`, batch_sizes: [16, 32, 64], default_batch_size: 32,
    max_power: 300, number_of_gpus: 1, gpu_model: 'A40', mab_seed: 3, max_epochs: 10, ...extra,
  };
}

/** One run of a job, as a training script does it: the batch size, then its result. */
async function trainOnce(jobId, { energy, time, metric, bound }) {
  const t = await call('GET', `/jobs/batch_size?job_id=${encodeURIComponent(jobId)}`);
  const extra = bound === undefined ? {} : { energy_uncertainty_j: bound };
  await call('POST', '/report', { ...t, time, energy, metric, current_epoch: 1, ...extra });
  return t;
}

const ids = {
  busy: `e2e${run}-busy`, profiled: `e2e${run}-prof`, idle: `e2e${run}-idle`,
  // Two wattwise jobs of one workload (issue 27): the second learns from the first.
  teacher: `e2e${run}-teach`, learner: `e2e${run}-learn`,
  // Jobs of the default batch size alone: three runs (a standard error of the
  // saving, within noise) and one (its uncertainty unknown), each with its bound.
  sure: `e2e${run}-sure`, once: `e2e${run}-once`,
};
const workload = `e2e${run}-wl`;
// Made by the real clients before this test (tests/jobs-page/run.sh).
const clients = JSON.parse(fs.readFileSync(CLIENT_JOBS, 'utf8'));
const zeusJobs = clients.zeus;
const every = [...Object.values(ids), ...zeusJobs, AGENT_JOB];

/** A cell of the job tables as the page writes it (fillTable). */
const cellText = (v) => (v === null || v === undefined ? '—' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v));
const when = (ms) => `${new Date(ms).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
const stage = (a) => (a.policy === 'wattwise' ? 'searching nearby batch sizes' : a.stage === 'Pruning' ? 'trying each batch size' : 'settled: picking among the best batch sizes');
const policy = (a) => ({ zeus: 'Zeus', wattwise: "wattwise's" })[a.policy];
/** The workload cell and card: the name, and how many jobs it learned from. */
function workloadText(a) {
  if (!a.workload) return '—';
  if (a.sharing?.dropped) return `${a.workload} (dropped what it learned)`;
  const n = a.sharing?.from.length ?? 0;
  return n ? `${a.workload} (learned from ${n} job${n === 1 ? '' : 's'})` : a.workload;
}

/** The list row of a summary as the page must show it: every column, from the API's numbers. */
function listRow(a) {
  const v = a.savings;
  return {
    job_id: a.job_id,
    saved: v ? expectedVerdict(v.cost_fraction, v.cost_fraction_uncertainty).words : '—', saved_energy: v ? joules(v.energy) : '—', saved_time: v ? duration(v.time) : '—',
    stage: stage(a), policy: policy(a), gpus: `${a.number_of_gpus} × ${a.gpu_model}`, workload: workloadText(a), best_batch_size: String(a.best_batch_size),
    best_power_limit: a.best_power_limit === null ? '—' : `${a.best_power_limit} W`,
    trials: String(a.trials), open_trials: String(a.open_trials),
    energy: joulesWithBound(a.totals.energy, a.totals.energy_uncertainty_j), time: duration(a.totals.time), cost: joules(a.totals.cost),
    last_activity_ms: when(a.last_activity_ms), created_ms: when(a.created_ms),
  };
}

/** The saving the API must report: the mean of the default batch size's runs that reached the target, times the finished runs, less the totals. */
function expectedSavings(summary, doc, trials) {
  const p = doc.params;
  const basis = trials.filter((t) => t.status === 'Succeeded' && t.batch_size === p.default_batch_size && t.converged);
  if (basis.length === 0) return null;
  const mean = (f) => basis.reduce((a, t) => a + f(t), 0) / basis.length;
  const [energy, time] = [mean((t) => t.energy), mean((t) => t.time)];
  const n = summary.totals.finished_trials;
  const defaultCost = n * (p.eta_knob * energy + (1 - p.eta_knob) * p.max_power * time);
  // One standard error of the default's mean cost per run (sample deviation over
  // the root of the runs), times the finished runs; none from one run.
  const costs = basis.map((t) => p.eta_knob * t.energy + (1 - p.eta_knob) * p.max_power * t.time);
  const m = costs.reduce((a, c) => a + c, 0) / costs.length;
  const se = costs.length < 2 ? undefined : Math.sqrt(costs.reduce((a, c) => a + (c - m) ** 2, 0) / (costs.length - 1) / costs.length);
  return {
    energy: n * energy - summary.totals.energy, time: n * time - summary.totals.time, cost: defaultCost - summary.totals.cost, default_cost: defaultCost,
    cost_uncertainty: se === undefined ? undefined : n * se,
  };
}

/** The totals' bound the API must report: the sum of the finished trials' bounds when every one has one. */
function expectedBound(trials) {
  const done = trials.filter((t) => t.status === 'Succeeded');
  if (done.length === 0 || done.some((t) => t.energy_uncertainty_j === undefined)) return undefined;
  return done.reduce((a, t) => a + t.energy_uncertainty_j, 0);
}

/** Opens a job's detail and checks every number on it against the API's. */
async function assertDetailIsTheApis(id) {
  await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs/${id}`);
  await page.waitForFunction((j) => window.wattwiseJobs.detail?.summary.job_id === j, id);
  const [summary, doc, trials] = await Promise.all([call('GET', `/jobs/${id}/summary`), call('GET', `/jobs/${id}`), call('GET', `/jobs/${id}/trials`)]);
  const d = await page.evaluate(() => window.wattwiseJobs.detail);
  assert.deepEqual(d.summary, summary, `${id}: the summary shown`);
  const cards = await page.$$eval('#job-cards .card', (cs) => Object.fromEntries(cs.map((c) => [c.querySelector('.label').textContent, c.querySelector('.value').textContent])));
  // The saving is the API's, and the API's is the default's estimate on the trials.
  const v = summary.savings;
  const want = expectedSavings(summary, doc, trials);
  assert.equal(v === null, want === null, `${id}: an estimate exactly when a default run reached the target`);
  if (v) {
    for (const k of ['energy', 'time', 'cost', 'default_cost']) assert.ok(Math.abs(v[k] - want[k]) <= 1e-9 * Math.max(1, Math.abs(want[k])), `${id}: savings.${k} ${v[k]} vs ${want[k]}`);
    assert.ok(Math.abs(v.cost_fraction - v.cost / v.default_cost) < 1e-12);
    // How sure: the standard error from the basis runs (absent with one), as cost and as a fraction.
    assert.equal(v.cost_uncertainty === undefined, want.cost_uncertainty === undefined, `${id}: a standard error exactly from two basis runs on (${v.basis_runs})`);
    if (want.cost_uncertainty !== undefined) {
      assert.ok(Math.abs(v.cost_uncertainty - want.cost_uncertainty) <= 1e-9 * Math.max(1, want.cost_uncertainty), `${id}: cost_uncertainty ${v.cost_uncertainty} vs ${want.cost_uncertainty}`);
      assert.ok(Math.abs(v.cost_fraction_uncertainty - v.cost_uncertainty / v.default_cost) < 1e-12);
    }
    const note = await page.textContent('#job-saving-note');
    if (v.basis_runs === 1) assert.match(note, /One run: uncertainty unknown/, `${id}: the note`);
    else assert.ok(note.includes(`± ${(v.cost_fraction_uncertainty * 100).toFixed(1)}% (${joules(v.cost_uncertainty)}) is one standard error`), `${id}: the note: ${note}`);
  }
  // The totals' bound: only where every finished trial in the document gave one
  // (the document's trials are all of them here: no job of this test has archived any).
  assert.equal(summary.totals.energy_uncertainty_j, expectedBound(trials), `${id}: the totals' bound`);
  assert.deepEqual(cards, {
    'saved against the default (cost)': v ? expectedVerdict(v.cost_fraction, v.cost_fraction_uncertainty).words : '— (no estimate yet)',
    'energy saved': v ? joules(v.energy) : '—', 'time saved': v ? duration(v.time) : '—',
    GPUs: `${summary.number_of_gpus} × ${summary.gpu_model}`, policy: policy(summary),
    workload: workloadText(summary), stage: stage(summary), 'best batch size': String(summary.best_batch_size),
    'power limit': summary.best_power_limit === null ? '— (no profile)' : `${summary.best_power_limit} W`,
    trials: `${summary.trials} (${summary.open_trials} running)`,
    energy: joulesWithBound(summary.totals.energy, summary.totals.energy_uncertainty_j), time: duration(summary.totals.time), cost: joules(summary.totals.cost),
  }, `${id}: the cards`);
  // Every trial row: the API's numbers, the cost by Zeus's formula on them.
  const eta = doc.params.eta_knob;
  const rows = await page.$$eval('#job-trials tbody tr', (trs) => trs.map((tr) => Object.fromEntries([...tr.cells].map((td) => [td.dataset.key, td.textContent]))));
  assert.equal(rows.length, trials.length, `${id}: one row per trial`);
  trials.forEach((t, i) => {
    const cost = t.status === 'Succeeded' ? eta * t.energy + (1 - eta) * doc.params.max_power * t.time : null;
    assert.equal(rows[i].trial_number, String(t.trial_number));
    assert.equal(rows[i].batch_size, String(t.batch_size));
    // A trial without a result shows empty cells.
    // With the bound of its last report when it gave one (issue 23).
    assert.equal(rows[i].energy, t.energy === null || t.energy === undefined ? '' : joulesWithBound(t.energy, t.energy_uncertainty_j), `${id} trial ${t.trial_number} energy`);
    assert.equal(rows[i].time, t.time === null || t.time === undefined ? '' : duration(t.time), `${id} trial ${t.trial_number} time`);
    assert.equal(rows[i].cost, cost === null ? '' : joules(cost), `${id} trial ${t.trial_number} cost`);
    assert.equal(rows[i].start_ms, when(t.start_ms), `${id} trial ${t.trial_number} start, in UTC like the list`);
  });
  // The trials chart by its data: each finished trial once, by outcome.
  const byOutcome = (f) => trials.filter((t) => t.status !== 'Dispatched').filter(f).map((t) => ({ x: t.trial_number, y: t.batch_size }));
  assert.deepEqual(d.charts.trials, {
    reached: byOutcome((t) => t.status === 'Succeeded' && t.converged),
    stopped: byOutcome((t) => t.status === 'Succeeded' && !t.converged),
    failed: byOutcome((t) => t.status === 'Failed'),
  }, `${id}: the trials chart`);
  // The bandit table: one row per batch size, the document's numbers.
  const bandit = await page.$$eval('#job-bandit tbody tr', (trs) => trs.map((tr) => Object.fromEntries([...tr.cells].map((td) => [td.dataset.key, td.textContent]))));
  assert.deepEqual(bandit.map((r) => r.batch_size), doc.batch_sizes.map((b) => String(b.batch_size)));
  doc.batch_sizes.forEach((b, i) => {
    const r = b.rewards.kind === 'All' ? b.rewards : null;
    assert.equal(bandit[i].runs, cellText(r ? r.count : null), `${id} bs ${b.batch_size} runs`);
    assert.equal(bandit[i].mean_cost, r && r.count ? joules(-r.mean) : '—', `${id} bs ${b.batch_size} mean cost`);
    assert.equal(bandit[i].posterior_mean_cost, b.arm ? joules(-b.arm.param_mean) : '—', `${id} bs ${b.batch_size} posterior`);
  });
  // The profiles chart: the API's profiles, the chosen limit marked.
  const profiles = await call('GET', `/jobs/${id}/profiles`);
  assert.deepEqual(d.charts.profiles.map((p) => [p.batch_size, p.phase, p.power, p.throughput]),
    profiles.map((p) => [p.batch_size, p.phase, p.measurements.map((m) => ({ x: m.power_limit, y: m.average_power })), p.measurements.map((m) => ({ x: m.power_limit, y: m.throughput }))]),
    `${id}: the profiles chart`);
  return { summary, doc, trials, profiles, d };
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await call('POST', '/jobs', spec(ids.idle));
  await call('POST', '/jobs', spec(ids.profiled));
  await call('POST', '/jobs', spec(ids.busy));
  for (let i = 0; i < 4; i++) await trainOnce(ids.busy, { energy: 1000 + 100 * i, time: 10 + i, metric: 0.9 });
  await trainOnce(ids.busy, { energy: 5000, time: 50, metric: 0.1, bound: 12 });
  await call('POST', `/jobs/${ids.profiled}/profiles`, {
    batch_size: 32, phase: 'train', gpu_model: 'A40',
    measurements: [
      { power_limit: 300, average_power: 290, throughput: 1000, energy_uncertainty_j: 0.25 },
      { power_limit: 250, average_power: 240, throughput: 990, energy_uncertainty_j: 0.125 },
      { power_limit: 200, average_power: 195, throughput: 950, energy_uncertainty_j: 0.5 },
      { power_limit: 100, average_power: 99, throughput: 300 },
    ],
    // The agent's note: its windows could not tell 200 W from 250 W.
    uncertain: [200, 250],
  });
  const shared = { policy: 'wattwise', workload };
  await call('POST', '/jobs', spec(ids.teacher, shared));
  for (let i = 0; i < 2; i++) await trainOnce(ids.teacher, { energy: 1000, time: 10, metric: 0.9 });
  await call('POST', '/jobs', spec(ids.learner, { ...shared, gpu_model: 'V100' }));
  await trainOnce(ids.learner, { energy: 1200, time: 12, metric: 0.9 });
  const alone = { batch_sizes: [32] };
  await call('POST', '/jobs', spec(ids.sure, alone));
  for (const [energy, time, bound] of [[1000, 10, 4], [1100, 11, 5], [900, 9, 3]]) await trainOnce(ids.sure, { energy, time, metric: 0.9, bound });
  await call('POST', '/jobs', spec(ids.once, alone));
  await trainOnce(ids.once, { energy: 1000, time: 10, metric: 0.9, bound: 4 });
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wattwise-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 1000 },
    acceptDownloads: true,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
});

after(async () => {
  await context?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });

test('the jobs view asks for the token once and keeps it out of the URL', async () => {
  await page.goto(`${BASE_URL}/?refresh_ms=500#jobs`);
  await page.waitForSelector('#token-form:not([hidden])');
  assert.equal(await page.isHidden('main.layout'), true, 'the what-if view is hidden');
  await page.fill('#token-input', TOKEN);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector(`#jobs-table tr[data-job="${ids.busy}"]`);
  assert.ok(!page.url().includes(TOKEN), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('wattwise-token')), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  // A reload in the same tab does not ask again.
  await page.reload();
  await page.waitForSelector(`#jobs-table tr[data-job="${ids.busy}"]`);
  assert.equal(await page.isHidden('#token-form'), true);
});

test('the list shows what GET /jobs returns', async () => {
  const api = await call('GET', '/jobs?limit=50');
  await page.waitForFunction(() => window.wattwiseJobs.page !== null);
  const shown = await page.evaluate(() => window.wattwiseJobs.page);
  // The same jobs in the same order (numbers may move on between the two reads only for other jobs).
  assert.deepEqual(shown.jobs.map((j) => j.job_id), api.jobs.map((j) => j.job_id));
  for (const id of every) {
    const a = api.jobs.find((j) => j.job_id === id);
    assert.ok(a, `${id} is listed`);
    assert.deepEqual(shown.jobs.find((j) => j.job_id === id), a, id);
    const cells = await page.$$eval(`#jobs-table tr[data-job="${id}"] td`, (tds) => Object.fromEntries(tds.map((td) => [td.dataset.key, td.textContent])));
    assert.deepEqual(cells, listRow(a), `${id}: every column of its row`);
  }
  // Zeus's client: three runs of one job (reached, stopped above beta x min cost, stopped at max epochs).
  const zeusA = api.jobs.find((j) => j.job_id === zeusJobs[0]);
  assert.equal(zeusA.trials, 3);
  assert.equal(zeusA.best_batch_size, 32);
  // The agent's job: its profile chose a limit.
  assert.notEqual(api.jobs.find((j) => j.job_id === AGENT_JOB).best_power_limit, null);
  const busy = api.jobs.find((j) => j.job_id === ids.busy);
  assert.equal(busy.trials, 5);
  assert.equal(busy.totals.energy, 1000 + 1100 + 1200 + 1300 + 5000);
  assert.equal(api.jobs.find((j) => j.job_id === ids.profiled).best_power_limit, 200);
  // The busy job ran its default (32) to the target first: it has a saving; the idle one none.
  assert.notEqual(busy.savings, null);
  assert.equal(api.jobs.find((j) => j.job_id === ids.idle).savings, null);
  // The fleet total at the top: the sum of the jobs' savings on the page.
  const est = shown.jobs.filter((j) => j.savings);
  const sum = (k) => est.reduce((a, j) => a + j.savings[k], 0);
  assert.equal(await page.textContent('#fleet-energy .value'), joules(sum('energy')));
  assert.equal(await page.textContent('#fleet-time .value'), duration(sum('time')));
  // Its standard error: the root of the sum of the jobs' squares, when every job has one.
  const fleetU = est.every((j) => j.savings.cost_uncertainty !== undefined) ? Math.sqrt(est.reduce((a, j) => a + j.savings.cost_uncertainty ** 2, 0)) / sum('default_cost') : undefined;
  assert.equal(await page.textContent('#fleet-saved .value'), expectedVerdict(sum('cost') / sum('default_cost'), fleetU).words);
  assert.ok((await assertVerdicts(page, 'jobs list')) >= 2);
  await shot('jobs-list.png');
});

test('sort, id-prefix search and CSV export', async () => {
  await page.click('#jobs-table th[data-key="trials"] button');
  const trials = await page.$$eval('#jobs-table tbody td[data-key="trials"]', (tds) => tds.map((td) => Number(td.textContent)));
  assert.deepEqual(trials, [...trials].sort((a, b) => b - a), 'sorted by trials, descending');
  await page.fill('#jobs-search', `e2e${run}-p`);
  const rows = await page.$$eval('#jobs-table tbody tr', (trs) => trs.map((tr) => tr.dataset.job));
  assert.deepEqual(rows, [ids.profiled]);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#jobs-csv')]);
  const csv = fs.readFileSync(await download.path(), 'utf8').trim().split('\n');
  assert.equal(csv.length, 2, csv.join('\n'));
  assert.ok(csv[0].startsWith('job_id,stage,policy'));
  assert.ok(csv[1].startsWith(`${ids.profiled},`));
  await page.fill('#jobs-search', '');
});

test('a job: trials, cost against the default estimate, bandit state, profiles', async () => {
  await page.click(`#jobs-table a[href="#jobs/${ids.busy}"]`);
  await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, ids.busy);
  const d = await page.evaluate(() => window.wattwiseJobs.detail);
  const trials = await call('GET', `/jobs/${ids.busy}/trials`);
  const doc = await call('GET', `/jobs/${ids.busy}`);
  const eta = doc.params.eta_knob;
  const cost = (t) => eta * t.energy + (1 - eta) * doc.params.max_power * t.time;
  const ok = trials.filter((t) => t.status === 'Succeeded');
  assert.equal(d.charts.trials.reached.length, ok.filter((t) => t.converged).length);
  assert.equal(d.charts.trials.stopped.length, ok.filter((t) => !t.converged).length);
  assert.deepEqual(d.charts.trials.reached.map((p) => p.y), ok.filter((t) => t.converged).map((t) => t.batch_size));
  const last = d.charts.cost.cumulative.at(-1);
  assert.equal(last.x, ok.length);
  assert.ok(Math.abs(last.y - ok.reduce((a, t) => a + cost(t), 0)) < 1e-6);
  // The summary's running cost is the core's sum of the same runs.
  assert.ok(Math.abs(d.summary.totals.cost - last.y) < 1e-6 * last.y);
  const atDefault = ok.filter((t) => t.batch_size === 32 && t.converged);
  assert.ok(atDefault.length > 0, 'Zeus runs the default batch size first');
  const perRun = atDefault.reduce((a, t) => a + cost(t), 0) / atDefault.length;
  assert.ok(Math.abs(d.charts.cost.default.at(-1).y - ok.length * perRun) < 1e-6);
  assert.match(await page.textContent('#job-estimate'), /mean cost of the \d+ run/);
  // Bandit state rows: one per batch size.
  const bs = await page.$$eval('#job-bandit tbody td[data-key="batch_size"]', (tds) => tds.map((td) => Number(td.textContent)));
  assert.deepEqual(bs, doc.batch_sizes.map((b) => b.batch_size));
  const rows = await page.$$eval('#job-trials tbody td[data-key="energy"]', (tds) => tds.map((td) => td.textContent));
  assert.equal(rows.length, trials.length);
  // The run reported with its energy's bound shows it; the others their energy alone.
  assert.deepEqual(trials.filter((t) => t.energy_uncertainty_j !== undefined).map((t) => [t.energy, t.energy_uncertainty_j]), [[5000, 12]]);
  assert.deepEqual(rows, trials.map((t) => (t.energy === 5000 ? '5.00 kJ ± 12 J' : t.energy === undefined ? '' : joules(t.energy))));
  await shot('job-detail.png');

  // The profiled job: its profile drawn, the chosen limit marked.
  await page.goto(`${BASE_URL}/?refresh_ms=500#jobs/${ids.profiled}`);
  await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, ids.profiled);
  const p = await page.evaluate(() => window.wattwiseJobs.detail.charts.profiles);
  assert.equal(p.length, 1);
  assert.equal(p[0].chosen, 200);
  assert.deepEqual(p[0].power.map((q) => q.x), [300, 250, 200, 100]);
  assert.match(await page.textContent('#job-chosen'), /200 W/);
  // Each limit's energy per step per GPU (average power × 32 ÷ throughput) with
  // its bound, and the note that 200 W and 250 W lie within their bounds.
  const bounds = await page.$$eval('#job-profile-bounds li', (lis) => lis.map((li) => li.textContent));
  // (This job has no finished trial: its charts, the profile's included, stay hidden.)
  assert.equal(await page.$eval('#job-profile-bounds', (e) => e.hidden), false);
  assert.deepEqual(bounds, [
    'bs 32 train, energy per step per GPU: 300 W 9.28 J ± 0.25 J · 250 W 7.76 J ± 0.125 J · 200 W 6.57 J ± 0.5 J · 100 W 10.6 J (no bound)',
    "bs 32 train: profile uncertain: its windows were too short to tell the chosen 200 W from 250 W (their energies lie within each other's bounds).",
  ]);
  assert.match(await page.textContent('#job-estimate'), /Not enough data/);
});

test('jobs of one workload: which jobs share it, and what was reused', async () => {
  const teacher = await assertDetailIsTheApis(ids.teacher);
  assert.equal(teacher.summary.workload, workload);
  assert.equal(teacher.summary.sharing.taught_runs, 2);
  assert.match(await page.textContent('#job-sharing'), /no other job's run had reached the target when it started\. Its own 2 finished runs teach/);
  const learner = await assertDetailIsTheApis(ids.learner);
  const sh = learner.summary.sharing;
  assert.deepEqual(sh.from, [ids.teacher]);
  assert.equal(sh.reused_runs, 2);
  assert.equal(learner.doc.wattwise.warm.from[0], ids.teacher);
  const text = await page.textContent('#job-sharing');
  assert.match(text, new RegExp(`Started from what 1 job of workload ${workload} \\(${ids.teacher}\\) learned: 2 of their runs`));
  assert.match(text, /Its own 1 finished run teaches the workload's other jobs\./);
  // The teacher's id links to its job.
  assert.equal(await page.getAttribute('#job-sharing a', 'href'), `#jobs/${ids.teacher}`);
  assert.equal(await page.textContent('#job-cards .card:has(.label:text-is("workload")) .value'), `${workload} (learned from 1 job)`);
  await shot('job-sharing.png');
  // A job without a workload: a dash, no sharing paragraph.
  await assertDetailIsTheApis(ids.busy);
  assert.equal(await page.isHidden('#job-sharing'), true);
});

test("the jobs of Zeus's client and of the agent: every number on screen is the API's", async () => {
  const z = await assertDetailIsTheApis(zeusJobs[0]);
  assert.equal(z.d.charts.trials.reached.length, 1);
  assert.equal(z.d.charts.trials.stopped.length, 2, 'stopped above the cost bound, stopped at max epochs');
  assert.match(await page.textContent('#job-estimate'), /mean cost of the 1 run/);
  await assertDetailIsTheApis(zeusJobs[1]);
  const a = await assertDetailIsTheApis(AGENT_JOB);
  assert.equal(a.profiles.length, 1, 'the agent posted one profile');
  assert.deepEqual(a.trials.map((t) => [t.status, t.converged]), [['Succeeded', true]], "the agent's run reached the target");
  assert.ok(a.summary.totals.energy > 0 && a.summary.totals.cost > 0, JSON.stringify(a.summary.totals));
  assert.ok(a.profiles[0].measurements.length >= 3, JSON.stringify(a.profiles));
  const p = a.d.charts.profiles[0];
  assert.equal(p.chosen, a.summary.best_power_limit);
  assert.ok(p.power.some((q) => q.x === p.chosen), 'the chosen limit is one profiled');
  assert.match(await page.textContent('#job-chosen'), new RegExp(`${a.summary.best_power_limit} W`));
  // The agent sent each limit's energy bound from its meter; the page shows them.
  for (const m of a.profiles[0].measurements) {
    assert.ok(typeof m.energy_uncertainty_j === 'number' && m.energy_uncertainty_j >= 0, JSON.stringify(m));
  }
  assert.equal(await page.isVisible('#job-profile-bounds'), true);
  // Its reports carried the meter's bound: the trial keeps the last, the page shows it.
  const energies = await page.$$eval('#job-trials tbody td[data-key="energy"]', (tds) => tds.map((td) => td.textContent));
  a.trials.forEach((t, i) => {
    assert.ok(typeof t.energy_uncertainty_j === 'number' && t.energy_uncertainty_j >= 0, JSON.stringify(t));
    assert.ok(energies[i].startsWith(`${joules(t.energy)} ± `), energies[i]);
  });
  const lines = await page.$$eval('#job-profile-bounds li', (lis) => lis.map((li) => li.textContent));
  assert.ok(lines[0].startsWith(`bs ${a.profiles[0].batch_size} train, energy per step per GPU: `), lines[0]);
  assert.equal(lines[0].split(' ± ').length - 1, a.profiles[0].measurements.length, lines[0]);
  await shot('job-detail-agent.png');
});

test('how sure a saving is: within noise with its standard error, unknown from one run; the totals with their bound', async () => {
  // Three runs at the default (costs 2000, 2200, 1800: eta 0.5, 300 W): saved 0
  // of 6000, one standard error 200 / √3 per run, times 3 (5.8% of 6000).
  const { summary: sure } = await assertDetailIsTheApis(ids.sure);
  assert.equal(sure.savings.basis_runs, 3);
  assert.ok(Math.abs(sure.savings.cost_uncertainty - 600 / Math.sqrt(3)) < 1e-9, JSON.stringify(sure.savings));
  assert.equal(await page.textContent('#job-saved .value'), 'within noise (0.0% ± 5.8%)');
  assert.equal(await page.textContent('#job-cards .card:nth-last-child(3) .value'), '3.00 kJ ± 12 J');
  assert.match(await page.textContent('#job-saving-note'), /± 5\.8% \(346\.4 J\) is one standard error of that estimate.*within noise/);
  assert.equal(await assertVerdicts(page, 'a job within noise'), 1);
  // One run at the default: no standard error, and the page says so.
  const { summary: once } = await assertDetailIsTheApis(ids.once);
  assert.equal(once.savings.basis_runs, 1);
  assert.equal(once.savings.cost_uncertainty, undefined);
  assert.equal(await page.textContent('#job-saved .value'), 'same as the default');
  assert.equal(await page.textContent('#job-cards .card:nth-last-child(3) .value'), '1.00 kJ ± 4 J');
  assert.match(await page.textContent('#job-saving-note'), /One run: uncertainty unknown/);
  // The list: the cell's title says what the ± is; the CSV has the new columns.
  await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs`);
  await page.waitForSelector(`#jobs-table tr[data-job="${ids.sure}"]`);
  const cell = (id) => `#jobs-table tr[data-job="${id}"] td[data-key="saved"]`;
  assert.equal(await page.textContent(cell(ids.sure)), 'within noise (0.0% ± 5.8%)');
  assert.match(await page.getAttribute(cell(ids.sure), 'title'), /one standard error/);
  assert.match(await page.getAttribute(cell(ids.once), 'title'), /one run at the default batch size: uncertainty unknown/);
  await page.fill('#jobs-search', `e2e${run}-sure`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#jobs-csv')]);
  const [header, row] = fs.readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => l.split(','));
  const col = (k) => row[header.indexOf(k)];
  assert.equal(col('energy_uncertainty_j'), '12');
  assert.equal(col('saved_basis_runs'), '3');
  assert.equal(Number(col('saved_cost_uncertainty')), sure.savings.cost_uncertainty);
  assert.equal(Number(col('saved_cost_fraction_uncertainty')), sure.savings.cost_fraction_uncertainty);
  await page.fill('#jobs-search', '');
});

test('the detail refreshes while the agent runs the job', async () => {
  await page.goto(`${BASE_URL}/?refresh_ms=200#jobs/${AGENT_JOB}`);
  await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, AGENT_JOB);
  const before = await page.evaluate(() => window.wattwiseJobs.detail.summary.trials);
  const runs = before;
  const agent = promisify(execFile)('python3', [CLIENTS, 'agent', BASE_URL, AGENT_JOB], { env: { ...process.env, WATTWISE_TOKEN: TOKEN }, timeout: 120000 });
  // While it runs: its trial shows up as running, without a reload.
  await page.waitForFunction((n) => window.wattwiseJobs.detail.summary.trials === n + 1, runs, { timeout: 60000 });
  const { stdout } = await agent;
  assert.match(stdout, new RegExp(AGENT_JOB));
  const api = await call('GET', `/jobs/${AGENT_JOB}/summary`);
  assert.equal(api.open_trials, 0);
  await page.waitForFunction((s) => window.wattwiseJobs.detail.summary.open_trials === 0 && window.wattwiseJobs.detail.summary.totals.energy === s.totals.energy, api, { timeout: 10000 });
  assert.equal(await page.$$eval('#job-trials tbody tr', (trs) => trs.length), api.trials);
  await assertDetailIsTheApis(AGENT_JOB);
});

test('the detail refreshes while the job reports', async () => {
  await page.goto(`${BASE_URL}/?refresh_ms=300#jobs/${ids.busy}`);
  await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, ids.busy);
  const before = await page.$$eval('#job-trials tbody tr', (trs) => trs.length);
  await trainOnce(ids.busy, { energy: 900, time: 9, metric: 0.95 });
  await page.waitForFunction((n) => document.querySelectorAll('#job-trials tbody tr').length === n + 1, before, { timeout: 10000 });
  const api = await call('GET', `/jobs/${ids.busy}/summary`);
  // A refresh between the batch size and the report shows the trial running: wait
  // for the one after the report.
  await page.waitForFunction((s) => {
    const shown = window.wattwiseJobs.detail.summary;
    return shown.trials === s.trials && shown.open_trials === 0 && shown.totals.energy === s.totals.energy;
  }, api, { timeout: 10000 });
  assert.equal(api.open_trials, 0);
});

test('an unreachable endpoint is shown, and recovery clears it', async () => {
  await page.route('**/jobs/**', (r) => r.abort('connectionrefused'));
  await page.waitForSelector('#jobs-notice:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#jobs-notice'), /unreachable/);
  await page.unroute('**/jobs/**');
  await page.waitForSelector('#jobs-notice', { state: 'hidden', timeout: 10000 });
});

test('simulate this job: the what-if view on the closest built-in workload, with the job\'s knobs', async () => {
  const id = zeusJobs[0];
  const doc = await call('GET', `/jobs/${id}`);
  await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs/${id}`);
  await page.waitForFunction((j) => window.wattwiseJobs.detail?.summary.job_id === j, id);
  await Promise.all([page.waitForURL(/from_job=/), page.click('#job-simulate')]);
  const q = new URL(page.url()).searchParams;
  assert.equal(new URL(page.url()).hash, '', 'the what-if view');
  await page.waitForSelector('#results:not([hidden])', { timeout: 60000 });
  // The knobs are the job's: eta, beta, policy; the default batch size the trace's nearest.
  const form = await page.evaluate(() => Object.fromEntries(['workload', 'gpu', 'default_batch_size', 'policy', 'eta', 'beta'].map((k) => [k, document.forms[0].elements[k].value])));
  assert.equal(Number(form.eta), doc.params.eta_knob);
  assert.equal(form.beta, doc.params.beta_knob === null ? 'inf' : String(doc.params.beta_knob));
  assert.equal(form.policy, doc.params.policy ?? 'zeus');
  assert.equal(form.workload, q.get('workload'));
  assert.equal(form.gpu, q.get('gpu'));
  assert.equal(form.default_batch_size, q.get('default_batch_size'));
  // Zeus's client's stand-in GPU is an A100, not in the traces: matched by its 300 W.
  assert.ok(['a40', 'v100'].includes(form.gpu), form.gpu);
  // The job's batch sizes (16, 32, 64; default 32) are BERT fine-tuning's: squad's default is 32.
  assert.equal(form.workload, 'squad');
  assert.equal(form.default_batch_size, '32');
  const caption = await page.evaluate(() => document.getElementById('summary').dataset.caption);
  assert.ok(caption.startsWith(`squad/bert_base_uncased on ${form.gpu}, eta ${doc.params.eta_knob}`), caption);
  assert.match(await page.textContent('#from-job'), new RegExp(`Simulating job ${id}`));
  await shot('whatif-from-job.png');
});

test('a job with no finished trial says so instead of empty charts', async () => {
  await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs/${ids.idle}`);
  await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, ids.idle);
  assert.equal(await page.isVisible('#job-no-trials'), true);
  assert.equal(await page.isHidden('#job-charts'), true);
  assert.equal(await page.textContent('#job-saved .value'), '— (no estimate yet)');
  assert.match(await page.textContent('#job-saving-note'), /No estimate of the default yet/);
});

test('an unknown job: one request, its 404, then no more', async () => {
  const seen = [];
  const listen = (r) => seen.push(r.url());
  const missing = `no-such-job-${run}`;
  page.on('request', listen);
  await page.goto(`${BASE_URL}/?refresh_ms=100#jobs/${missing}`);
  await page.waitForSelector('#job-notfound:not([hidden])');
  await page.waitForTimeout(1000); // ten refresh periods
  page.off('request', listen);
  const api = seen.filter((u) => new URL(u).pathname.startsWith('/jobs'));
  assert.deepEqual(api, [`${BASE_URL}/jobs/${missing}/summary`]);
  assert.match(await page.textContent('#job-notfound'), new RegExp(`has no job ${missing}`));
  assert.equal(await page.isHidden('#job-body'), true);
});

test('an empty endpoint says so and stops asking', async () => {
  let asked = 0;
  await page.route(/\/jobs\?/, (r) => {
    asked++;
    r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ jobs: [], next_cursor: null }) });
  });
  await page.goto(`${BASE_URL}/?refresh_ms=100#jobs`);
  await page.waitForSelector('#jobs-empty:not([hidden])');
  await page.waitForTimeout(1000);
  await page.unroute(/\/jobs\?/);
  assert.equal(asked, 1);
  assert.match(await page.textContent('#jobs-empty'), /No jobs on this endpoint yet/);
});

test('the layout holds at 390x844 and 1440x900 on the list and on a job', async () => {
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs`);
    await page.waitForFunction(() => window.wattwiseJobs.refreshes > 0 && window.wattwiseJobs.page);
    await assertVerdicts(page, `jobs list ${vp.width}`);
    await assertLayout(page, ARTIFACTS, `layout-jobs-${vp.width}x${vp.height}`);
    await page.goto(`${BASE_URL}/?refresh_ms=60000#jobs/${ids.busy}`);
    await page.waitForFunction((id) => window.wattwiseJobs.detail?.summary.job_id === id, ids.busy);
    assert.ok((await assertVerdicts(page, `job ${vp.width}`)) >= 1);
    await assertLayout(page, ARTIFACTS, `layout-job-${vp.width}x${vp.height}`);
  }
  await page.setViewportSize({ width: 1400, height: 1000 });
});

test('usable at a phone width (390 px)', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, name] of [['#jobs', 'jobs-list-390.png'], [`#jobs/${ids.busy}`, 'job-detail-390.png'], ['', 'whatif-390.png']]) {
    await page.goto(`${BASE_URL}/?refresh_ms=1000${hash}`);
    if (hash) await page.waitForFunction(() => window.wattwiseJobs.refreshes > 0);
    else await page.waitForSelector('#results:not([hidden])', { timeout: 60000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${name}: the page is ${overflow} px wider than the screen`);
    await shot(name);
  }
  // Both views link to each other.
  await page.click('#nav-jobs');
  await page.waitForSelector('#jobs-view:not([hidden])');
  await page.click('#nav-whatif');
  await page.waitForSelector('main.layout:not([hidden])');
  await page.setViewportSize({ width: 1400, height: 1000 });
  await shot('whatif.png');
  assert.deepEqual(errors, []);
});
