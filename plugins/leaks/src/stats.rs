//! Robust trend statistics for counts that leak: the Theil–Sen slope (the
//! median of pairwise slopes, which a quarter of wild points cannot move),
//! the Mann–Kendall test of a monotonic trend (ranks only, so a sawtooth's
//! amplitude does not weigh), low quantiles of segments (the floor a
//! garbage collector returns to), and where a single step fits best.

/// Points are `(time in ms, value)`, in time order.
pub type Point = (i64, f64);

/// The median of `v`, reordering it; `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if v.len() % 2 == 1 {
        return Some(upper);
    }
    // The lower middle is the largest of the first half.
    let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// The `q` quantile (0..=1, nearest rank) of `v`, reordering it.
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    Some(*x)
}

/// The Theil–Sen slope of `p`, per ms: the median of the slopes between
/// every two points at different times.
pub fn theil_sen(p: &[Point]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(p.len() * p.len().saturating_sub(1) / 2);
    for (i, a) in p.iter().enumerate() {
        for b in &p[i + 1..] {
            let dt = (b.0 - a.0) as f64;
            if dt > 0.0 {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    median(&mut slopes)
}

/// The Mann–Kendall statistic of `v` (in time order) as a normal score:
/// large and positive when later values tend to exceed earlier ones, near 0
/// without a trend. Ties, common in counts, are corrected for.
pub fn mann_kendall_z(v: &[f64]) -> f64 {
    let n = v.len();
    if n < 3 {
        return 0.0;
    }
    let mut s: i64 = 0;
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            s += match b.total_cmp(a) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let tie_term = |t: f64| t * (t - 1.0) * (2.0 * t + 5.0);
    let mut ties = 0.0;
    let mut run = 1.0;
    for w in sorted.windows(2) {
        if w[0] == w[1] {
            run += 1.0;
        } else {
            ties += tie_term(run);
            run = 1.0;
        }
    }
    ties += tie_term(run);
    let var = (tie_term(n as f64) - ties) / 18.0;
    if var <= 0.0 {
        return 0.0;
    }
    // With the usual continuity correction.
    match s {
        0 => 0.0,
        s if s > 0 => (s - 1) as f64 / var.sqrt(),
        s => (s + 1) as f64 / var.sqrt(),
    }
}

/// Where one step (two flat levels) fits `v` best: the index the second
/// level starts at, each level at least `min_len` values long. `None` when
/// `v` is too short for two such levels.
pub fn best_step(v: &[f64], min_len: usize) -> Option<usize> {
    let n = v.len();
    let min_len = min_len.max(1);
    if n < 2 * min_len {
        return None;
    }
    // Prefix sums of values and squares: each split's squared error in O(1).
    let mut s = vec![0.0; n + 1];
    let mut q = vec![0.0; n + 1];
    for (i, x) in v.iter().enumerate() {
        s[i + 1] = s[i] + x;
        q[i + 1] = q[i] + x * x;
    }
    let sse = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let sum = s[b] - s[a];
        (q[b] - q[a]) - sum * sum / len
    };
    (min_len..=n - min_len)
        .map(|k| (sse(0, k) + sse(k, n), k))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The standard normal distribution function, for turning a score into a
/// confidence (Abramowitz and Stegun 26.2.17, error below 1e-7).
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly = t
        * (0.319_381_530
            + t * (-0.356_563_782
                + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let upper = (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 { 1.0 - upper } else { upper }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_a_quarter_of_wild_points() {
        let mut p: Vec<Point> = (0..40).map(|i| (i * 1000, 2.0 * i as f64)).collect();
        for i in (0..40).step_by(4) {
            p[i].1 += 500.0;
        }
        let b = theil_sen(&p).unwrap() * 1000.0;
        assert!((b - 2.0).abs() < 0.05, "{b}");
    }

    #[test]
    fn mann_kendall_sees_monotone_rises_and_not_periodic_teeth() {
        let rising: Vec<f64> = (0..30).map(|i| i as f64).collect();
        assert!(mann_kendall_z(&rising) > 5.0);
        let falling: Vec<f64> = rising.iter().rev().copied().collect();
        assert!(mann_kendall_z(&falling) < -5.0);
        // Five whole teeth of a sawtooth: the rises inside each tooth score
        // a little, far below a real rise (the floor test in `growth` does
        // the rest).
        let saw: Vec<f64> = (0..60).map(|i| (i % 12) as f64).collect();
        assert!(mann_kendall_z(&saw).abs() < 2.5, "{}", mann_kendall_z(&saw));
        // All ties: nothing to say.
        assert_eq!(mann_kendall_z(&[3.0; 20]), 0.0);
    }

    #[test]
    fn a_step_is_found_where_it_is() {
        let v: Vec<f64> = (0..30).map(|i| if i < 21 { 5.0 } else { 9.0 }).collect();
        assert_eq!(best_step(&v, 3), Some(21));
        assert_eq!(best_step(&v[..5], 3), None);
    }

    #[test]
    fn medians_quantiles_and_the_normal_function() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(quantile(&mut [5.0, 1.0, 9.0, 3.0, 7.0], 0.0), Some(1.0));
        assert_eq!(quantile(&mut [5.0, 1.0, 9.0, 3.0, 7.0], 1.0), Some(9.0));
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-3.0) - 0.00135).abs() < 1e-4);
    }
}
