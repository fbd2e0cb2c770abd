//! Which batch size policy a job runs.
//!
//! A job registered without a `policy` field (Zeus's client, every stored Zeus
//! document) runs [`Policy::Zeus`]: pruning exploration ([`crate::explore`]) then
//! Gaussian Thompson sampling ([`crate::bandit`]), exactly as Zeus decides.
//! `"policy": "wattwise"` selects [`wattwise`], which sees the same inputs (the
//! job spec and the runs' reports) and decides the batch size and when to stop a
//! run differently.
//!
//! A wattwise job may also start from what the other jobs of its workload (the
//! spec's optional `workload`) learned: [`shared`] holds that knowledge (epochs to
//! target per batch size, bounded), [`warm`] decides from it and from the job's own
//! power profiles, and drops it when the job's own runs disagree. A job given no
//! knowledge ([`crate::job::JobState::share`]) decides exactly as before.

pub mod shared;
pub mod warm;
pub mod wattwise;

#[cfg(test)]
mod test_runs;

use serde::{Deserialize, Serialize};

/// A job's batch size policy (the job spec's optional `policy` field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Zeus's pruning exploration and Thompson sampling (the default).
    #[default]
    Zeus,
    /// wattwise's local search and cost-aware early stopping ([`wattwise`]).
    Wattwise,
}

impl Policy {
    /// Every policy, the default first.
    pub const ALL: [Policy; 2] = [Policy::Zeus, Policy::Wattwise];

    /// Whether this is the default, Zeus (the spec and document then omit the field).
    pub fn is_zeus(&self) -> bool {
        *self == Policy::Zeus
    }

    /// The policy's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Zeus => "zeus",
            Policy::Wattwise => "wattwise",
        }
    }

    /// The policy's name in prose, the same on the page, the command line and the
    /// API docs: `Zeus` or `wattwise's` (the product is wattwise; both policies
    /// are its).
    pub fn display_name(&self) -> &'static str {
        match self {
            Policy::Zeus => "Zeus",
            Policy::Wattwise => "wattwise's",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is not one of [`Policy::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy: must be \"zeus\" or \"wattwise\" (got {0:?})")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::Policy;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for p in Policy::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
            assert_eq!(p.name().parse::<Policy>().unwrap(), p);
        }
        assert!("Zeus2".parse::<Policy>().is_err());
        assert_eq!(Policy::default(), Policy::Zeus);
    }
}
