//! Noticing that the change log no longer continues what a replica applied.

use crate::store::{Change, LogBounds};

/// What the feed's applied sequence refers to: the log's epoch, and the last
/// change applied, so a log that went back or was replaced is noticed.
#[derive(Default)]
pub(super) struct Lineage {
    pub epoch: Option<i64>,
    /// Read again with each batch: a different row there means the log
    /// was replaced even if its head is past the applied sequence.
    pub anchor: Option<Change>,
}

impl Lineage {
    /// Why the log no longer continues what was applied, if it does not.
    pub fn moved(&self, bounds: &LogBounds, applied: i64) -> Option<&'static str> {
        if self.epoch.is_some_and(|e| e != bounds.epoch) {
            Some("the change log's epoch changed (a restore or a failover)")
        } else if bounds.head < applied {
            Some("the change log's head is below the applied sequence (a restore or a failover)")
        } else if bounds.pruned_through > applied {
            // Rows this replica never read are gone, even if none follow
            // them to show the gap.
            Some("change-log rows after the applied sequence were pruned")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(pruned_through: i64, head: i64) -> LogBounds {
        LogBounds {
            pruned_through,
            head,
            epoch: 7,
        }
    }

    #[test]
    fn rows_pruned_past_the_applied_sequence_need_a_reload() {
        let lineage = Lineage {
            epoch: Some(7),
            anchor: None,
        };
        assert_eq!(lineage.moved(&bounds(0, 10), 4), None);
        assert_eq!(lineage.moved(&bounds(4, 10), 4), None);
        // Row 5 was pruned before it was read, and nothing may follow it.
        assert!(lineage.moved(&bounds(5, 5), 4).is_some());
        assert!(lineage.moved(&bounds(0, 3), 4).is_some());
        assert!(
            lineage
                .moved(
                    &LogBounds {
                        epoch: 8,
                        ..bounds(0, 10)
                    },
                    4
                )
                .is_some()
        );
    }
}
