//! Small statistics over benchmark samples: quantiles (median, IQR), overhead in percent and
//! added nanoseconds per event, and per-event kernel program cost.

/// The `q` quantile (0 ≤ q ≤ 1) of `values`, interpolating linearly between the closest ranks
/// (the "type 7" estimator of R and NumPy). `None` when empty or when `q` is out of range.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=1.0).contains(&q) || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let (a, b) = (*sorted.get(low)?, *sorted.get(high)?);
    Some(a + (b - a) * (rank - low as f64))
}

/// The median of `values`.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The interquartile range (third minus first quartile) of `values`.
pub fn iqr(values: &[f64]) -> Option<f64> {
    Some(quantile(values, 0.75)? - quantile(values, 0.25)?)
}

/// How much slower `value` is than `base`, in percent of `base`.
pub fn overhead_percent(base: f64, value: f64) -> Option<f64> {
    (base > 0.0).then(|| (value - base) / base * 100.0)
}

/// Time added per event, in nanoseconds, when `events` events took `value_s` seconds instead of
/// `base_s`.
pub fn added_ns_per_event(base_s: f64, value_s: f64, events: u64) -> Option<f64> {
    (events > 0).then(|| (value_s - base_s) * 1e9 / events as f64)
}

/// Average run time of a kernel program per invocation.
pub fn ns_per_event(run_time_ns: u64, run_cnt: u64) -> Option<f64> {
    (run_cnt > 0).then(|| run_time_ns as f64 / run_cnt as f64)
}

/// Paired comparison of interleaved rounds: the median over rounds of `f(baseline, variant)`
/// for the rounds where both were measured. Pairing cancels slow drifts of the machine (other
/// load, frequency, page cache) that would otherwise land on whichever variant ran later.
pub fn paired_median(
    baseline: &[f64],
    variant: &[f64],
    f: impl Fn(f64, f64) -> Option<f64>,
) -> Option<f64> {
    let per_round: Vec<f64> = baseline
        .iter()
        .zip(variant)
        .filter_map(|(&b, &v)| f(b, v))
        .collect();
    median(&per_round)
}

#[cfg(test)]
mod tests {
    //! Quantiles and the overhead arithmetic.
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn median_odd_even_and_unsorted() {
        assert!(close(median(&[3.0, 1.0, 2.0]), 2.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
        assert!(close(median(&[7.0]), 7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn quantiles_and_iqr() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(quantile(&values, 0.0), 1.0));
        assert!(close(quantile(&values, 1.0), 5.0));
        assert!(close(quantile(&values, 0.25), 2.0));
        assert!(close(quantile(&values, 0.75), 4.0));
        assert!(close(iqr(&values), 2.0));
        // Interpolated: ranks 0.75 and 2.25 of four values.
        assert!(close(iqr(&[10.0, 20.0, 30.0, 40.0]), 15.0));
        assert!(close(iqr(&[5.0]), 0.0));
        assert_eq!(quantile(&values, 1.5), None);
    }

    #[test]
    fn overhead_math() {
        assert!(close(overhead_percent(2.0, 2.04), 2.0));
        assert!(close(overhead_percent(2.0, 1.9), -5.0));
        assert_eq!(overhead_percent(0.0, 1.0), None);
        // 10 ms more over one million faults is 10 ns per fault.
        assert!(close(added_ns_per_event(1.0, 1.01, 1_000_000), 10.0));
        assert_eq!(added_ns_per_event(1.0, 1.01, 0), None);
        assert!(close(ns_per_event(4_000, 100), 40.0));
        assert_eq!(ns_per_event(4_000, 0), None);
    }

    #[test]
    fn pairs_rounds() {
        let base = [1.0, 2.0, 1.0];
        let variant = [1.1, 2.2, 1.0];
        assert!(close(
            paired_median(&base, &variant, overhead_percent),
            10.0
        ));
        // Extra samples without a partner are ignored.
        assert!(close(
            paired_median(&base[..1], &variant, overhead_percent),
            10.0
        ));
        assert_eq!(paired_median(&[], &variant, overhead_percent), None);
    }
}
