//! Credits and owners: the admin side of usage limits. Every change is
//! audited with its actor in the store transaction that makes it.

use serde_json::json;

use super::{Actor, Keys, NewCredits};
use crate::{
    domain::{
        KeyId, Metadata, OwnerId,
        quota::{Limits, Subject},
    },
    error::{Error, Result},
    store::{Balance, CreditChange, CreditOutcome, NewBalance, Owner},
};

/// Why a token limited to keyspaces may not see owners.
const SPANS_KEYSPACES: &str =
    "owners span keyspaces: a token limited to keyspaces cannot read or change them";

/// An owner is within `actor`'s reach: a token limited to keyspaces reaches
/// none (an owner's keys, metadata and plan span keyspaces), and one
/// limited to owners only those (others answer as if they did not exist).
fn owner_in_reach(actor: &Actor, owner: &OwnerId) -> Result<()> {
    if actor.limits().keyspaces().is_some() {
        return Err(Error::PermissionDenied(SPANS_KEYSPACES));
    }
    if !actor.limits().admits_owner(owner.as_str()) {
        return Err(Error::NotFound(format!("owner {owner}")));
    }
    Ok(())
}

/// Whose balance: a key's (the pool its lineage shares) or an owner's.
pub enum CreditsOf {
    Key(KeyId),
    Owner(OwnerId),
}

impl Keys {
    /// The store's name of the balance, once `actor` may see its holder.
    async fn credits_subject(&self, of: &CreditsOf, actor: &Actor) -> Result<String> {
        match of {
            CreditsOf::Key(id) => {
                let key = self.get_visible(id, actor).await?;
                let quota = key
                    .restrictions
                    .quota
                    .as_deref()
                    .filter(|q| q.credits)
                    .ok_or_else(|| Error::NotFound(format!("credits of key {id}")))?;
                let pool = quota.pool.as_ref().unwrap_or(&key.id);
                Ok(Subject::Key(pool.pack()).to_db())
            }
            CreditsOf::Owner(o) => {
                owner_in_reach(actor, o)?;
                Ok(Subject::Owner(o.as_str().into()).to_db())
            }
        }
    }

    pub async fn credits(&self, of: &CreditsOf, actor: &Actor) -> Result<Balance> {
        let subject = self.credits_subject(of, actor).await?;
        self.store
            .get_balance(&subject)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credits of {subject}")))
    }

    /// Sets, increments or decrements a balance, or changes how it is kept.
    pub async fn update_credits(
        &self,
        of: &CreditsOf,
        change: Option<CreditChange>,
        policy: impl FnOnce(&Balance) -> Result<Option<crate::domain::quota::CreditPolicy>>,
        reason: &str,
        actor: &Actor,
    ) -> Result<Balance> {
        let subject = self.credits_subject(of, actor).await?;
        let current = self
            .store
            .get_balance(&subject)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credits of {subject}")))?;
        let policy = policy(&current)?;
        if change.is_none() && policy.is_none() {
            return Err(Error::invalid(
                "change",
                "set, increment, decrement or a new refill",
            ));
        }
        let now = self.now();
        let (what, n) = match change {
            Some(CreditChange::Set(n)) => ("set", n),
            Some(CreditChange::Increment(n)) => ("increment", n),
            Some(CreditChange::Decrement(n)) => ("decrement", n),
            None => ("policy", 0),
        };
        let mut event = actor.event(
            now,
            "credits.updated",
            json!({ "subject": subject, what: n, "before": current.remaining + current.held }),
        );
        (event.key_id, event.owner_id) = match of {
            CreditsOf::Key(id) => (Some(id.clone()), None),
            CreditsOf::Owner(o) => (None, Some(o.clone())),
        };
        event.reason = (!reason.is_empty()).then(|| reason.to_owned());
        match self
            .store
            .change_credits(&subject, change, policy, &event, now)
            .await?
        {
            CreditOutcome::Changed(b) => {
                let ended = matches!(change, Some(CreditChange::Set(_)));
                self.limiter.credits_changed(&subject, ended);
                Ok(b)
            }
            CreditOutcome::NotFound => Err(Error::NotFound(format!("credits of {subject}"))),
            CreditOutcome::Insufficient(b) => Err(Error::FailedPrecondition(format!(
                "decrement: {} credits are free to take ({} more are held by replicas, \
                 spent or given back within a second of idle)",
                b.remaining, b.held
            ))),
        }
    }

    pub async fn owner(&self, id: &OwnerId, actor: &Actor) -> Result<Owner> {
        owner_in_reach(actor, id)?;
        self.store
            .get_owner(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("owner {id}")))
    }

    pub async fn owners(
        &self,
        after: Option<&str>,
        limit: u32,
        actor: &Actor,
    ) -> Result<Vec<Owner>> {
        if actor.limits().keyspaces().is_some() {
            return Err(Error::PermissionDenied(SPANS_KEYSPACES));
        }
        let all = self.store.list_owners(after, limit).await?;
        Ok(all
            .into_iter()
            .filter(|o| actor.limits().admits_owner(o.id.as_str()))
            .collect())
    }

    /// Writes an owner's metadata, limits or first balance; an owner that
    /// no key names yet is made.
    pub async fn update_owner(
        &self,
        id: &OwnerId,
        metadata: Option<Metadata>,
        limits: Option<Limits>,
        credits: Option<NewCredits>,
        reason: &str,
        actor: &Actor,
    ) -> Result<Owner> {
        let now = self.now();
        for _ in 0..super::CONFLICT_RETRIES {
            let current = self.store.get_owner(id).await?;
            let mut next = current.clone().unwrap_or_else(|| Owner {
                id: id.clone(),
                metadata: Metadata::EMPTY,
                limits: Limits::default(),
                credits: false,
                created_at: now,
                updated_at: now,
                version: 0,
            });
            if next.credits && credits.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "owner {id} has credits; change them with UpdateCredits"
                )));
            }
            if let Some(m) = &metadata {
                next.metadata = m.clone();
            }
            if let Some(l) = &limits {
                next.limits = l.clone();
            }
            next.credits |= credits.is_some();
            next.version += 1;
            next.updated_at = now;
            if next.version == 1 {
                next.created_at = current.as_ref().map_or(now, |c| c.created_at);
            }
            let balance = credits.map(|c| NewBalance {
                subject: Subject::Owner(id.as_str().into()).to_db(),
                remaining: c.remaining,
                policy: c.policy,
            });
            let mut event = actor.event(
                now,
                "owner.updated",
                json!({
                    "metadata": metadata.is_some(),
                    "limits": limits.as_ref().map(Limits::len),
                    "credits": credits.map(|c| c.remaining),
                }),
            );
            event.owner_id = Some(id.clone());
            event.reason = (!reason.is_empty()).then(|| reason.to_owned());
            if self
                .store
                .put_owner(&next, balance.as_ref(), &event)
                .await?
            {
                self.limiter.put_owner(&next);
                return Ok(next);
            }
        }
        Err(Error::Aborted(format!(
            "owner {id} kept changing; try again"
        )))
    }
}
