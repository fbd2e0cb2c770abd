// The Worker's module entry (wrangler.toml `main`): instantiates the wasm that
// build-worker.sh made and hands each fetch to the Rust `#[event(fetch)]` handler.
// The Durable Object class of the strongly consistent mode is the wasm's JobObject.
import wasmModule from "./build/worker/index_bg.wasm";
import { initSync, fetch as handleFetch, JobObject } from "./build/worker/index.js";

initSync({ module: wasmModule });

export default {
  fetch(request, env, ctx) {
    return handleFetch(request, env, ctx);
  },
};

export { JobObject };
