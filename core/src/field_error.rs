//! The one error shape for a value that breaks a rule: the field, by its wire
//! name, and the rule, in words (`"eta_knob: must be in [0, 1]"`).
//!
//! Job specs, power profiles, power optimizer settings and simulator knobs all
//! refuse input with a [`FieldError`]; the HTTP service answers it with 422.

use std::borrow::Cow;

/// A value that broke a rule: which field, and which rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The offending field, by its wire name (a path such as `measurements.power_limit`).
    /// A name from the wire is `&'static`; a path read from a body (serde's
    /// path to the bad value) is owned.
    pub field: Cow<'static, str>,
    /// The rule it broke.
    pub rule: String,
}

impl FieldError {
    /// The error for `field` breaking `rule`.
    pub fn new(field: impl Into<Cow<'static, str>>, rule: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}
