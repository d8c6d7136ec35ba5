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
        } else {
            None
        }
    }
}
