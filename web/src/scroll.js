// Tables wider than the screen scroll inside their .table-wrap; a wrap that does
// says so (a hint above it, and data-scrolls="sideways" for the layout test).

/** Marks each .table-wrap that scrolls sideways now, and unmarks the others. */
export function markScrollers() {
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    const scrolls = wrap.offsetParent !== null && wrap.scrollWidth > wrap.clientWidth + 1;
    let hint = wrap.previousElementSibling?.classList.contains('scroll-hint') ? wrap.previousElementSibling : null;
    if (scrolls && !hint) {
      hint = Object.assign(document.createElement('p'), { className: 'scroll-hint muted', textContent: 'Wider than the screen: scroll the table sideways for more columns →' });
      wrap.before(hint);
    }
    if (hint) hint.hidden = !scrolls;
    if (scrolls) wrap.dataset.scrolls = 'sideways';
    else delete wrap.dataset.scrolls;
  }
}

let pending = 0;
window.addEventListener('resize', () => {
  cancelAnimationFrame(pending);
  pending = requestAnimationFrame(markScrollers);
});
