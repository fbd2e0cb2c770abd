// End-to-end test of the what-if page in Debian's headless Chromium, driven by
// playwright-core. run.sh builds the page and the `wattwise` binary, serves
// web/dist on 127.0.0.1, and passes:
//   BASE_URL      the page
//   WATTWISE_BIN  the native command line (`wattwise simulate`), the reference
//   TRACES        the product's copy of the Zeus traces (core/traces), to upload as a user would
//   ARTIFACTS_DIR where the screenshots and the benchmark figures go
//   DIST          web/dist (for the wasm size)

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';
import { VIEWPORTS, assertLayout, assertVerdicts, expectedVerdict } from './layout.mjs';

const BASE_URL = process.env.BASE_URL;
const BIN = process.env.WATTWISE_BIN;
const TRACES = process.env.TRACES;
const ARTIFACTS = process.env.ARTIFACTS_DIR || 'artifacts';
const DIST = process.env.DIST;
for (const [k, v] of Object.entries({ BASE_URL, WATTWISE_BIN: BIN, TRACES, DIST })) {
  if (!v) throw new Error(`${k} is not set (run tests/browser/run.sh)`);
}
const GPUS = ['a40', 'v100', 'p100', 'rtx6000'];
const trainCsv = path.join(TRACES, 'summary_train.csv');
const powerCsv = (gpu) => path.join(TRACES, `summary_power_${gpu}.csv`);

let context;
let page;
let userDataDir;
const consoleErrors = [];
const bench = {};

/** `wattwise simulate ... --format json`, parsed; the page's default policy (wattwise's) unless args name one. */
function cli(args) {
  const policy = args.includes('--policy') ? [] : ['--policy', 'wattwise'];
  const out = execFileSync(BIN, ['simulate', ...args, ...policy, '--format', 'json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wattwise-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1400, height: 1000 },
    acceptDownloads: true,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => m.type() === 'error' && consoleErrors.push(`worker: ${m.text()}`)));
});

after(async () => {
  await context?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'browser-bench.json'), JSON.stringify(bench, null, 2) + '\n');
  console.log(`benchmark: ${JSON.stringify(bench)}`);
});

/** The report the page shows, read back from the cards and the table of runs. */
async function shownReport() {
  return page.evaluate(() => {
    const num = (id) => Number(document.getElementById(id).dataset.value);
    const rows = [...document.querySelectorAll('#runs tbody tr')].map((tr) => {
      const cells = Object.fromEntries([...tr.cells].map((td) => [td.dataset.key, td.dataset.value]));
      return cells;
    });
    return {
      caption: document.getElementById('summary').dataset.caption,
      cost: num('total-cost'),
      energy: num('total-energy'),
      time: num('total-time'),
      savings: num('savings'),
      regret: num('regret'),
      rows,
    };
  });
}

/** Asserts the page shows exactly the numbers of the command line's report. */
function assertSameNumbers(shown, report) {
  const n = report.recurrences;
  assert.equal(shown.cost, report.cum_cost[n - 1], 'total cost');
  assert.equal(shown.energy, report.cum_energy[n - 1], 'total energy');
  assert.equal(shown.time, report.cum_time[n - 1], 'total time');
  assert.equal(shown.regret, report.regret[n - 1], 'regret');
  assert.equal(shown.savings, 1 - report.cum_cost[n - 1] / (n * report.baselines.default.cost), 'savings');
  assert.equal(shown.rows.length, report.history.length, 'one row per run');
  report.history.forEach((h, i) => {
    const row = shown.rows[i];
    const where = `run ${i}`;
    assert.equal(Number(row.recurrence), h.recurrence, `${where}: the JSON counts recurrences from 1, as the page`);
    assert.equal(Number(row.batch_size), h.batch_size, where);
    assert.equal(Number(row.power_limit), h.power_limit, where);
    assert.equal(Number(row.energy), h.energy, `${where} energy`);
    assert.equal(Number(row.time), h.time, `${where} time`);
    assert.equal(Number(row.cost), h.cost, `${where} cost`);
    assert.equal(row.reached, String(h.reached), where);
    assert.equal(Number(row.cum_cost), report.cum_cost[h.recurrence - 1], `${where} cumulative cost`);
  });
}

async function setKnobs({ workload, gpu, eta, beta, recurrences, seed }) {
  if (workload) await page.selectOption('#workload', workload);
  if (gpu) await page.selectOption('#gpu', gpu);
  await page.fill('#eta', String(eta));
  await page.fill('#beta', String(beta));
  await page.fill('#recurrences', String(recurrences));
  await page.fill('#seed', String(seed));
}

