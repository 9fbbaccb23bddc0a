//! Drift incidents (`drift::Incident`), one row per signature, written by the drift writer and
//! read by the API, the budgets and the patch.

use redb::{ReadableTable, TableDefinition};

use super::{Store, StoreError};
use crate::drift::Incident;

/// Incident signature -> the incident as JSON.
const INCIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("drift_incidents");

/// Incident signature -> the redacted exchanges it was seen in (JSON array), for
/// re-validation against a later commit's spec.
const EVIDENCE: TableDefinition<&str, &[u8]> = TableDefinition::new("drift_evidence");
/// `service\0endpoint` -> the budget's state (JSON `BudgetState`).
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("drift_budgets");

/// Whether a budget is exceeded now, and how often it was crossed (numbers the crossing's
/// event, so a restart never emits one twice).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BudgetState {
    pub exceeded: bool,
    pub crossings: u64,
    /// RFC 3339 of the last change.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub drift_count: u64,
    #[serde(default)]
    pub threshold: u64,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub service: Option<String>,
    /// Only open incidents.
    pub open_only: bool,
}

impl Store {
    /// Inserts or replaces incidents (by `id`) in one transaction.
    pub fn put_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        if incidents.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut table = tx.open_table(INCIDENTS)?;
            for i in incidents {
                let json = serde_json::to_vec(i).unwrap_or_default();
                table.insert(i.id.as_str(), json.as_slice())?;
            }
            Ok(())
        })
    }

    /// Inserts or replaces incidents with their evidence (by `id`) in one transaction.
    pub fn put_incidents_with_evidence(
        &self,
        incidents: &[(Incident, Vec<serde_json::Value>)],
    ) -> Result<(), StoreError> {
        if incidents.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut table = tx.open_table(INCIDENTS)?;
            let mut evidence = tx.open_table(EVIDENCE)?;
            for (i, e) in incidents {
                let json = serde_json::to_vec(i).unwrap_or_default();
                table.insert(i.id.as_str(), json.as_slice())?;
                let e = serde_json::to_vec(e).unwrap_or_default();
                evidence.insert(i.id.as_str(), e.as_slice())?;
            }
            Ok(())
        })
    }

    /// The evidence kept for incident `id` (empty when none).
    pub fn incident_evidence(&self, id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(EVIDENCE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            Ok(table
                .get(id)?
                .and_then(|v| serde_json::from_slice(v.value()).ok())
                .unwrap_or_default())
        })
    }

    /// Every budget's state, by `service\0endpoint`.
    pub fn budget_states(
        &self,
    ) -> Result<std::collections::BTreeMap<String, BudgetState>, StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(BUDGETS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
                Err(e) => return Err(e.into()),
            };
            let mut out = std::collections::BTreeMap::new();
            for row in table.iter()? {
                let (k, v) = row?;
                if let Ok(s) = serde_json::from_slice(v.value()) {
                    out.insert(k.value().to_string(), s);
                }
            }
            Ok(out)
        })
    }

    /// Stores a budget's state.
    pub fn put_budget_state(&self, key: &str, state: &BudgetState) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(BUDGETS)?;
            let json = serde_json::to_vec(state).unwrap_or_default();
            table.insert(key, json.as_slice())?;
            Ok(())
        })
    }

    /// The incident with signature `id`.
    pub fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(INCIDENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table
                .get(id)?
                .and_then(|v| serde_json::from_slice(v.value()).ok()))
        })
    }

    /// Incidents matching `filter`, ordered by service, then most recently seen first.
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let mut out: Vec<Incident> = self.read(|tx| {
            let table = match tx.open_table(INCIDENTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in table.iter()? {
                let (_, v) = row?;
                let Ok(i) = serde_json::from_slice::<Incident>(v.value()) else {
                    continue;
                };
                if filter.open_only && !i.is_open() {
                    continue;
                }
                if filter
                    .service
                    .as_ref()
                    .is_some_and(|s| *s != i.location.service)
                {
                    continue;
                }
                out.push(i);
            }
            Ok(out)
        })?;
        out.sort_by(|a, b| {
            a.location
                .service
                .cmp(&b.location.service)
                .then(b.last_seen_ms.cmp(&a.last_seen_ms))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Direction, IncidentKind, IncidentState, Location};

    fn incident(service: &str, pointer: &str, seen: u64, state: IncidentState) -> Incident {
        let location = Location {
            service: service.into(),
            method: "GET".into(),
            path: "/pets".into(),
            operation_id: None,
            direction: Direction::Response,
            status: 200,
            content_type: Some("application/json".into()),
            pointer: pointer.into(),
            spec_file: "specs/pets.yaml".into(),
            spec_pointer: "/paths/~1pets/get".into(),
        };
        Incident {
            id: Incident::signature(IncidentKind::TypeMismatch, &location),
            kind: IncidentKind::TypeMismatch,
            location,
            expected: "type string".into(),
            observed: "integer".into(),
            count: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            last_seen_ms: seen,
            samples: vec![serde_json::json!(1)],
            state,
            resolved_at: None,
            spec_sha: None,
        }
    }

    #[test]
    fn incidents_survive_a_reopen_and_filter() {
        let dir = tempfile::tempdir().expect("dir");
        let a = incident("pets", "/a", 1, IncidentState::Open);
        let b = incident("pets", "/b", 2, IncidentState::ResolvedQuiet);
        let c = incident("users", "/c", 3, IncidentState::Open);
        {
            let (store, _) = Store::open(dir.path()).expect("store");
            assert!(store.incident(&a.id).expect("read").is_none());
            store
                .put_incidents(&[a.clone(), b.clone(), c.clone()])
                .expect("put");
        }
        let (store, _) = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.incident(&a.id).expect("read"), Some(a.clone()));
        let all = store.incidents(&IncidentFilter::default()).expect("all");
        let ids: Vec<_> = all.iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids, vec![b.id.clone(), a.id.clone(), c.id.clone()]);
        let open_pets = store
            .incidents(&IncidentFilter {
                service: Some("pets".into()),
                open_only: true,
            })
            .expect("open");
        assert_eq!(open_pets, vec![a]);
    }
}
