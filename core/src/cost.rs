//! The Zeus cost of a training run.

/// Zeus's energy-time cost: `eta * energy + (1 - eta) * max_power * time`.
///
/// `energy` is in joules, `time` in seconds and `max_power` in watts (the maximum
/// power of all the job's GPUs together), so the cost is in joules: `eta` weighs
/// energy against time converted to energy at full power.
pub fn zeus_cost(energy: f64, time: f64, eta_knob: f64, max_power: f64) -> f64 {
    eta_knob * energy + (1.0 - eta_knob) * max_power * time
}

#[cfg(test)]
mod tests {
    use super::zeus_cost;

    #[test]
    fn weighs_energy_against_time_at_max_power() {
        assert_eq!(zeus_cost(100.0, 2.0, 1.0, 300.0), 100.0);
        assert_eq!(zeus_cost(100.0, 2.0, 0.0, 300.0), 600.0);
        assert_eq!(zeus_cost(100.0, 2.0, 0.5, 300.0), 350.0);
    }
}
