//! Notification deliveries a target accepted, by delivery id (a hash of the step's idempotency
//! key and the target), so a step resumed after a restart does not post them again. Slack's
//! incoming webhooks take no idempotency key: without this record, a daemon killed between two
//! channels of one step would post to the first channel twice.
//!
//! Entries are written after the target answered, so a crash in between can still repeat one
//! delivery (at least once, never silently lost). [`Store::prune_deliveries`] drops old ones.

use redb::{ReadableTableMetadata, TableDefinition};

use super::{Store, StoreError};

/// Delivery id → (HTTP status the target answered, unix seconds when it did).
const DELIVERIES: TableDefinition<&[u8], (u16, u64)> = TableDefinition::new("deliveries");

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// The status a target answered when it accepted delivery `id`, if it did.
    pub fn delivery(&self, id: &[u8]) -> Result<Option<u16>, StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(DELIVERIES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(id)?.map(|v| v.value().0))
        })
    }

    /// Records that a target accepted delivery `id` with `status`.
    pub fn record_delivery(&self, id: &[u8], status: u16) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(DELIVERIES)?;
            table.insert(id, (status, unix_now()))?;
            Ok(())
        })
    }

    /// Forgets deliveries recorded more than `max_age` ago; returns how many.
    pub fn prune_deliveries(&self, max_age: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = unix_now().saturating_sub(max_age.as_secs());
        let removed = self.write(|tx| {
            let mut table = tx.open_table(DELIVERIES)?;
            let before = table.len()?;
            table.retain(|_, (_, at)| at >= cutoff)?;
            Ok(before - table.len()?)
        })?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deliveries_survive_reopening_and_age_out() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            assert_eq!(store.delivery(b"one").unwrap(), None);
            store.record_delivery(b"one", 200).unwrap();
            store.record_delivery(b"two", 204).unwrap();
        }
        let (store, _) = Store::open(dir.path()).unwrap();
        assert_eq!(store.delivery(b"one").unwrap(), Some(200));
        assert_eq!(store.delivery(b"two").unwrap(), Some(204));
        assert_eq!(
            store.prune_deliveries(Duration::from_secs(3600)).unwrap(),
            0
        );
        // Entries from long ago go.
        store
            .write(|tx| {
                tx.open_table(DELIVERIES)?
                    .insert(b"old".as_slice(), (200, 1))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.prune_deliveries(Duration::from_secs(3600)).unwrap(),
            1
        );
        assert_eq!(store.delivery(b"old").unwrap(), None);
        assert_eq!(store.delivery(b"one").unwrap(), Some(200));
    }
}
