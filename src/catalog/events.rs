//! Catalog events of `tollbooth catalog apply`: what the admin API notifies for each change it
//! makes (`api.created`, `tier.updated`, `subscriber.deleted`, …), written in the file's
//! transaction and delivered by a serving tollbooth.

use super::Outcome;
use crate::notify::{Notifier, NotifyError};
use crate::store::{Api, StoreError, Subscriber, Subscription, Tier, Tx};
use serde_json::Value;

/// A catalog object as a change left it.
#[derive(Debug, Clone)]
pub enum Changed {
    Api(Api),
    Tier(Tier),
    Subscriber(Subscriber),
    Subscription(Subscription),
}

/// What was done to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    /// Archived.
    Deleted,
}

impl Verb {
    /// The verb of a put, none when nothing changed.
    pub fn of(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Created => Some(Self::Created),
            Outcome::Updated => Some(Self::Updated),
            Outcome::Unchanged => None,
        }
    }
}

impl Changed {
    /// The event's type: `api.created` and so on.
    pub fn kind(&self, verb: Verb) -> &'static str {
        use Verb::{Created, Deleted, Updated};
        match (self, verb) {
            (Self::Api(_), Created) => "api.created",
            (Self::Api(_), Updated) => "api.updated",
            (Self::Api(_), Deleted) => "api.deleted",
            (Self::Tier(_), Created) => "tier.created",
            (Self::Tier(_), Updated) => "tier.updated",
            (Self::Tier(_), Deleted) => "tier.deleted",
            (Self::Subscriber(_), Created) => "subscriber.created",
            (Self::Subscriber(_), Updated) => "subscriber.updated",
            (Self::Subscriber(_), Deleted) => "subscriber.deleted",
            (Self::Subscription(_), Created) => "subscription.created",
            (Self::Subscription(_), Updated | Deleted) => "subscription.updated",
        }
    }

    /// The subscription whose order the event goes in; `""`: the shared catalog order.
    fn subscription(&self) -> &str {
        match self {
            Self::Subscription(subscription) => &subscription.id,
            Self::Api(_) | Self::Tier(_) | Self::Subscriber(_) => "",
        }
    }
}

/// The object as the admin API shows it (the HTTP layer knows its views).
pub type Render = dyn Fn(Changed) -> Result<Value, StoreError> + Send + Sync;

/// Where the events of a file go.
pub struct CatalogEvents<'a> {
    pub notifier: &'a Notifier,
    pub render: &'a Render,
}

impl CatalogEvents<'_> {
    /// Writes the event of one change in `tx` (in blocking mode, sends it first: see
    /// [`Notifier::write_change`]).
    pub async fn write(
        &self,
        tx: &mut Tx,
        verb: Verb,
        changed: Changed,
    ) -> Result<(), NotifyError> {
        let kind = changed.kind(verb);
        let subscription = changed.subscription().to_owned();
        let data = (self.render)(changed)?;
        self.notifier
            .write_change(tx, kind, &subscription, data)
            .await
    }
}
