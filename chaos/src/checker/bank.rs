//! Bank invariant: every read of all accounts sums to the opening total and shows no
//! negative balance and no missing account.

use super::{CheckerResult, Verdict};
use crate::workload::bank::{BankRead, OPENING_BALANCE};

/// Checks every recorded read.
pub fn check(reads: &[BankRead], accounts: u32) -> CheckerResult {
    let total = OPENING_BALANCE * i64::from(accounts);
    let mut details = Vec::new();
    for r in reads {
        let sum: i64 = r.balances.iter().fold(0i64, |a, b| a.saturating_add(*b));
        if r.balances.len() != accounts as usize
            || sum != total
            || r.balances.iter().any(|b| *b < 0)
        {
            details.push(format!(
                "read at {} ms (applied index {}): {} accounts, total {sum} (expected {total}), balances {:?}",
                r.at_ns / 1_000_000,
                r.applied_index,
                r.balances.len(),
                r.balances
            ));
        }
    }
    let summary = format!(
        "{} reads of {accounts} accounts, {} violating the invariant",
        reads.len(),
        details.len()
    );
    let verdict = if reads.is_empty() {
        Verdict::Unknown {
            reason: "no complete read of the accounts was recorded".into(),
        }
    } else if details.is_empty() {
        Verdict::Pass
    } else {
        details.truncate(50);
        Verdict::Fail { details }
    };
    CheckerResult {
        checker: "bank".into(),
        verdict,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(balances: Vec<i64>) -> BankRead {
        BankRead {
            at_ns: 0,
            applied_index: 1,
            balances,
        }
    }

    #[test]
    fn catches_wrong_totals_and_negative_balances() {
        assert!(check(&[read(vec![100, 100])], 2).passed());
        assert!(check(&[read(vec![150, 50])], 2).passed());
        assert!(!check(&[read(vec![150, 100])], 2).passed());
        assert!(!check(&[read(vec![250, -50])], 2).passed());
        assert!(
            !check(&[read(vec![200])], 2).passed(),
            "a missing account is a violation"
        );
        assert!(matches!(check(&[], 2).verdict, Verdict::Unknown { .. }));
    }
}
