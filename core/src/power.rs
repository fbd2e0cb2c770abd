//! The power limit optimizer (filled by the agent work).
