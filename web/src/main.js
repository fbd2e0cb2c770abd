// The what-if page: knobs (kept in the URL), the traces (the Zeus traces built
// into the core, the synthetic workload, or the user's own CSV files),
// one simulation with its plots and table, and sweeps run in a Web Worker.

import './style.css';
import { drawConfigs, drawCumulative, drawTradeoff } from './charts.js';
import { initJobs } from './jobs.js';
import { duration, joules, parseBeta, parseEtas, parseSeeds, policyName, toCsv, verdict } from './format.js';
import { markScrollers } from './scroll.js';

const $ = (id) => document.getElementById(id);
const form = $('knobs');
const KNOBS = ['workload', 'gpu', 'default_batch_size', 'policy', 'eta', 'beta', 'recurrences', 'seed'];
const SWEEP_KNOBS = { etas: 'sweep-etas', seeds: 'sweep-seeds', scope: 'sweep-scope' };

const state = {
  source: 'zeus', // 'zeus' (built in) | 'synthetic' | 'upload'
  files: null, // { train: { name, text }, powers: [{ gpu, name, text }] }
  options: null, // what the loaded traces offer (Simulator.options)
  report: null, // the last simulation (a SimReport), under the chosen policy
  other: null, // the same knobs under the other policy
  sweep: null, // { request, rows, points }
  firstResult: true,
};

// ---------------------------------------------------------------- the worker

/** The simulator's Web Worker, with promise-returning calls. */
class Engine {
  constructor() {
    this.pending = new Map();
    this.next = 1;
    this.start();
  }

  start() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.progress) return call.onProgress?.(data.progress);
      this.pending.delete(data.id);
      if (data.ok) call.resolve({ result: data.result, ms: data.ms });
      else call.reject(Object.assign(new Error(data.error.message), data.error));
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      for (const call of this.pending.values()) call.reject(new Error(`the simulator's worker failed: ${e.message}`));
      this.pending.clear();
    };
  }

  call(type, payload = {}, onProgress) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, type, ...payload });
    });
  }

  /** Stops whatever runs (a long sweep) and starts a fresh worker. */
  restart() {
    this.worker.terminate();
    const cancelled = Object.assign(new Error('cancelled'), { cancelled: true });
    for (const call of this.pending.values()) call.reject(cancelled);
    this.pending.clear();
    this.start();
  }
}

const engine = new Engine();

// ---------------------------------------------------------------- messages

function show(id, message) {
  const box = $(id);
  box.hidden = !message;
  box.textContent = message || '';
  if (message) box.scrollIntoView({ block: 'nearest' });
}

/**
 * A knob the simulator refused: the message goes under the field it names
 * (`eta: must be ...`), the field is marked invalid and focused, and the last
 * results stay on screen, marked as those of the previous knobs.
 */
function knobError(message) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const box = $('knob-error');
  if (!message) {
    show('knob-error', '');
    $('results').classList.remove('stale');
    return;
  }
  const name = message.match(/^([a-z_]+):/)?.[1];
  const field = name === 'dataset' ? form.elements.workload : form.elements[name];
  if (field && field.closest) {
    field.setAttribute('aria-invalid', 'true');
    field.closest('label').after(box);
    field.focus();
  } else {
    form.append(box);
  }
  show('knob-error', state.report ? `${message} (the results shown are for the previous knobs)` : message);
  $('results').classList.toggle('stale', Boolean(state.report));
}

/** Hides the results of traces that are no longer loaded. */
function clearResults(why) {
  $('placeholder').hidden = false;
  $('placeholder').textContent = why;
  state.report = null;
  state.sweep = null;
  $('results').hidden = true;
  $('sweep-results').hidden = true;
  $('export-csv').disabled = $('export-json').disabled = true;
}

/** An error from a trace: its message names the file, the line and the column. */
function fileErrorText(e) {
  return e.file ? `Cannot read ${e.file}: ${e.message.replace(`${e.file}: `, '')}` : e.message;
}

// ---------------------------------------------------------------- the URL

