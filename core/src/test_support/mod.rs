//! What the tests of the core and of the hosts share (feature `test-support`):
//! a deterministic host environment ([`env`]), a service over the memory
//! store called as a client calls it ([`harness`]), hostile documents against any
//! store ([`hostile_docs`]), and the policy benchmark's computation
//! ([`policy_bench`], shared by `core/tests/policy.rs` and
//! `core/examples/policy_bench.rs`). No I/O, as the rest of the core.

pub mod env;
pub mod harness;
pub mod hostile_docs;
pub mod policy_bench;
