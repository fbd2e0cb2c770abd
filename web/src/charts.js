// The page's plots (Chart.js): cumulative cost, energy and time per recurrence,
// the configuration of each run, and the eta sweep's energy-time trade-off.

import {
  Chart,
  Legend,
  LinearScale,
  LogarithmicScale,
  LineController,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
} from 'chart.js';
import { duration, durationTicks, joules, policyName } from './format.js';

Chart.register(Legend, LinearScale, LogarithmicScale, LineController, LineElement, PointElement, ScatterController, Tooltip);
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue('--font') || 'system-ui';

export const COLORS = { wattwise: '#15803d', other: '#7c3aed', default: '#b91c1c', oracle: '#1d4ed8', power: '#b45309' };

const charts = new Map();

/** Draws (or redraws) the chart on a canvas. */
export function draw(id, config) {
  charts.get(id)?.destroy();
  const chart = new Chart(document.getElementById(id), config);
  charts.set(id, chart);
  return chart;
}

function line(label, color, data, extra = {}) {
  return { label, data, borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0, tension: 0, ...extra };
}

/** An axis's afterBuildTicks that puts the ticks at exactly these batch sizes. */
export const ticksAt = (values) => (axis) => {
  axis.ticks = [...new Set(values)].sort((a, b) => a - b).map((value) => ({ value }));
};

/** A duration axis (seconds) ticked at round values of the unit shown. */
const timeAxisTicks = (axis) => {
  axis.ticks = durationTicks(axis.min, axis.max).map((value) => ({ value }));
};

const recurrenceAxis = {
  type: 'linear',
  title: { display: true, text: 'recurrence' },
  ticks: { precision: 0 },
};

/** The three cumulative plots of a report, with the same knobs under the other policy beside it. */
export function drawCumulative(report, other) {
  const policy = (r) => policyName(r.policy ?? 'zeus');
  const n = report.recurrences;
  const { default: d, oracle: o } = report.baselines;
  const xs = Array.from({ length: n }, (_, i) => i + 1);
  const series = (values) => values.map((y, i) => ({ x: xs[i], y }));
  const expected = (perRun) => xs.map((x) => ({ x, y: x * perRun }));
  const plots = [
    ['chart-cost', 'cum_cost', d.cost, o.cost, joules],
    ['chart-energy', 'cum_energy', d.energy, o.energy, joules],
    ['chart-time', 'cum_time', d.time, o.time, duration],
  ];
  for (const [id, key, dv, ov, unit] of plots) {
    const values = report[key];
    draw(id, {
      type: 'line',
      data: {
        datasets: [
          line(`${policy(report)} policy`, COLORS.wattwise, series(values)),
          ...(other ? [line(`${policy(other)} policy`, COLORS.other, series(other[key]), { borderWidth: 1.5 })] : []),
          line(`default (bs ${d.batch_size} @ ${d.power_limit} W)`, COLORS.default, expected(dv), { borderDash: [6, 4] }),
          line(`oracle (bs ${o.batch_size} @ ${o.power_limit} W)`, COLORS.oracle, expected(ov), { borderDash: [2, 3] }),
        ],
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: { x: recurrenceAxis, y: { ticks: { callback: (v) => unit(v) }, ...(unit === duration ? { afterBuildTicks: timeAxisTicks } : {}) } },
        plugins: {
          legend: { labels: { boxHeight: 2 } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${unit(c.parsed.y)}` } },
        },
      },
    });
  }
}

/** Batch size (log axis) and power limit of every run; hollow points did not reach the target. */
export function drawConfigs(report) {
  const runs = report.history;
  const style = (color) => ({
    pointStyle: runs.map((h) => (h.reached ? 'circle' : 'crossRot')),
    pointRadius: runs.map((h) => (h.reached ? 3 : 5)),
    borderColor: color,
    backgroundColor: color,
    showLine: true,
    borderWidth: 1.5,
    stepped: false,
  });
  draw('chart-config', {
    type: 'scatter',
    data: {
      datasets: [
        { label: 'batch size', data: runs.map((h) => ({ x: h.recurrence, y: h.batch_size })), yAxisID: 'bs', ...style(COLORS.wattwise) },
        { label: 'power limit (W)', data: runs.map((h) => ({ x: h.recurrence, y: h.power_limit })), yAxisID: 'pl', ...style(COLORS.power) },
      ],
    },
    options: {
      scales: {
        x: recurrenceAxis,
        bs: {
          type: 'logarithmic',
          position: 'left',
          title: { display: true, text: 'batch size' },
          // Ticks at the batch sizes the runs used.
          afterBuildTicks: ticksAt(runs.map((h) => h.batch_size)),
          ticks: { callback: (v) => String(v) },
        },
        pl: { type: 'linear', position: 'right', title: { display: true, text: 'power limit (W)' }, grid: { drawOnChartArea: false } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (c) => {
              const h = runs[c.dataIndex];
              return `recurrence ${h.recurrence}: bs ${h.batch_size} @ ${h.power_limit} W${h.reached ? '' : ' (did not reach the target)'}`;
            },
          },
        },
      },
    },
  });
}

/** Energy against time, one point per eta (means over seeds): wattwise, the oracle, and the default. */
export function drawTradeoff(points) {
  const hours = (s) => s / 3600;
  const mj = (j) => j / 1e6;
  const xy = (p, who) => ({ x: hours(p[`${who}_time`]), y: mj(p[`${who}_energy`]), eta: p.eta });
  const byEta = [...points].sort((a, b) => a.eta - b.eta);
  draw('chart-tradeoff', {
    type: 'scatter',
    data: {
      datasets: [
        { label: `${policyName(byEta[0].policy)} policy`, data: byEta.map((p) => xy(p, 'cum')), borderColor: COLORS.wattwise, backgroundColor: COLORS.wattwise, showLine: true, pointRadius: 4 },
        { label: 'oracle', data: byEta.map((p) => xy(p, 'oracle')), borderColor: COLORS.oracle, backgroundColor: COLORS.oracle, showLine: true, borderDash: [2, 3], pointRadius: 3 },
        { label: 'default (any eta)', data: [xy(byEta[0], 'default')], borderColor: COLORS.default, backgroundColor: COLORS.default, pointRadius: 6, pointStyle: 'rectRot' },
      ],
    },
    options: {
      scales: {
        x: { title: { display: true, text: 'time, all recurrences (hours)' } },
        y: { title: { display: true, text: 'energy, all recurrences (MJ)' } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (c) => `${c.dataset.label}, eta ${c.raw.eta}: ${joules(c.raw.y * 1e6)}, ${duration(c.raw.x * 3600)}`,
          },
        },
      },
    },
  });
}
