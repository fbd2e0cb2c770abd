//! wattwise in WebAssembly: browser bindings and the Cloudflare Worker entry.
