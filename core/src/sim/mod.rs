//! The trace-driven simulator (filled by the simulator work).
