// Layout and verdict checks shared by the page's suites (e2e.test.mjs for the
// what-if view, jobs.test.mjs for the jobs view), run at 390x844 and 1440x900.
//
// assertLayout: on every visible piece of content (each line of text, each
// control, canvas and image, clipped by its scrolling ancestors), none overlaps
// another, and none reaches past the viewport's sides unless it sits in a
// scroll container that says so (data-scrolls="sideways" and a visible hint
// before it).
// assertVerdicts: every verdict on screen (.verdict-text, with the fraction it
// states in data-saved, and its standard error in data-uncertainty when known)
// says what the fraction says, in words and in colour: within noise (grey) when
// the fraction is under two standard errors.

import assert from 'node:assert/strict';
import path from 'node:path';

export const VIEWPORTS = [
  { width: 390, height: 844 },
  { width: 1440, height: 900 },
];

/** Collects the boxes and the offenders in the page (runs in the browser). */
function measure() {
  const vw = document.documentElement.clientWidth;
  const REPLACED = new Set(['CANVAS', 'INPUT', 'SELECT', 'BUTTON', 'PROGRESS', 'IMG', 'TEXTAREA', 'SVG']);
  const visible = (el) => el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  const clipOf = (el) => {
    // The part of the page el's scrolling ancestors let show.
    let r = { left: -Infinity, top: -Infinity, right: Infinity, bottom: Infinity };
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const st = getComputedStyle(a);
      if (st.overflowX !== 'visible' || st.overflowY !== 'visible') {
        const b = a.getBoundingClientRect();
        r = { left: Math.max(r.left, b.left), top: Math.max(r.top, b.top), right: Math.min(r.right, b.right), bottom: Math.min(r.bottom, b.bottom) };
      }
    }
    return r;
  };
  const scroller = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (a.dataset?.scrolls === 'sideways') {
        const hint = a.previousElementSibling;
        return hint?.classList.contains('scroll-hint') && visible(hint) ? a : null;
      }
    }
    return null;
  };
  const name = (el) => {
    const id = el.id ? `#${el.id}` : '';
    const cls = typeof el.className === 'string' && el.className ? `.${el.className.trim().split(/\s+/).join('.')}` : '';
    return `${el.tagName.toLowerCase()}${id}${cls}`;
  };
  const boxes = [];
  const add = (el, rect, what) => {
    if (rect.width < 1 || rect.height < 1) return;
    const c = clipOf(el);
    const clipped = { left: Math.max(rect.left, c.left), top: Math.max(rect.top, c.top), right: Math.min(rect.right, c.right), bottom: Math.min(rect.bottom, c.bottom) };
    if (clipped.right - clipped.left < 1 || clipped.bottom - clipped.top < 1) return; // scrolled out of its container
    boxes.push({ el, rect: clipped, raw: rect, what: `${name(el)} ${what}`.trim() });
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.nodeType === Node.TEXT_NODE) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || REPLACED.has(el.tagName) || el.tagName === 'OPTION' || el.tagName === 'SCRIPT' || el.tagName === 'STYLE') continue;
      if (!visible(el) || el.closest('svg')) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      for (const r of range.getClientRects()) add(el, r, JSON.stringify(n.textContent.trim().slice(0, 40)));
    } else if (REPLACED.has(n.tagName.toUpperCase()) && visible(n)) {
      add(n, n.getBoundingClientRect(), '');
    }
  }
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = [boxes[i], boxes[j]];
      if (a.el === b.el || a.el.contains(b.el) || b.el.contains(a.el)) continue;
      const w = Math.min(a.rect.right, b.rect.right) - Math.max(a.rect.left, b.rect.left);
      const h = Math.min(a.rect.bottom, b.rect.bottom) - Math.max(a.rect.top, b.rect.top);
      if (w > 1 && h > 1) overlaps.push(`${a.what} overlaps ${b.what} (${w.toFixed(0)}x${h.toFixed(0)} px)`);
    }
  }
  const outside = boxes
    .filter((b) => (b.raw.right > vw + 1 || b.raw.left < -1) && !scroller(b.el))
    .map((b) => `${b.what} spans ${b.raw.left.toFixed(0)}..${b.raw.right.toFixed(0)} px of a ${vw} px viewport`);
  return { boxes: boxes.length, overlaps, outside, pageWidth: document.documentElement.scrollWidth, vw };
}

/** Asserts the layout rules on the page as it is, and keeps a screenshot. */
export async function assertLayout(page, artifacts, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
  const m = await page.evaluate(measure);
  assert.ok(m.boxes > 10, `${name}: only ${m.boxes} boxes measured`);
  assert.deepEqual(m.overlaps.slice(0, 20), [], `${name}: content overlaps`);
  assert.deepEqual(m.outside.slice(0, 20), [], `${name}: content past the viewport outside a scroll container that says so`);
  assert.ok(m.pageWidth <= m.vw + 1, `${name}: the page is ${m.pageWidth - m.vw} px wider than the screen`);
  return m;
}

/**
 * The words a fraction saved must read as, with `u` its standard error when known
 * (written apart from the page's own function).
 */
export function expectedVerdict(saved, u) {
  const grey = 'rgb(107, 114, 128)';
  const p = Math.abs(saved * 100).toFixed(1);
  const pm = Number.isFinite(u) ? ` ± ${(u * 100).toFixed(1)}%` : '';
  const lean = p === '0.0' ? `0.0%${pm}` : saved > 0 ? `saves ${p}%${pm}` : `costs ${p}%${pm} more`;
  if (Number.isFinite(u) && Math.abs(saved) < 2 * u) return { words: `within noise (${lean})`, color: grey };
  if (p === '0.0') return { words: `same as the default${pm}`, color: grey };
  return saved > 0 ? { words: lean, color: 'rgb(21, 128, 61)' } : { words: lean, color: 'rgb(185, 28, 28)' };
}

/** Asserts every visible verdict's words and colour against its fraction; returns how many. */
export async function assertVerdicts(page, name) {
  const shown = await page.$$eval('.verdict-text', (els) =>
    els
      .filter((el) => el.checkVisibility())
      .map((el) => ({ text: el.textContent, saved: Number(el.dataset.saved), u: el.dataset.uncertainty === undefined ? undefined : Number(el.dataset.uncertainty), color: getComputedStyle(el).color, id: el.id || el.dataset.key || el.className })),
  );
  for (const v of shown) {
    assert.ok(Number.isFinite(v.saved), `${name}: ${v.id} has no fraction`);
    if (v.u !== undefined) assert.ok(Number.isFinite(v.u) && v.u >= 0, `${name}: ${v.id} has a standard error of ${v.u}`);
    const want = expectedVerdict(v.saved, v.u);
    assert.ok(v.text.includes(want.words), `${name}: ${v.id} reads ${JSON.stringify(v.text)}, its fraction ${v.saved} says ${want.words}`);
    assert.equal(v.color, want.color, `${name}: ${v.id} (${v.text}) colour`);
  }
  return shown.length;
}
