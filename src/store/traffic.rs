//! The gateway's traffic record: one row per exchange, keyed by (unix microseconds, sequence),
//! written in batches by the record's one writer (`gateway::record`) and pruned by retention
//! (an age and/or a count of the newest, like events).

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::retention::Keep;
use super::{Store, StoreError};

/// (unix microseconds, sequence within the microsecond) -> the exchange as JSON.
const TRAFFIC: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("traffic");

/// One exchange the gateway served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// RFC 3339, UTC.
    pub at: String,
    /// Unix microseconds (the row's key).
    pub at_micros: u64,
    pub federation: String,
    /// The service the base path picked (none when no route matched).
    pub service: Option<String>,
    /// The spec operation the request matched, when one did.
    pub operation: Option<String>,
    pub method: String,
    /// The path after the federation's base path, without the query (at most 512 bytes).
    pub path: String,
    /// The response status; 0 when a chaos fault closed the connection without one.
    pub status: u16,
    /// Time to the response head, in milliseconds.
    pub latency_ms: f64,
    /// `upstream`, `mock`, `blended` or `gateway`.
    pub source: String,
    pub persona: Option<String>,
    pub scenario: Option<String>,
    /// The request said it came from CI (`X-Mockops-CI`).
    pub ci: bool,
    /// A gRPC call's status code (`status` is then the HTTP status, 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
}

/// Which exchanges to list.
#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    pub federation: Option<String>,
    pub service: Option<String>,
    /// Newest first, at most this many.
    pub limit: usize,
}

impl Store {
    /// Appends a batch of exchanges in one transaction.
    pub fn append_traffic(&self, batch: &[Exchange]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut table = tx.open_table(TRAFFIC)?;
            let mut last: Option<(u64, u32)> = table.last()?.map(|(k, _)| k.value());
            for e in batch {
                let key = match last {
                    Some((t, n)) if t >= e.at_micros => (t, n.saturating_add(1)),
                    _ => (e.at_micros, 0),
                };
                let json = serde_json::to_vec(e).unwrap_or_default();
                table.insert(key, json.as_slice())?;
                last = Some(key);
            }
            // The coverage rollup, in the same transaction (the whole record once, when it
            // predates the rollup).
            if super::analytics::take_backfill(tx)? {
                let old: Vec<Exchange> = table
                    .iter()?
                    .filter_map(|row| row.ok())
                    .filter_map(|(_, v)| serde_json::from_slice(v.value()).ok())
                    .collect();
                super::analytics::roll_up(tx, &old)?;
            } else {
                super::analytics::roll_up(tx, batch)?;
            }
            Ok(())
        })
    }

    /// Appends exchanges the way a store before the coverage rollup did.
    #[cfg(test)]
    pub(crate) fn append_traffic_without_rollup(
        &self,
        batch: &[Exchange],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(TRAFFIC)?;
            for (i, e) in batch.iter().enumerate() {
                let json = serde_json::to_vec(e).unwrap_or_default();
                table.insert((e.at_micros, i as u32), json.as_slice())?;
            }
            Ok(())
        })
    }

    /// Exchanges matching `filter`, newest first.
    pub fn traffic(&self, filter: &TrafficFilter) -> Result<Vec<Exchange>, StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(TRAFFIC) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in table.iter()?.rev() {
                if out.len() >= filter.limit {
                    break;
                }
                let (_, v) = row?;
                let Ok(e) = serde_json::from_slice::<Exchange>(v.value()) else {
                    continue;
                };
                if filter
                    .federation
                    .as_ref()
                    .is_some_and(|f| *f != e.federation)
                    || filter
                        .service
                        .as_ref()
                        .is_some_and(|s| e.service.as_ref() != Some(s))
                {
                    continue;
                }
                out.push(e);
            }
            Ok(out)
        })
    }

    /// Drops the exchanges `keep` does not keep; returns how many.
    pub fn prune_traffic(
        &self,
        keep: &Keep,
        now: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        self.write(|tx| {
            let mut table = tx.open_table(TRAFFIC)?;
            let before = table.len()?;
            if let Some(age) = keep.max_age {
                let cutoff = now
                    .checked_sub(age)
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                table.retain_in(..(cutoff, 0), |_, _| false)?;
            }
            if let Some(max) = keep.max_count {
                let mut excess = table.len()?.saturating_sub(max);
                while excess > 0 && table.pop_first()?.is_some() {
                    excess -= 1;
                }
            }
            // The rollup keeps the days the record still has an exchange of (or a later one).
            let floor = match table.first()? {
                Some((k, _)) => super::analytics::day_of_micros(k.value().0),
                None => u32::MAX,
            };
            super::analytics::prune_before(tx, floor)?;
            Ok(before - table.len()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn exchange(fed: &str, micros: u64) -> Exchange {
        Exchange {
            at: String::new(),
            at_micros: micros,
            federation: fed.into(),
            service: Some("svc".into()),
            operation: None,
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            latency_ms: 1.0,
            source: "mock".into(),
            persona: None,
            scenario: None,
            ci: false,
            grpc_status: None,
        }
    }

    #[test]
    fn traffic_is_listed_newest_first_filtered_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let micros = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        let old = micros(now - Duration::from_secs(3600));
        store
            .append_traffic(&[
                exchange("a", old),
                exchange("b", old),
                exchange("a", micros(now)),
            ])
            .unwrap();
        let all = store
            .traffic(&TrafficFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].at_micros, micros(now));
        let a = store
            .traffic(&TrafficFilter {
                federation: Some("a".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            store
                .prune_traffic(&Keep::age(Duration::from_secs(60)), now)
                .unwrap(),
            2
        );
        assert_eq!(store.prune_traffic(&Keep::count(1), now).unwrap(), 0);
        store
            .append_traffic(&[exchange("c", micros(now) + 1)])
            .unwrap();
        assert_eq!(store.prune_traffic(&Keep::count(1), now).unwrap(), 1);
        let left = store
            .traffic(&TrafficFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].federation, "c");
    }
}
