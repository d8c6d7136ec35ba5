//! What an acknowledged commit survives, read back from the store's own
//! pooled connections rather than assumed from the options that set it.

/// The commit settings of one pooled connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    Sqlite {
        /// `PRAGMA journal_mode`: `wal` lets readers run beside the writer.
        journal_mode: String,
        /// `PRAGMA synchronous`: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
        synchronous: i64,
    },
    Postgres {
        /// This session's `synchronous_commit`, which keysmith sets itself.
        synchronous_commit: String,
        /// The server's `fsync`: the operator's, not settable per session.
        fsync: String,
    },
}

impl Durability {
    /// Whether a commit that returned is on stable storage, so it survives
    /// power loss and not only a killed process: `kill -9` never loses the
    /// page cache, so a test of it cannot tell.
    ///
    /// SQLite in WAL mode needs FULL: NORMAL syncs the WAL only at
    /// checkpoints, so the last commits before a power cut can vanish.
    /// PostgreSQL needs `synchronous_commit` other than `off` (every other
    /// value flushes the local WAL before the commit returns) and `fsync`.
    pub fn survives_power_loss(&self) -> bool {
        match self {
            Self::Sqlite {
                journal_mode,
                synchronous,
            } => journal_mode.eq_ignore_ascii_case("wal") && *synchronous >= 2,
            Self::Postgres {
                synchronous_commit,
                fsync,
            } => synchronous_commit != "off" && fsync == "on",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Durability;

    #[test]
    fn only_synced_commits_count_as_power_loss_safe() {
        let sqlite = |mode: &str, synchronous| Durability::Sqlite {
            journal_mode: mode.into(),
            synchronous,
        };
        assert!(sqlite("wal", 2).survives_power_loss());
        assert!(sqlite("WAL", 3).survives_power_loss());
        assert!(!sqlite("wal", 1).survives_power_loss(), "NORMAL");
        assert!(!sqlite("wal", 0).survives_power_loss(), "OFF");
        assert!(!sqlite("memory", 2).survives_power_loss());
        let pg = |commit: &str, fsync: &str| Durability::Postgres {
            synchronous_commit: commit.into(),
            fsync: fsync.into(),
        };
        assert!(pg("on", "on").survives_power_loss());
        assert!(pg("local", "on").survives_power_loss());
        assert!(!pg("off", "on").survives_power_loss());
        assert!(!pg("on", "off").survives_power_loss());
    }
}
