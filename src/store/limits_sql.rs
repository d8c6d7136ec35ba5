//! A caller's owner limit as part of a query, so rows outside it are never
//! read: ` AND owner_id IN ($n, $n+1, …)`, with one bound value per owner.
//! The text is assembled from fixed fragments and parameter numbers only;
//! the owner ids are bound.

use crate::domain::OwnerId;

/// The clause for `owners`, numbering its parameters from `first`; empty
/// without a limit. `owned_only` also drops rows about no owner (a limit
/// in any dimension hides what spans them all).
pub(crate) fn owner_clause(first: usize, owners: Option<&[OwnerId]>, owned_only: bool) -> String {
    match owners {
        Some(owners) => {
            let params: Vec<String> = (first..first + owners.len())
                .map(|n| format!("${n}"))
                .collect();
            format!(" AND owner_id IN ({})", params.join(", "))
        }
        None if owned_only => " AND owner_id IS NOT NULL".to_owned(),
        None => String::new(),
    }
}

/// The clause for a keyspace limit on `column` (`keyspace_id`, or a
/// subquery's key id for rows that only name a key), numbering its
/// parameters from `first`; empty without a limit.
pub(crate) fn keyspace_clause(first: usize, keyspaces: Option<&[String]>, column: &str) -> String {
    match keyspaces {
        Some(ks) => {
            let params: Vec<String> = (first..first + ks.len()).map(|n| format!("${n}")).collect();
            format!(" AND {column} IN ({})", params.join(", "))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_number_one_parameter_per_owner() {
        let owners = [
            OwnerId::parse("a").expect("owner"),
            OwnerId::parse("b").expect("owner"),
        ];
        assert_eq!(
            owner_clause(9, Some(&owners), true),
            " AND owner_id IN ($9, $10)"
        );
        assert_eq!(owner_clause(9, None, true), " AND owner_id IS NOT NULL");
        assert_eq!(owner_clause(9, None, false), "");
    }
}