function readUrl() {
  const q = new URLSearchParams(location.search);
  if (['zeus', 'synthetic', 'upload'].includes(q.get('source'))) state.source = q.get('source');
  form.elements.source.value = state.source;
  $('uploads').hidden = state.source !== 'upload';
  for (const k of KNOBS) if (q.has(k)) form.elements[k].dataset.wanted = q.get(k);
  for (const k of ['default_batch_size', 'policy', 'eta', 'beta', 'recurrences', 'seed']) if (q.has(k)) form.elements[k].value = q.get(k);
  // Opened by "simulate this job" (the jobs view): say which job and how it was matched.
  if (q.has('from_job')) {
    $('from-job').hidden = false;
    $('from-job').textContent = `Simulating job ${q.get('from_job')} on the closest built-in workload (${q.get('match') ?? ''}), with its eta, beta, default batch size and policy.`;
  }
  for (const [k, id] of Object.entries(SWEEP_KNOBS)) if (q.has(k)) $(id).value = q.get(k);
}

function knobsUrl() {
  const q = new URLSearchParams({ source: state.source });
  for (const k of KNOBS) if (form.elements[k].value !== '') q.set(k, form.elements[k].value);
  for (const [k, id] of Object.entries(SWEEP_KNOBS)) q.set(k, $(id).value);
  return `${location.pathname}?${q}`;
}

function writeUrl() {
  history.replaceState(null, '', knobsUrl() + location.hash);
}

// ---------------------------------------------------------------- traces

function gpuOfFile(name) {
  const stem = name.replace(/\.[^.]*$/, '');
  return stem.startsWith('summary_power_') ? stem.slice('summary_power_'.length) : stem;
}

async function readFiles() {
  const train = $('train-file').files[0];
  const powers = [...$('power-files').files];
  if (!train || powers.length === 0) return null;
  return {
    train: { name: train.name, text: await train.text() },
    powers: await Promise.all(powers.map(async (f) => ({ gpu: gpuOfFile(f.name), name: f.name, text: await f.text() }))),
  };
}

/** Loads the chosen traces into the worker and fills the workload and GPU menus. */
async function load() {
  show('file-error', '');
  state.options = null;
  clearResults(state.source === 'upload' ? 'Choose your train trace and power trace(s) to see what wattwise would save.' : 'Loading the simulator…');
  fillMenus();
  if (state.source === 'upload') {
    state.files = await readFiles();
    if (!state.files) {
      $('source-status').textContent = 'Choose the train trace and at least one power trace.';
      return false;
    }
    $('source-status').textContent = 'Reading the traces…';
  }
  try {
    const payload = state.source === 'upload' ? { source: 'files', ...state.files } : { source: state.source };
    const { result, ms } = await engine.call('load', payload);
    state.options = result;
    const pairs = result.workloads.reduce((n, w) => n + w.gpus.length, 0);
    const what =
      result.source === 'zeus'
        ? `The Zeus NSDI '23 traces, built in: ${result.workloads.length} workloads on ${result.gpus.length} GPUs (${pairs} pairs).`
        : result.source === 'synthetic'
          ? 'The synthetic workload: an image classifier on a 300 W GPU, generated by the core.'
          : `Read ${state.files.train.name} and ${state.files.powers.length} power trace(s) in ${ms.toFixed(0)} ms.`;
    $('source-status').textContent = what;
    fillMenus();
    return true;
  } catch (e) {
    if (e.cancelled) return false;
    $('source-status').textContent = '';
    show('file-error', fileErrorText(e));
    clearResults('No results: the traces could not be read (see the message beside).');
    return false;
  }
}

function fillMenus() {
  const opts = state.options;
  const wl = form.elements.workload;
  const gpu = form.elements.gpu;
  const keep = (el) => el.dataset.wanted || el.value;
  const wantedWl = keep(wl);
  const wantedGpu = keep(gpu);
  wl.replaceChildren();
  gpu.replaceChildren();
  if (!opts) {
    // Remember the choice for when the traces are loaded.
    if (wantedWl) wl.dataset.wanted = wantedWl;
    if (wantedGpu) gpu.dataset.wanted = wantedGpu;
    wl.disabled = gpu.disabled = true;
    return;
  }
  wl.disabled = gpu.disabled = false;
  for (const { workload: w } of opts.workloads) {
    wl.add(new Option(`${w.dataset} / ${w.network} (${w.optimizer}), target ${w.target_metric}`, w.dataset));
  }
  if (opts.workloads.some((w) => w.workload.dataset === wantedWl)) wl.value = wantedWl;
  for (const g of opts.gpus) gpu.add(new Option(g, g));
  if (opts.gpus.includes(wantedGpu)) gpu.value = wantedGpu;
  delete wl.dataset.wanted;
  delete gpu.dataset.wanted;
  markGpus();
}