/** Clicks Simulate and waits for the result of exactly these knobs. */
async function simulateAndWait({ workload, gpu, eta, beta, seed }) {
  await page.click('#run');
  const want = [`${workload}/`, ` on ${gpu}, eta ${eta}, beta ${beta}, seed ${seed} `];
  await page.waitForFunction(
    ([start, middle]) => {
      const c = document.getElementById('summary').dataset.caption || '';
      return c.startsWith(start) && c.includes(middle);
    },
    want,
  );
}

async function nonBlankPixels(canvasId) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
    return n;
  }, canvasId);
}

async function downloadText(buttonId) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(buttonId)]);
  return fs.readFileSync(await download.path(), 'utf8');
}

test('the page opens on the built-in Zeus traces and shows the command line numbers', async () => {
  await page.goto(BASE_URL);
  await page.waitForFunction(() => document.body.dataset.firstResultMs);
  bench.first_result_ms = Number(await page.evaluate(() => document.body.dataset.firstResultMs));
  const shown = await shownReport();
  assert.match(shown.caption, /^cifar100\/shufflenetv2 on a40, eta 0.5, beta 2, seed 1 /);
  assertSameNumbers(shown, cli(['--dataset', 'cifar100', '--gpu', 'a40', '--recurrences', '50', '--seed', '1', '--eta', '0.5', '--beta', '2']));
  assert.equal(await page.isHidden('#uploads'), true, 'nothing to upload');
  assert.match(await page.textContent('#source-status'), /6 workloads on 4 GPUs \(24 pairs\)/);
  // The knobs are in the URL.
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('source'), 'zeus');
  assert.equal(url.searchParams.get('recurrences'), '50');
  for (const id of ['chart-cost', 'chart-energy', 'chart-time', 'chart-config']) {
    assert.ok((await nonBlankPixels(id)) > 1000, `${id} is drawn`);
  }
});

test('a sweep over every built-in workload and GPU gives the command line numbers, row for row', async () => {
  await setKnobs({ eta: 0.5, beta: 2, recurrences: 50, seed: 1 });
  await page.fill('#sweep-etas', '0.5');
  await page.fill('#sweep-seeds', '1-2');
  await page.selectOption('#sweep-scope', 'all');
  await page.click('#sweep');
  await page.waitForFunction(() => document.getElementById('sweep-status').dataset.simulations === '48');
  const rows = JSON.parse(await downloadText('#export-sweep-json'));
  const table = await page.evaluate(() =>
    [...document.querySelectorAll('#sweep-table tbody tr')].map((tr) => Object.fromEntries([...tr.cells].map((td) => [td.dataset.key, td.dataset.value]))),
  );
  assert.equal(rows.length, 48, '24 pairs x 2 seeds');
  assert.equal(table.length, 24, 'one table row per pair');
  const pairs = [...new Set(rows.map((r) => `${r.dataset}/${r.gpu}`))];
  assert.equal(pairs.length, 24);
  for (const pair of pairs) {
    const [dataset, gpu] = pair.split('/');
    const reports = cli(['--dataset', dataset, '--gpu', gpu, '--seed', '1-2', '--eta', '0.5', '--beta', '2', '--recurrences', '50']);
    const mine = rows.filter((r) => r.dataset === dataset && r.gpu === gpu);
    assert.equal(mine.length, 2, pair);
    mine.forEach((row, i) => {
      const r = reports[i];
      assert.equal(row.seed, r.config.seed, pair);
      assert.equal(row.cum_cost, r.cum_cost.at(-1), `${pair} cost`);
      assert.equal(row.cum_energy, r.cum_energy.at(-1), `${pair} energy`);
      assert.equal(row.cum_time, r.cum_time.at(-1), `${pair} time`);
      assert.equal(row.regret, r.regret.at(-1), `${pair} regret`);
      assert.equal(row.default_cost, 50 * r.baselines.default.cost, `${pair} default`);
      assert.equal(row.oracle_cost, 50 * r.baselines.oracle.cost, `${pair} oracle`);
    });
    // The table shows the mean over the seeds.
    const shown = table.find((t) => t.dataset === dataset && t.gpu === gpu);
    const mean = (k) => reports.reduce((s, r) => s + r[k].at(-1), 0) / reports.length;
    assert.equal(Number(shown.cum_cost), mean('cum_cost'), `${pair} table cost`);
    assert.equal(Number(shown.regret), mean('regret'), `${pair} table regret`);
  }
  await page.screenshot({ path: path.join(ARTIFACTS, 'whatif-zeus-sweep.png'), fullPage: true });
});

