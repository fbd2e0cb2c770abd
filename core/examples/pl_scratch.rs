use wattwise_core::cost::zeus_cost;
use wattwise_core::sim::baseline::{baselines, expected};
use wattwise_core::test_support::policy_bench::pairs;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ds = &args[1];
    let eta: f64 = args[2].parse().unwrap();
    for (k, j) in pairs()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ds}/")))
    {
        let b = baselines(j, eta).unwrap();
        println!(
            "{k}: default {} cost {:.0}; oracle {}@{} {:.0}",
            b.default.batch_size,
            b.default.cost,
            b.oracle.batch_size,
            b.oracle.power_limit,
            b.oracle.cost
        );
        for bs in &j.batch_sizes {
            let best = bs
                .limits
                .iter()
                .filter_map(|p| expected(j, bs, p, eta))
                .min_by(|a, b| a.cost.partial_cmp(&b.cost).unwrap());
            let eps: Vec<String> = bs
                .target_epochs
                .iter()
                .map(|t| t.map_or("F".into(), |t| format!("{t}")))
                .collect();
            let p = bs
                .limits
                .iter()
                .map(|p| {
                    (
                        p.power_limit,
                        zeus_cost(p.energy_per_epoch, p.time_per_epoch, eta, j.max_power),
                    )
                })
                .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
                .unwrap();
            if let Some(best) = best {
                println!("  bs {:5} best {}W cost/run {:.0} (x oracle {:.3}) cost/epoch {:.0} epochs [{}]", bs.batch_size, best.power_limit, best.cost, best.cost / b.oracle.cost, p.1, eps.join(" "));
            }
        }
    }
}