/** Greys out the GPUs whose power trace lacks the chosen workload. */
function markGpus() {
  const opts = state.options;
  if (!opts) return;
  const w = opts.workloads.find((x) => x.workload.dataset === form.elements.workload.value);
  for (const o of form.elements.gpu.options) o.disabled = !w?.gpus.includes(o.value);
  if (form.elements.gpu.selectedOptions[0]?.disabled) form.elements.gpu.value = w?.gpus[0] ?? '';
}

// ---------------------------------------------------------------- one simulation

function knobs() {
  const el = form.elements;
  // Only parsing here: the ranges are checked by the core (the same rules as the command line).
  const eta = Number(el.eta.value);
  if (el.eta.value.trim() === '' || !Number.isFinite(eta)) throw new Error('eta: must be a number in [0, 1]');
  const recurrences = Number(el.recurrences.value);
  if (!Number.isInteger(recurrences) || recurrences < 0 || recurrences > 2 ** 32 - 1) throw new Error('recurrences: must be a whole number from 1 to 100000');
  const seed = Number(el.seed.value);
  if (!Number.isSafeInteger(seed) || seed < 0 || el.seed.value.trim() === '') throw new Error('seed: must be a whole number >= 0');
  const request = { dataset: el.workload.value, gpu: el.gpu.value, policy: el.policy.value, eta, beta: parseBeta(el.beta.value), recurrences, seed };
  if (el.default_batch_size.value.trim() !== '') {
    const b = Number(el.default_batch_size.value);
    if (!Number.isInteger(b) || b < 1 || b > 2 ** 32 - 1) throw new Error('default_batch_size: must be a whole number >= 1, or blank for the workload\'s');
    request.default_batch_size = b;
  }
  return request;
}

async function simulate() {
  if (!state.options) return;
  let request;
  try {
    request = knobs();
  } catch (e) {
    return knobError(e.message);
  }
  writeUrl();
  $('run').disabled = true;
  try {
    const other = { ...request, policy: request.policy === 'zeus' ? 'wattwise' : 'zeus' };
    const [{ result, ms }, { result: otherResult }] = await Promise.all([
      engine.call('simulate', { request }),
      engine.call('simulate', { request: other }),
    ]);
    state.report = result;
    state.other = otherResult;
    knobError('');
    renderReport(result, ms, otherResult);
    if (state.firstResult) {
      state.firstResult = false;
      document.body.dataset.firstResultMs = performance.now().toFixed(1);
    }
  } catch (e) {
    if (!e.cancelled) knobError(e.message);
  } finally {
    $('run').disabled = false;
  }
}

function card(label, value, text, sub, cls = '') {
  const div = document.createElement('div');
  div.className = `card ${cls}`;
  div.innerHTML = '<span class="label"></span><span class="value"></span><span class="sub"></span>';
  div.querySelector('.label').textContent = label;
  const v = div.querySelector('.value');
  v.textContent = text;
  if (value.id) v.id = value.id;
  if (value.v !== undefined) v.dataset.value = String(value.v);
  div.querySelector('.sub').textContent = sub;
  return div;
}

/** The policy of a report (the document omits Zeus's, the default). */
const policyOf = (r) => r.policy ?? 'zeus';

/** One row per policy: the chosen one first. */
function renderPolicies(reports) {
  const body = $('policies').tBodies[0];
  body.replaceChildren();
  reports.forEach((r, i) => {
    const n = r.recurrences;
    const cost = r.cum_cost[n - 1];
    const tr = body.insertRow();
    tr.dataset.policy = policyOf(r);
    if (i === 0) tr.className = 'chosen';
    const cells = [
      ['policy', policyOf(r), policyName],
      ['cost', cost, joules],
      ['energy', r.cum_energy[n - 1], joules],
      ['time', r.cum_time[n - 1], duration],
      ['savings', savedOf(r), (x) => verdict(x).words],
      ['regret', r.regret[n - 1], joules],
    ];
    for (const [key, v, fmt] of cells) {
      const td = tr.insertCell();
      td.dataset.key = key;
      td.dataset.value = String(v);
      td.textContent = fmt(v);
      if (key === 'savings') markVerdict(td, v);
    }
  });
  const [a, b] = reports;
  const better = savedOf(a) >= savedOf(b) ? a : b;
  $('policies-caption').textContent = `Both policies on these knobs: ${policyName(policyOf(better))} policy is the better one here.`;
}

/** Colours an element holding a verdict's words, and keeps the fraction beside them. */
function markVerdict(el, saved) {
  el.classList.add('verdict-text', verdict(saved).cls);
  el.dataset.saved = String(saved);
}