test('benchmark: 24 workload x GPU pairs x 5 seeds x 50 recurrences in under 1 s', async () => {
  await setKnobs({ eta: 0.5, beta: 2, recurrences: 50, seed: 1 });
  await page.fill('#sweep-etas', '0.5');
  await page.fill('#sweep-seeds', '1-5');
  await page.selectOption('#sweep-scope', 'all');
  const runs = [];
  for (let i = 0; i < 5; i++) {
    await page.evaluate(() => delete document.getElementById('sweep-status').dataset.simulations);
    await page.click('#sweep');
    await page.waitForFunction(() => document.getElementById('sweep-status').dataset.simulations);
    runs.push(await page.evaluate(() => ({ ...document.getElementById('sweep-status').dataset })));
  }
  assert.equal(runs[0].simulations, '120', '24 pairs x 5 seeds');
  assert.equal(await page.locator('#sweep-table tbody tr').count(), 24, 'one row per pair');
  const median = (xs) => xs.map(Number).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // The first run also compiles the 24 jobs out of the traces; later runs reuse them.
  bench.sweep_120_simulations_first_ms = Number(runs[0].ms);
  bench.sweep_120_simulations_ms = median(runs.map((r) => r.ms));
  bench.sweep_120_simulations_wall_ms = median(runs.map((r) => r.wallMs));
  assert.ok(bench.sweep_120_simulations_wall_ms < 1000, `120 simulations took ${bench.sweep_120_simulations_wall_ms} ms`);
  const wasm = fs.readdirSync(path.join(DIST, 'assets')).find((f) => f.endsWith('.wasm'));
  const bytes = fs.readFileSync(path.join(DIST, 'assets', wasm));
  bench.wasm_bytes = bytes.length;
  bench.wasm_gzip_bytes = zlib.gzipSync(bytes, { level: 9 }).length;
});

test('both policies run side by side on the same knobs, each with the command line numbers', async () => {
  await page.goto(`${BASE_URL}?source=zeus&workload=movielens-1m&gpu=rtx6000&policy=wattwise&eta=0.5&beta=2&recurrences=50&seed=3`);
  await page.waitForFunction(() => /^movielens-1m\/.* · policy wattwise · /.test(document.getElementById('summary').dataset.caption || ''));
  const knobs = ['--dataset', 'movielens-1m', '--gpu', 'rtx6000', '--eta', '0.5', '--beta', '2', '--recurrences', '50', '--seed', '3'];
  const wattwise = cli([...knobs, '--policy', 'wattwise']);
  const zeus = cli([...knobs, '--policy', 'zeus']);
  assert.equal(wattwise.policy, 'wattwise');
  assertSameNumbers(await shownReport(), wattwise);
  const rows = await page.evaluate(() =>
    [...document.querySelectorAll('#policies tbody tr')].map((tr) => Object.fromEntries([...tr.cells].map((td) => [td.dataset.key, td.dataset.value]))),
  );
  assert.deepEqual(rows.map((r) => r.policy), ['wattwise', 'zeus'], 'the chosen policy first, then the other');
  for (const [row, r] of [[rows[0], wattwise], [rows[1], zeus]]) {
    assert.equal(Number(row.savings), 1 - r.cum_cost.at(-1) / (r.recurrences * r.baselines.default.cost), `${row.policy} saving`);
    assert.equal(Number(row.cost), r.cum_cost.at(-1), `${row.policy} cost`);
    assert.equal(Number(row.energy), r.cum_energy.at(-1), `${row.policy} energy`);
    assert.equal(Number(row.regret), r.regret.at(-1), `${row.policy} regret`);
  }
  // The other policy's cumulative cost is drawn beside the chosen one's.
  const labels = await page.evaluate(() => [...document.querySelectorAll('#chart-cost')].length);
  assert.equal(labels, 1);
  assert.ok((await nonBlankPixels('chart-cost')) > 1000);
  await page.screenshot({ path: path.join(ARTIFACTS, 'whatif-policies.png'), fullPage: true });
});

