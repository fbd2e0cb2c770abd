// The simulator's thread: loads the wasm bindings and runs every simulation, so
// the page stays responsive during long sweeps.
//
// Messages in:  { id, type: 'load', source: 'zeus' }        (the Zeus traces built into the core)
//               { id, type: 'load', source: 'synthetic' }
//               { id, type: 'load', source: 'files', train: { name, text }, powers: [{ gpu, name, text }] }
//               { id, type: 'simulate', request }   (see Simulator.simulate)
//               { id, type: 'sweep', request }      (see Simulator.sweep)
//               { id, type: 'closest', request }    (see Simulator.closest; always on the Zeus traces)
// Messages out: { id, ok: true, result, ms }  |  { id, ok: false, error: { message, file, line, column } }
//               { id, progress: { done, total } }  (during a sweep, at most every 50 ms)

import init, { Simulator } from './wasm/wattwise.js';

const ready = init();
let simulator = null;
let loaded = null; // the source of `simulator`
let zeus = null; // the Zeus traces for 'closest' when another source is loaded

function errorOf(e) {
  if (e instanceof Error) {
    return { message: e.message, file: e.file, trace: e.trace, line: e.line, column: e.column };
  }
  return { message: String(e) };
}

function handle(msg) {
  switch (msg.type) {
    case 'load': {
      const next =
        msg.source === 'zeus'
          ? Simulator.zeus()
          : msg.source === 'synthetic'
            ? Simulator.synthetic()
            : Simulator.fromCsv(msg.train.name, msg.train.text, msg.powers);
      if (simulator) simulator.free();
      simulator = next;
      loaded = msg.source;
      return simulator.options();
    }
    case 'closest': {
      if (loaded === 'zeus') return simulator.closest(msg.request);
      zeus ??= Simulator.zeus();
      return zeus.closest(msg.request);
    }
    case 'simulate':
      return simulator.simulate(msg.request);
    case 'sweep': {
      let last = 0;
      const progress = (done, total) => {
        const now = performance.now();
        if (done === total || now - last > 50) {
          last = now;
          self.postMessage({ id: msg.id, progress: { done, total } });
        }
      };
      return simulator.sweep(msg.request, progress);
    }
    default:
      throw new Error(`unknown request type ${msg.type}`);
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    await ready;
    if (msg.type !== 'load' && msg.type !== 'closest' && !simulator) throw new Error('no traces loaded');
    const start = performance.now();
    const result = handle(msg);
    self.postMessage({ id: msg.id, ok: true, result, ms: performance.now() - start });
  } catch (e) {
    self.postMessage({ id: msg.id, ok: false, error: errorOf(e) });
  }
};