/** The fraction of the default's cost a report saves (negative: costs more). */
const savedOf = (r) => 1 - r.cum_cost[r.recurrences - 1] / (r.recurrences * r.baselines.default.cost);

/**
 * The verdict on a result, in words and colour: what the chosen policy saves or
 * costs against the default, the other policy's, and which is better here.
 */
function renderVerdict(r, other) {
  const box = $('verdict');
  const mine = verdict(savedOf(r));
  const theirs = verdict(savedOf(other));
  const d = r.baselines.default;
  const better = savedOf(r) >= savedOf(other) ? r : other;
  box.className = `verdict ${mine.cls}`;
  box.dataset.saved = String(savedOf(r));
  box.dataset.otherSaved = String(savedOf(other));
  box.dataset.better = policyOf(better);
  box.replaceChildren();
  const head = document.createElement('strong');
  markVerdict(head, savedOf(r));
  head.textContent = `${policyName(policyOf(r))} policy ${mine.words}`;
  const rest = document.createElement('span');
  const otherWords = document.createElement('span');
  markVerdict(otherWords, savedOf(other));
  otherWords.textContent = `${policyName(policyOf(other))} policy ${theirs.words}`;
  rest.append(
    ` against the default (batch size ${d.batch_size} at ${d.power_limit} W, every recurrence), in Zeus cost over ${r.recurrences} recurrences. On the same knobs, `,
    otherWords,
    `. Better here: ${policyName(policyOf(better))} policy.`,
  );
  box.append(head, rest);
}

function renderReport(r, ms, other) {
  const n = r.recurrences;
  const { default: d, oracle: o } = r.baselines;
  const total = (k) => r[k][n - 1];
  const regret = r.regret[n - 1];
  const saved = 1 - total('cum_cost') / (n * d.cost);
  const energySaved = 1 - total('cum_energy') / (n * d.energy);
  const name = policyName(policyOf(r));
  const timeSaved = 1 - total('cum_time') / (n * d.time);
  $('summary').replaceChildren(
    card(`cost, ${name} policy`, { id: 'total-cost', v: total('cum_cost') }, joules(total('cum_cost')), `Zeus cost, ${n} recurrences, ${r.history.length} runs`, 'wattwise'),
    card('energy', { id: 'total-energy', v: total('cum_energy') }, joules(total('cum_energy')), `${verdict(energySaved).words} energy against the default`, 'wattwise'),
    card('time', { id: 'total-time', v: total('cum_time') }, duration(total('cum_time')), `${verdict(timeSaved).words} time against the default; ${duration(total('cum_time') / n)} per recurrence`, 'wattwise'),
    card('against the default (cost)', { id: 'savings', v: saved }, verdict(saved).words, `default cost ${joules(n * d.cost)} (bs ${d.batch_size} @ ${d.power_limit} W)`, `verdict-card ${verdict(saved).cls}`),
    card('regret vs oracle', { id: 'regret', v: regret }, joules(regret), `oracle cost ${joules(n * o.cost)} (bs ${o.batch_size} @ ${o.power_limit} W)`, 'oracle'),
  );
  const w = r.workload;
  const beta = r.config.beta_knob === null || r.config.beta_knob === Infinity ? 'inf' : r.config.beta_knob;
  $('summary').dataset.caption = `${w.dataset}/${w.network} on ${r.gpu}, eta ${r.config.eta_knob}, beta ${beta}, seed ${r.config.seed} · policy ${policyOf(r)} · simulated in ${ms.toFixed(1)} ms`;
  markVerdict($('savings'), saved);
  markVerdict($('total-energy').parentElement.querySelector('.sub'), energySaved);
  markVerdict($('total-time').parentElement.querySelector('.sub'), timeSaved);
  $('run-caption').textContent = `${w.dataset}/${w.network} on ${r.gpu}, eta ${r.config.eta_knob}, beta ${beta}, seed ${r.config.seed} · ${name} policy · simulated in ${ms.toFixed(1)} ms`;
  renderVerdict(r, other);
  renderPolicies([r, other]);
  $('results').hidden = false;
  $('placeholder').hidden = true;
  drawCumulative(r, other);
  drawConfigs(r);
  renderRuns(r);
  $('export-csv').disabled = $('export-json').disabled = false;
  markScrollers();
}

