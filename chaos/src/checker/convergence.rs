//! Replicas converge: nodes at the same applied index report the same state checksum.

use super::{CheckerResult, Verdict};

/// One node's state checksum.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeChecksum {
    pub node: u64,
    pub applied_index: u64,
    pub digest: String,
}

/// Compares checksums taken once every node reached the same applied index.
pub fn check(sums: &[NodeChecksum]) -> CheckerResult {
    let Some(first) = sums.first() else {
        return CheckerResult {
            checker: "convergence".into(),
            verdict: Verdict::Unknown {
                reason: "no node answered with a checksum".into(),
            },
            summary: "no checksums".into(),
        };
    };
    let mut details = Vec::new();
    if sums.iter().any(|s| s.applied_index != first.applied_index) {
        return CheckerResult {
            checker: "convergence".into(),
            verdict: Verdict::Unknown {
                reason: "nodes never reached the same applied index".into(),
            },
            summary: format!(
                "applied indexes {:?}",
                sums.iter()
                    .map(|s| (s.node, s.applied_index))
                    .collect::<Vec<_>>()
            ),
        };
    }
    for s in sums {
        if s.digest != first.digest {
            details.push(format!(
                "node {} digest {} differs from node {} digest {} at index {}",
                s.node, s.digest, first.node, first.digest, s.applied_index
            ));
        }
    }
    let summary = format!(
        "{} nodes at applied index {}, {} differing",
        sums.len(),
        first.applied_index,
        details.len()
    );
    let verdict = if details.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail { details }
    };
    CheckerResult {
        checker: "convergence".into(),
        verdict,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(node: u64, applied_index: u64, digest: &str) -> NodeChecksum {
        NodeChecksum {
            node,
            applied_index,
            digest: digest.into(),
        }
    }

    #[test]
    fn same_index_same_digest_passes_otherwise_not() {
        assert!(check(&[sum(1, 5, "aa"), sum(2, 5, "aa")]).passed());
        assert!(matches!(
            check(&[sum(1, 5, "aa"), sum(2, 5, "bb")]).verdict,
            Verdict::Fail { .. }
        ));
        assert!(matches!(
            check(&[sum(1, 5, "aa"), sum(2, 6, "aa")]).verdict,
            Verdict::Unknown { .. }
        ));
        assert!(matches!(check(&[]).verdict, Verdict::Unknown { .. }));
    }
}
