// Units and parsing shared by the page: joules, durations, percentages, and the
// knob lists (`1-5,9`, `0,0.5,1`), parsed the way `wattwise simulate` parses them.

/** Joules with an SI prefix: `1.50 MJ`. */
export function joules(j) {
  if (!Number.isFinite(j)) return String(j);
  const units = [
    [1e12, 'TJ'],
    [1e9, 'GJ'],
    [1e6, 'MJ'],
    [1e3, 'kJ'],
  ];
  for (const [scale, unit] of units) {
    if (Math.abs(j) >= scale) return `${(j / scale).toFixed(2)} ${unit}`;
  }
  return `${j.toFixed(1)} J`;
}

/**
 * An energy with its bound when there is one: `1.50 MJ ± 120 J` (the bound to two
 * significant digits, so a small one still shows); the energy alone otherwise.
 */
export function joulesWithBound(j, u) {
  if (typeof u !== 'number' || !Number.isFinite(u)) return joules(j);
  const units = [
    [1e12, 'TJ'],
    [1e9, 'GJ'],
    [1e6, 'MJ'],
    [1e3, 'kJ'],
    [1, 'J'],
  ];
  const [scale, unit] = units.find(([scale]) => Math.abs(u) >= scale) ?? [1, 'J'];
  return `${joules(j)} ± ${Number((u / scale).toPrecision(2))} ${unit}`;
}

/** Seconds as s, min, h or days: `2.00 h`. */
export function duration(s) {
  if (!Number.isFinite(s)) return String(s);
  const a = Math.abs(s);
  if (a >= 86400 * 2) return `${(s / 86400).toFixed(2)} days`;
  if (a >= 3600) return `${(s / 3600).toFixed(2)} h`;
  if (a >= 60) return `${(s / 60).toFixed(1)} min`;
  return `${s.toFixed(1)} s`;
}

/** A fraction as a signed percentage: `-12.3%`. */
export function percent(x) {
  if (!Number.isFinite(x)) return String(x);
  const p = (x * 100).toFixed(1);
  return `${x > 0 ? '+' : ''}${p}%`;
}

/** Seeds: `1`, `1,3,7`, `1-5` or a mix; throws an Error naming the knob. */
export function parseSeeds(text) {
  const out = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const range = part.match(/^(\d+)\s*-\s*(\d+)$/);
    if (range) {
      const [a, b] = [Number(range[1]), Number(range[2])];
      if (b < a || b - a >= 100000) throw new Error(`seeds: range ${part} must be ascending and at most 100000 long`);
      for (let s = a; s <= b; s++) out.push(s);
    } else if (/^\d+$/.test(part) && Number.isSafeInteger(Number(part))) {
      out.push(Number(part));
    } else {
      throw new Error(`seeds: ${JSON.stringify(part)} is not a whole number or a range like 1-5`);
    }
  }
  if (out.length === 0) throw new Error('seeds: give at least one seed');
  return out;
}

/** etas: comma-separated numbers in [0, 1]. */
export function parseEtas(text) {
  const out = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eta = Number(part);
    if (!Number.isFinite(eta) || !/^[0-9.eE+-]+$/.test(part)) throw new Error(`etas: ${JSON.stringify(part)} is not a number`);
    if (eta < 0 || eta > 1) throw new Error(`etas: ${eta} must be in [0, 1]`);
    out.push(eta);
  }
  if (out.length === 0) throw new Error('etas: give at least one value');
  return out;
}

/** beta: a number > 0, or `inf` (also empty) for no early stopping, returned as null. */
export function parseBeta(text) {
  const t = text.trim().toLowerCase();
  if (t === '' || t === 'inf' || t === 'infinity' || t === '∞') return null;
  const beta = Number(t);
  if (!Number.isFinite(beta) || beta <= 0) throw new Error(`beta: ${JSON.stringify(text)} must be a number > 0, or inf`);
  return beta;
}

/** A CSV document from a header and rows (cells holding commas or quotes are quoted). */
export function toCsv(header, rows) {
  const cell = (v) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [header, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';
}

/** The policies' names on the page, the command line and the API docs (`policy` ids stay `zeus`, `wattwise`). */
export const POLICY_NAMES = { zeus: 'Zeus', wattwise: "wattwise's" };

/** A policy's name: `Zeus` or `wattwise's`. */
export const policyName = (id) => POLICY_NAMES[id ?? 'zeus'] ?? String(id);

/**
 * The verdict on a fraction saved against the default (positive: saved):
 * `{ words: 'saves 12.3%', cls: 'saves' }`, `costs 2.5% more` (cls `costs`), or
 * `same as the default` (cls `even`) under 0.05%. With `u`, one standard error of
 * the fraction (the API's `cost_fraction_uncertainty`), the words carry it
 * (`saves 12.3% ± 2.1%`), and a fraction under two standard errors is no verdict:
 * `within noise (saves 1.2% ± 3.4%)`, cls `even`.
 */
export function verdict(saved, u) {
  if (!Number.isFinite(saved)) return { words: 'no estimate', cls: 'even' };
  const p = Math.abs(saved * 100).toFixed(1);
  const known = typeof u === 'number' && Number.isFinite(u) && u >= 0;
  const pm = known ? ` ± ${(u * 100).toFixed(1)}%` : '';
  const lean = p === '0.0' ? `${p}%${pm}` : saved > 0 ? `saves ${p}%${pm}` : `costs ${p}%${pm} more`;
  if (known && Math.abs(saved) < 2 * u) return { words: `within noise (${lean})`, cls: 'even' };
  if (p === '0.0') return { words: `same as the default${pm}`, cls: 'even' };
  return { words: lean, cls: saved > 0 ? 'saves' : 'costs' };
}

/** A Unix-ms instant in UTC, the one time zone the page shows: `2026-12-06 07:45:13 UTC`. */
export function utc(ms) {
  return `${new Date(ms).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

/**
 * Round tick values for a duration axis in seconds, from `min` to `max`: steps
 * of 1, 2 or 5 (or 10, 15, 30 of minutes, 3, 6, 12 of hours) in the unit
 * `duration` shows there, so ticks read 2.00 h, 4.00 h rather than 1.39 h.
 */
export function durationTicks(min, max, count = 6) {
  const span = Math.max(max - min, 1e-9);
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 432000, 864000];
  let step = steps.find((s) => span / s <= count);
  if (step === undefined) step = 10 ** Math.ceil(Math.log10(span / count));
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(v);
  return out;
}