const RUN_COLUMNS = [
  ['recurrence', 'recurrence', (h) => h.recurrence, String],
  ['batch_size', 'batch size', (h) => h.batch_size, String],
  ['power_limit', 'power limit (W)', (h) => h.power_limit, String],
  ['energy', 'energy', (h) => h.energy, joules],
  ['time', 'time', (h) => h.time, duration],
  ['reached', 'reached', (h) => h.reached, (v) => (v ? 'yes' : 'no')],
  ['cost', 'cost', (h) => h.cost, joules],
  ['cum_cost', 'cumulative cost', (h, r) => r.cum_cost[h.recurrence - 1], joules],
  ['regret', 'regret', (h, r) => r.regret[h.recurrence - 1], joules],
];

function renderRuns(r) {
  const table = $('runs');
  const head = table.createTHead();
  head.innerHTML = '';
  const hr = head.insertRow();
  for (const [, label] of RUN_COLUMNS) hr.appendChild(Object.assign(document.createElement('th'), { textContent: label }));
  const body = document.createElement('tbody');
  for (const h of r.history) {
    const tr = body.insertRow();
    tr.dataset.recurrence = h.recurrence;
    if (!h.reached) tr.className = 'failed';
    for (const [key, , get, fmt] of RUN_COLUMNS) {
      const td = tr.insertCell();
      const v = get(h, r);
      td.dataset.key = key;
      td.dataset.value = String(v);
      td.textContent = fmt(v);
    }
  }
  table.tBodies[0]?.remove();
  table.appendChild(body);
}

// ---------------------------------------------------------------- sweeps

function sweepRequest() {
  const k = knobs();
  const etas = parseEtas($('sweep-etas').value);
  const seeds = parseSeeds($('sweep-seeds').value);
  const all = $('sweep-scope').value === 'all';
  const request = { etas, seeds, recurrences: [k.recurrences], beta: k.beta, gpu: k.gpu, dataset: k.dataset, policies: [k.policy] };
  if (all) request.pairs = state.options.workloads.flatMap((w) => w.gpus.map((gpu) => ({ gpu, dataset: w.workload.dataset })));
  return { request, all };
}

