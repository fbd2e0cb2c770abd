// The browser bindings (wasm/src/browser.rs) called directly, under Node: the same
// wasm-bindgen output the page loads (web/src/wasm, made by web/build.sh).
// run.sh passes WATTWISE_BIN and TRACES, as for the page's test.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.join(here, '../../web/src/wasm');
const { initSync, Simulator, zeusGpus } = await import(path.join(pkg, 'wattwise.js'));
initSync({ module: fs.readFileSync(path.join(pkg, 'wattwise_bg.wasm')) });

const BIN = process.env.WATTWISE_BIN;
const TRACES = process.env.TRACES;
const read = (f) => fs.readFileSync(path.join(TRACES, f), 'utf8');
const cli = (args) => JSON.parse(execFileSync(BIN, ['simulate', ...args, '--format', 'json'], { encoding: 'utf8', maxBuffer: 64 << 20 }));
const zeus = () =>
  Simulator.fromCsv(
    'summary_train.csv',
    read('summary_train.csv'),
    zeusGpus().map((gpu) => ({ gpu, name: `summary_power_${gpu}.csv`, text: read(`summary_power_${gpu}.csv`) })),
  );

test('the built-in catalog is the uploaded traces, with no upload', () => {
  const builtIn = Simulator.zeus();
  const options = builtIn.options();
  assert.equal(options.source, 'zeus');
  assert.deepEqual({ ...options, source: 'uploaded' }, zeus().options());
  const request = { gpu: 'a40', dataset: 'movielens-1m', eta: 0.3, beta: 2, recurrences: 20, seed: 4 };
  assert.deepEqual(builtIn.simulate(request), zeus().simulate(request));
});

test('options list the 24 Zeus workload x GPU pairs', () => {
  const options = zeus().options();
  assert.equal(options.synthetic, false);
  assert.equal(options.source, 'uploaded');
  assert.deepEqual(options.gpus, ['a40', 'v100', 'p100', 'rtx6000']);
  assert.equal(options.workloads.length, 6);
  assert.equal(options.workloads.reduce((n, w) => n + w.gpus.length, 0), 24);
});

test('simulate and baselines equal the command line', () => {
  const sim = zeus();
  const report = sim.simulate({ gpu: 'p100', dataset: 'cifar100', eta: 0.4, beta: 2, recurrences: 30, seed: 9 });
  const args = ['--train', path.join(TRACES, 'summary_train.csv'), '--power', path.join(TRACES, 'summary_power_p100.csv')];
  assert.deepEqual(report, cli([...args, '--dataset', 'cifar100', '--eta', '0.4', '--beta', '2', '--recurrences', '30', '--seed', '9']));
  assert.deepEqual(sim.baselines({ gpu: 'p100', dataset: 'cifar100', eta: 0.4 }), report.baselines);
  // No beta: no early stopping, like --beta inf.
  const inf = sim.simulate({ gpu: 'p100', dataset: 'cifar100', eta: 0.4, recurrences: 10, seed: 9 });
  assert.deepEqual(inf.history, cli([...args, '--dataset', 'cifar100', '--eta', '0.4', '--beta', 'inf', '--recurrences', '10', '--seed', '9']).history);
});

test('a sweep calls progress and gives one row per simulation, in grid order', () => {
  const sim = Simulator.synthetic();
  const seen = [];
  const rows = sim.sweep({ etas: [0.2, 0.8], seeds: [1, 2, 3], recurrences: [5, 10], beta: 2 }, (done, total) => seen.push([done, total]));
  assert.equal(rows.length, 12);
  assert.deepEqual(seen.at(-1), [12, 12]);
  assert.equal(seen.length, 12);
  assert.deepEqual(rows.slice(0, 3).map((r) => [r.eta, r.seed, r.recurrences]), [[0.2, 1, 5], [0.2, 1, 10], [0.2, 2, 5]]);
  const one = sim.simulate({ eta: 0.8, beta: 2, recurrences: 10, seed: 3 });
  assert.equal(rows[11].cum_cost, one.cum_cost.at(-1));
  assert.equal(rows[11].default_cost, 10 * one.baselines.default.cost);
});

test('errors name the file, the line and the column, or the knob', () => {
  const train = read('summary_train.csv').split('\n');
  const header = train[0].split(',');
  const row = train[5].split(',');
  row[header.indexOf('target_metric')] = 'high';
  train[5] = row.join(',');
  const power = [{ gpu: 'v100', name: 'summary_power_v100.csv', text: read('summary_power_v100.csv') }];
  assert.throws(
    () => Simulator.fromCsv('my_train.csv', train.join('\n'), power),
    (e) => e instanceof Error && e.file === 'my_train.csv' && e.trace === 'train' && e.line === 6 && e.column === 'target_metric' && /line 6, column `target_metric`/.test(e.message),
  );
  assert.throws(
    () => Simulator.fromCsv('t.csv', read('summary_train.csv'), [{ gpu: 'v100', name: 'p.csv', text: 'dataset,network\n' }]),
    (e) => e.file === 'p.csv' && e.line === 1 && e.column === 'batch_size',
  );
  assert.throws(() => Simulator.fromCsv('t.csv', read('summary_train.csv'), []), /^Error: powers: give at least one power trace/);
  const sim = zeus();
  assert.throws(() => sim.simulate({ gpu: 'h100', dataset: 'squad', eta: 0.5, recurrences: 5, seed: 1 }), /gpu: "h100" is not loaded/);
  assert.throws(() => sim.simulate({ gpu: 'v100', dataset: 'mnist', eta: 0.5, recurrences: 5, seed: 1 }), /dataset: "mnist"/);
  assert.throws(() => sim.simulate({ gpu: 'v100', dataset: 'squad', eta: 1.5, recurrences: 5, seed: 1 }), /^Error: eta: must be in \[0, 1\]/);
  assert.throws(() => sim.simulate({ gpu: 'v100', dataset: 'squad', eta: 0.5, recurrences: 0, seed: 1 }), /recurrences: must be at least 1/);
  assert.throws(() => sim.simulate({ gpu: 'v100', dataset: 'squad', eta: 'x', recurrences: 5, seed: 1 }), /^Error: request: invalid type: string "x", expected f64$/);
  assert.throws(() => sim.sweep({ etas: [], seeds: [1], recurrences: [5] }), /sweep: needs at least one/);
  assert.throws(() => sim.sweep({ etas: [0.5], seeds: [1], recurrences: [5, 0] }), /^Error: recurrences: must be at least 1/);
  assert.throws(() => sim.baselines({ gpu: 'v100', dataset: 'squad', eta: 2 }), /^Error: eta: must be in \[0, 1\]/);
  // A progress callback that throws cancels the sweep; its error comes back.
  assert.throws(() => sim.sweep({ etas: [0.5], seeds: [1, 2, 3], recurrences: [5] }, () => { throw new Error('stop here'); }), /stop here/);
});