test('a shared link restores the knobs', async () => {
  await page.goto(`${BASE_URL}?source=synthetic&eta=0.3&beta=inf&recurrences=20&seed=7`);
  await page.waitForFunction(() => document.getElementById('summary').dataset.caption?.includes('seed 7'));
  const shown = await shownReport();
  assert.match(shown.caption, /eta 0.3, beta inf, seed 7/);
  assertSameNumbers(shown, cli(['--recurrences', '20', '--seed', '7', '--eta', '0.3', '--beta', 'inf']));
  // A bad knob is named on its field; the last result stays, marked as the previous knobs'.
  await page.fill('#beta', '-1');
  await page.click('#run');
  await page.locator('#knob-error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#knob-error'), /^beta: .* must be a number > 0, or inf/);
  assert.equal(await page.getAttribute('#beta', 'aria-invalid'), 'true');
  assert.match(await page.getAttribute('#results', 'class'), /\bstale\b/);
});

test('a shared link to uploaded traces asks for them, then runs its knobs', async () => {
  await page.goto(`${BASE_URL}?source=upload&workload=squad&gpu=p100&eta=0.7&beta=3&recurrences=25&seed=2`);
  await page.waitForFunction(() => /choose the train trace/.test(document.getElementById('placeholder').textContent));
  await page.setInputFiles('#train-file', trainCsv);
  await page.setInputFiles('#power-files', GPUS.map(powerCsv));
  await page.waitForFunction(() => document.getElementById('summary').dataset.caption?.startsWith('squad/'));
  const shown = await shownReport();
  assert.match(shown.caption, / on p100, eta 0.7, beta 3, seed 2 /);
  const args = ['--train', trainCsv, '--power', powerCsv('p100'), '--dataset', 'squad'];
  assertSameNumbers(shown, cli([...args, '--eta', '0.7', '--beta', '3', '--recurrences', '25', '--seed', '2']));
});

test('uploaded traces give the command line numbers, number for number', async () => {
  await page.goto(BASE_URL);
  await page.waitForFunction(() => document.body.dataset.firstResultMs);
  await page.check('input[name=source][value=upload]');
  await page.setInputFiles('#train-file', trainCsv);
  await page.setInputFiles('#power-files', GPUS.map(powerCsv));
  await page.waitForFunction(() => document.getElementById('summary').dataset.caption?.startsWith('cifar100'));
  const cases = [
    { workload: 'librispeech', gpu: 'v100', eta: 0.5, beta: 2, recurrences: 50, seed: 3 },
    { workload: 'imagenet', gpu: 'a40', eta: 0.8, beta: 2, recurrences: 40, seed: 11 },
    { workload: 'squad', gpu: 'rtx6000', eta: 0.2, beta: 'inf', recurrences: 30, seed: 5 },
  ];
  for (const c of cases) {
    await setKnobs(c);
    await simulateAndWait(c);
    const args = ['--train', trainCsv, '--power', powerCsv(c.gpu), '--dataset', c.workload];
    args.push('--eta', String(c.eta), '--beta', String(c.beta), '--recurrences', String(c.recurrences), '--seed', String(c.seed));
    const report = cli(args);
    assertSameNumbers(await shownReport(), report);
    // The JSON export is the command line's document.
    assert.deepEqual(JSON.parse(await downloadText('#export-json')), report);
  }
  const csv = (await downloadText('#export-csv')).trim().split('\n');
  assert.equal(csv[0], 'recurrence,batch_size,power_limit,energy,time,reached,cost,cum_cost,regret');
  assert.ok(csv.length > 30);
  assert.match(new URL(page.url()).search, /workload=squad&gpu=rtx6000/);
});

test('an eta sweep runs in the worker with a progress bar and plots the trade-off', async () => {
  const knobs = { workload: 'librispeech', gpu: 'v100', eta: 0.5, beta: 2, recurrences: 50, seed: 1 };
  await setKnobs(knobs);
  await simulateAndWait(knobs);
  await page.fill('#sweep-etas', '0,0.25,0.5,0.75,1');
  await page.fill('#sweep-seeds', '1-4');
  await page.selectOption('#sweep-scope', 'one');
  await page.click('#sweep');
  await page.waitForFunction(() => document.getElementById('sweep-status').dataset.simulations === '20');
  assert.equal(await page.isHidden('#sweep-progress'), true, 'the progress bar goes away');
  assert.ok((await nonBlankPixels('chart-tradeoff')) > 1000, 'the trade-off plot is drawn');
  assert.equal(await page.locator('#sweep-table tbody tr').count(), 5, 'one row per eta');
  // Each simulation of the sweep is the command line's.
  const rows = JSON.parse(await downloadText('#export-sweep-json'));
  const reports = cli([
    '--train', trainCsv, '--power', powerCsv('v100'), '--dataset', 'librispeech',
    '--eta', '0,0.25,0.5,0.75,1', '--seed', '1-4', '--beta', '2', '--recurrences', '50',
  ]);
  assert.equal(rows.length, reports.length);
  rows.forEach((row, i) => {
    const r = reports[i];
    assert.equal(row.eta, r.config.eta_knob);
    assert.equal(row.seed, r.config.seed);
    assert.equal(row.cum_cost, r.cum_cost.at(-1));
    assert.equal(row.cum_energy, r.cum_energy.at(-1));
    assert.equal(row.cum_time, r.cum_time.at(-1));
  });
  await page.screenshot({ path: path.join(ARTIFACTS, 'whatif-page.png'), fullPage: true });
});

