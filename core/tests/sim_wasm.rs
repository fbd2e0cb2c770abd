//! Determinism across hosts: the same simulations, compiled for
//! wasm32-unknown-unknown and run under Node, give bit-identical histories to
//! the native build.
//!
//! The test writes a tiny cdylib crate that depends on wattwise-core, builds it
//! for wasm32 (its own target directory, under the system temp dir), and runs it
//! with `node`. Each simulation's history is folded into an FNV-1a digest over
//! every field's bits. It fails, saying so, when `node` or the wasm32 target is
//! missing.

use std::path::PathBuf;
use std::process::Command;

mod sim_common;

/// The digests and the simulations behind them, as source: the same file is
/// compiled natively (through `sim_common`) and into the wasm module.
const DIGESTS_SRC: &str = include_str!("sim_common/digests.rs");

/// Runs `cmd`, failing the test with its stderr unless it succeeds.
fn succeeds(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn has(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wasm_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-unknown-unknown")
        })
}

fn lib_rs() -> String {
    format!(
        r#"{DIGESTS_SRC}
static mut OUT: [u64; 16] = [0; 16];

/// Runs the simulations; returns how many digests `out_ptr` holds.
#[no_mangle]
pub extern "C" fn run() -> u32 {{
    let out = cross_host_digests();
    for (i, d) in out.iter().enumerate() {{
        unsafe {{ OUT[i] = *d; }}
    }}
    out.len() as u32
}}

#[no_mangle]
pub extern "C" fn out_ptr() -> *const u64 {{
    core::ptr::addr_of!(OUT) as *const u64
}}
"#
    )
}

const NODE_JS: &str = r#"
const fs = require('fs');
const bytes = fs.readFileSync(process.argv[2]);
WebAssembly.instantiate(bytes, {}).then(({ instance }) => {
  const n = instance.exports.run();
  const view = new BigUint64Array(instance.exports.memory.buffer, instance.exports.out_ptr(), n);
  console.log(Array.from(view, (x) => x.toString()).join(' '));
});
"#;

#[test]
fn wasm32_histories_are_bit_identical_to_native() {
    assert!(
        has("node", "--version"),
        "node is missing: install Node.js 20+ to check the wasm32 build against the native one"
    );
    assert!(
        wasm_target_installed(),
        "the wasm32-unknown-unknown target is missing: rustup target add wasm32-unknown-unknown"
    );
    let core_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join("wattwise-sim-wasm-check");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"sim-wasm-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwattwise-core = {{ path = {:?} }}\n\n\
             [profile.release]\nopt-level = 2\n\n[workspace]\n",
            core_dir.display().to_string()
        ),
    )
    .unwrap();
    // Pin the dependency versions to the workspace's.
    let _ = std::fs::copy(core_dir.join("../Cargo.lock"), work.join("Cargo.lock"));
    std::fs::write(work.join("src/lib.rs"), lib_rs()).unwrap();
    succeeds(
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "--quiet",
            ])
            .current_dir(&work)
            .env("CARGO_TARGET_DIR", work.join("target"))
            .env_remove("RUSTFLAGS"),
        "the wasm32 build",
    );
    let wasm = work.join("target/wasm32-unknown-unknown/release/sim_wasm_check.wasm");
    std::fs::write(work.join("run.js"), NODE_JS).unwrap();
    let run = succeeds(
        Command::new("node").arg(work.join("run.js")).arg(&wasm),
        "node",
    );
    let wasm_digests: Vec<u64> = String::from_utf8_lossy(&run.stdout)
        .split_whitespace()
        .map(|d| d.parse().unwrap())
        .collect();
    let native = sim_common::cross_host_digests();
    assert_eq!(wasm_digests.len(), native.len());
    assert_eq!(wasm_digests, native, "wasm32 and native histories differ");
    eprintln!(
        "{} simulations bit-identical on wasm32 and native: {native:x?}",
        native.len()
    );
}
