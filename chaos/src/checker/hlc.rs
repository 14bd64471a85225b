//! HLC order: the stamps the leader put on acknowledged writes increase strictly with the
//! log index, across leader changes and clock skew. Point-in-time restore relies on it.

use super::{CheckerResult, Verdict};

/// Checks (log index, HLC) pairs of acknowledged writes.
pub fn check(stamps: &[(u64, u64)]) -> CheckerResult {
    let mut sorted = stamps.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let details: Vec<String> = sorted
        .windows(2)
        .filter(|w| w[1].1 <= w[0].1)
        .take(50)
        .map(|w| {
            format!(
                "index {} stamped {} but index {} stamped {} (not after it)",
                w[1].0, w[1].1, w[0].0, w[0].1
            )
        })
        .collect();
    let summary = format!(
        "{} acknowledged writes, {} stamped out of log order",
        sorted.len(),
        details.len()
    );
    let verdict = if sorted.is_empty() {
        Verdict::Unknown {
            reason: "no acknowledged write reported a stamp".into(),
        }
    } else if details.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail { details }
    };
    CheckerResult {
        checker: "hlc-order".into(),
        verdict,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_must_grow_with_the_index() {
        assert!(check(&[(3, 30), (1, 10), (2, 20)]).passed());
        assert!(!check(&[(1, 10), (2, 20), (3, 15)]).passed());
        assert!(
            !check(&[(1, 10), (2, 10)]).passed(),
            "equal stamps are not increasing"
        );
        assert!(matches!(check(&[]).verdict, Verdict::Unknown { .. }));
    }
}