test('a long sweep shows its progress, leaves the page responsive, and cancels', async () => {
  await page.fill('#sweep-etas', '0.2,0.5,0.8');
  await page.fill('#sweep-seeds', '1-3000');
  await page.selectOption('#sweep-scope', 'all');
  await page.click('#sweep');
  // Progress comes in while the worker runs 216,000 simulations.
  await page.waitForFunction(() => {
    const bar = document.getElementById('sweep-progress');
    return !bar.hidden && bar.value > 0 && bar.value < bar.max;
  });
  const max = await page.evaluate(() => document.getElementById('sweep-progress').max);
  assert.equal(max, 24 * 3 * 3000);
  // The main thread answers at once: the sweep is not on it.
  const t0 = Date.now();
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 0)));
  await page.fill('#seed', '2');
  assert.ok(Date.now() - t0 < 500, `the page took ${Date.now() - t0} ms to answer during a sweep`);
  await page.click('#cancel');
  await page.waitForFunction(() => document.getElementById('sweep-status').textContent === 'Sweep cancelled.');
  assert.equal(await page.isHidden('#sweep-progress'), true);
  // The traces are reloaded into a fresh worker, and simulating works again.
  await page.waitForFunction(() => !document.getElementById('workload').disabled);
  await setKnobs({ workload: 'cifar100', gpu: 'a40', eta: 0.5, beta: 2, recurrences: 50, seed: 1 });
  await simulateAndWait({ workload: 'cifar100', gpu: 'a40', eta: 0.5, beta: 2, seed: 1 });
});