/** Means over seeds, one point per (pair, eta). */
function aggregate(rows) {
  const groups = new Map();
  for (const row of rows) {
    const key = `${row.dataset}\u0000${row.gpu}\u0000${row.policy}\u0000${row.eta}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(row);
  }
  const fields = Object.keys(rows[0]).filter((k) => !['dataset', 'gpu', 'policy', 'eta', 'seed', 'recurrences'].includes(k));
  return [...groups.values()].map((g) => {
    const p = { dataset: g[0].dataset, gpu: g[0].gpu, policy: g[0].policy, eta: g[0].eta, seeds: g.length, recurrences: g[0].recurrences };
    for (const f of fields) p[f] = g.reduce((s, r) => s + r[f], 0) / g.length;
    return p;
  });
}

async function sweep() {
  if (!state.options) return;
  let request, all;
  try {
    ({ request, all } = sweepRequest());
  } catch (e) {
    return knobError(e.message);
  }
  knobError('');
  writeUrl();
  const bar = $('sweep-progress');
  bar.hidden = false;
  bar.value = 0;
  $('sweep').disabled = true;
  $('cancel').hidden = false;
  $('sweep-status').textContent = 'Sweeping…';
  const started = performance.now();
  const finished = () => {
    bar.hidden = true;
    $('sweep').disabled = false;
    $('cancel').hidden = true;
  };
  try {
    const { result: rows, ms } = await engine.call('sweep', { request }, ({ done, total }) => {
      bar.max = total;
      bar.value = done;
      $('sweep-status').textContent = `${done} of ${total} simulations…`;
    });
    const wall = performance.now() - started;
    state.sweep = { request, rows, points: aggregate(rows), all };
    const status = $('sweep-status');
    status.textContent = `${rows.length} simulations in ${ms.toFixed(0)} ms (${wall.toFixed(0)} ms with the page's round trip).`;
    status.dataset.simulations = rows.length;
    status.dataset.ms = ms.toFixed(2);
    status.dataset.wallMs = wall.toFixed(2);
    renderSweep();
  } catch (e) {
    finished();
    if (e.cancelled) {
      $('sweep-status').textContent = 'Sweep cancelled.';
      if (await load()) await simulate();
    } else {
      $('sweep-status').textContent = '';
      knobError(e.message);
    }
  } finally {
    finished();
  }
}

const SWEEP_COLUMNS = [
  ['dataset', 'workload', String],
  ['gpu', 'GPU', String],
  ['eta', 'eta', String],
  ['seeds', 'seeds', String],
  ['cum_energy', 'energy', joules],
  ['cum_time', 'time', duration],
  ['cum_cost', 'cost', joules],
  ['default_cost', 'default cost', joules],
  ['oracle_cost', 'oracle cost', joules],
  ['policy', 'policy', policyName],
  ['savings_vs_default', 'against the default (cost)', (x) => verdict(x).words],
  ['regret', 'regret', joules],
];

function renderSweep() {
  const { points, all } = state.sweep;
  $('sweep-results').hidden = false;
  $('tradeoff-figure').hidden = all;
  if (!all) drawTradeoff(points);
  const table = $('sweep-table');
  table.replaceChildren();
  const hr = table.createTHead().insertRow();
  for (const [, label] of SWEEP_COLUMNS) hr.appendChild(Object.assign(document.createElement('th'), { textContent: label }));
  const body = table.createTBody();
  for (const p of points) {
    const tr = body.insertRow();
    for (const [key, , fmt] of SWEEP_COLUMNS) {
      const td = tr.insertCell();
      td.dataset.key = key;
      td.dataset.value = String(p[key]);
      td.textContent = fmt(p[key]);
      if (key === 'savings_vs_default') markVerdict(td, p[key]);
    }
  }
  markScrollers();
  // The results are below the knobs on a narrow screen: bring them into view.
  $('sweep-results').scrollIntoView({ block: 'start' });
}

// ---------------------------------------------------------------- exports

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function baseName(r) {
  return `wattwise-${r.workload.dataset}-${r.gpu}-eta${r.config.eta_knob}-seed${r.config.seed}`;
}

function exportRunsCsv() {
  const r = state.report;
  const rows = r.history.map((h) => RUN_COLUMNS.map(([, , get]) => get(h, r)));
  download(`${baseName(r)}.csv`, 'text/csv', toCsv(RUN_COLUMNS.map(([k]) => k), rows));
}

function exportReportJson() {
  const r = state.report;
  download(`${baseName(r)}.json`, 'application/json', JSON.stringify(r, null, 2) + '\n');
}

function exportSweep(kind) {
  const { rows } = state.sweep;
  const header = Object.keys(rows[0]);
  if (kind === 'csv') download('wattwise-sweep.csv', 'text/csv', toCsv(header, rows.map((r) => header.map((k) => r[k]))));
  else download('wattwise-sweep.json', 'application/json', JSON.stringify(state.sweep.rows, null, 2) + '\n');
}

// ---------------------------------------------------------------- wiring

form.addEventListener('submit', (e) => {
  e.preventDefault();
  simulate();
});
for (const radio of form.elements.source) {
  radio.addEventListener('change', async () => {
    state.source = form.elements.source.value;
    $('uploads').hidden = state.source !== 'upload';
    writeUrl();
    if (await load()) simulate();
  });
}
for (const id of ['train-file', 'power-files']) {
  $(id).addEventListener('change', async () => {
    if (await load()) simulate();
  });
}
form.elements.workload.addEventListener('change', () => {
  // Another workload has other batch sizes: back to its own default.
  form.elements.default_batch_size.value = '';
  markGpus();
  simulate();
});
form.elements.gpu.addEventListener('change', () => simulate());
form.elements.policy.addEventListener('change', () => simulate());
// A simulation takes about a millisecond: every knob change shows its result.
for (const k of ['default_batch_size', 'eta', 'beta', 'recurrences', 'seed']) form.elements[k].addEventListener('change', () => simulate());
$('sweep').addEventListener('click', sweep);
$('cancel').addEventListener('click', () => engine.restart());
$('export-csv').addEventListener('click', exportRunsCsv);
$('export-json').addEventListener('click', exportReportJson);
$('export-sweep-csv').addEventListener('click', () => exportSweep('csv'));
$('export-sweep-json').addEventListener('click', () => exportSweep('json'));
$('share').addEventListener('click', async () => {
  writeUrl();
  try {
    await navigator.clipboard.writeText(location.href);
    $('share').textContent = 'Link copied';
  } catch {
    $('share').textContent = 'Link is in the address bar';
  }
  setTimeout(() => ($('share').textContent = 'Copy link to these knobs'), 2000);
});

initJobs({ closest: async (request) => (await engine.call('closest', { request })).result });
readUrl();
if (state.source === 'upload') {
  const why = 'This link uses your own traces: choose the train trace and the power trace(s) to run it.';
  $('source-status').textContent = why;
  clearResults(why);
  fillMenus();
} else if (await load()) {
  await simulate();
}
