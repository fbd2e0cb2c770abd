//! wattwise in WebAssembly: browser bindings and the Cloudflare Worker entry.

#[cfg(feature = "browser")]
pub mod browser;