test('a broken CSV gets a message naming the line and the column', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wattwise-broken-'));
  const lines = fs.readFileSync(trainCsv, 'utf8').split('\n');
  const header = lines[0].split(',');
  const cells = lines[3].split(',');
  cells[header.indexOf('batch_size')] = 'lots';
  const broken = path.join(dir, 'summary_train.csv');
  fs.writeFileSync(broken, [lines[0], lines[1], lines[2], cells.join(','), ...lines.slice(4)].join('\n'));
  await page.setInputFiles('#train-file', broken);
  const error = page.locator('#file-error');
  await error.waitFor({ state: 'visible' });
  const text = await error.textContent();
  assert.match(text, /summary_train\.csv/);
  assert.match(text, /line 4/);
  assert.match(text, /column `?batch_size/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'whatif-broken-csv.png') });
  // A power trace with a short row.
  const power = fs.readFileSync(powerCsv('v100'), 'utf8').split('\n');
  power[2] = power[2].split(',').slice(0, 3).join(',');
  const brokenPower = path.join(dir, 'summary_power_v100.csv');
  fs.writeFileSync(brokenPower, power.join('\n'));
  await page.setInputFiles('#train-file', trainCsv);
  await page.setInputFiles('#power-files', [brokenPower]);
  await page.waitForFunction(() => /summary_power_v100\.csv/.test(document.getElementById('file-error').textContent));
  assert.match(await error.textContent(), /line 3/);
  fs.rmSync(dir, { recursive: true, force: true });
  // Good files again clear the message.
  await page.setInputFiles('#power-files', [powerCsv('v100')]);
  await error.waitFor({ state: 'hidden' });
});

test('verdicts in words and colour: Zeus costs more than the default on imagenet/v100, wattwise\'s saves', async () => {
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(`${BASE_URL}?source=zeus&workload=imagenet&gpu=v100&policy=zeus&eta=0.5&beta=2&recurrences=50&seed=1`);
  await page.waitForFunction(() => / · policy zeus · /.test(document.getElementById('summary').dataset.caption || ''));
  const knobs = ['--dataset', 'imagenet', '--gpu', 'v100', '--eta', '0.5', '--beta', '2', '--recurrences', '50', '--seed', '1'];
  const saved = (r) => 1 - r.cum_cost.at(-1) / (r.recurrences * r.baselines.default.cost);
  const zeus = saved(cli([...knobs, '--policy', 'zeus']));
  const wattwise = saved(cli([...knobs, '--policy', 'wattwise']));
  assert.ok(zeus < 0 && wattwise > 0, `imagenet/v100: Zeus ${zeus}, wattwise's ${wattwise}`);
  const v = await page.evaluate(() => {
    const b = document.getElementById('verdict');
    return { cls: b.className, text: b.textContent, saved: Number(b.dataset.saved), other: Number(b.dataset.otherSaved), better: b.dataset.better };
  });
  assert.equal(v.saved, zeus);
  assert.equal(v.other, wattwise);
  assert.match(v.cls, /\bcosts\b/, 'the chosen policy costs more: red');
  assert.ok(v.text.startsWith(`Zeus policy ${expectedVerdict(zeus).words} against the default`), v.text);
  assert.ok(v.text.includes(`wattwise's policy ${expectedVerdict(wattwise).words}`), v.text);
  assert.ok(v.text.endsWith("Better here: wattwise's policy."), v.text);
  assert.equal(v.better, 'wattwise');
  assert.match(await page.textContent('#policies-caption'), /wattwise's policy is the better one/);
  // Cards, the policies table, the verdict: each one's words and colour are its number's.
  assert.ok((await assertVerdicts(page, 'imagenet/v100')) >= 6);
  assert.equal(await page.textContent('#savings'), expectedVerdict(zeus).words);
  // The page's default policy for a new result is the better one.
  await page.goto(`${BASE_URL}?source=zeus&workload=imagenet&gpu=v100`);
  await page.waitForFunction(() => / · policy wattwise · /.test(document.getElementById('summary').dataset.caption || ''));
  assert.equal(await page.inputValue('#policy'), 'wattwise');
});

test('an invalid knob marks its field and keeps the last results', async () => {
  await page.fill('#eta', '1.7');
  await page.press('#eta', 'Enter');
  await page.locator('#knob-error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#knob-error'), /^eta: must be in \[0, 1\] \(the results shown are for the previous knobs\)/);
  assert.equal(await page.getAttribute('#eta', 'aria-invalid'), 'true');
  assert.equal(await page.isVisible('#results'), true, 'the last results stay');
  // The message sits under the field, not below the fold.
  const [field, msg] = await Promise.all([page.locator('#eta').boundingBox(), page.locator('#knob-error').boundingBox()]);
  assert.ok(msg.y > field.y && msg.y - field.y < 150, JSON.stringify({ field, msg }));
  await page.fill('#eta', '0.5');
  await page.press('#eta', 'Enter');
  await page.locator('#knob-error').waitFor({ state: 'hidden' });
  assert.equal(await page.getAttribute('#eta', 'aria-invalid'), null);
});

test('the layout holds at 390x844 and 1440x900: nothing overlaps, nothing leaves the screen unannounced', async () => {
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await page.goto(`${BASE_URL}?source=zeus&workload=imagenet&gpu=v100&policy=zeus&etas=0,0.5,1&seeds=1-2`);
    await page.waitForSelector('#results:not([hidden])');
    await page.click('#sweep');
    await page.waitForSelector('#sweep-results:not([hidden])');
    await page.waitForFunction(() => document.getElementById('sweep-progress').hidden);
    // A sweep brings its results into view.
    const top = await page.evaluate(() => document.getElementById('sweep-results').getBoundingClientRect().top);
    assert.ok(top >= -1 && top < vp.height, `${vp.width}: the sweep's results are at ${top} px`);
    await page.evaluate(() => document.getElementById('runs-details').setAttribute('open', ''));
    await page.evaluate(() => window.scrollTo(0, 0));
    await assertVerdicts(page, `what-if ${vp.width}`);
    await assertLayout(page, ARTIFACTS, `layout-whatif-${vp.width}x${vp.height}`);
    if (vp.width < 900) {
      // On a phone the results come first.
      const [results, knobs] = await page.evaluate(() => ['results', 'knobs'].map((id) => document.getElementById(id).getBoundingClientRect().top));
      assert.ok(results < knobs, `results at ${results} px, knobs at ${knobs} px`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 1000 });
});

test('no console errors', () => {
  assert.deepEqual(consoleErrors, []);
});
