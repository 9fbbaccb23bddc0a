//! One service's proposal from the daemon's state: its open incidents from the store, its
//! spec at the applied commit, `min_samples` from the applied settings. Shared by the
//! `create_pr` step (`files: [{from_drift: SERVICE}]`) and `GET /api/v1/drift/patch/{service}`.

use std::collections::BTreeMap;
use std::path::Path;

#[cfg(doc)]
use super::DEFAULT_MIN_SAMPLES;
use super::{PatchError, Proposal, propose};
use crate::model::{ServiceSpec, Settings};
use crate::store::drift::IncidentFilter;
use crate::store::{Store, StoreError};

/// Why a service's proposal could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ServicePatchError {
    #[error("no service named `{0}` in the applied state")]
    UnknownService(String),
    #[error("service `{0}` has no `spec`: there is nothing to patch")]
    NoSpec(String),
    #[error("no revision applied yet")]
    NotApplied,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the applied state is unreadable: {0}")]
    State(String),
    #[error("cannot open commit {sha}: {message}")]
    Git { sha: String, message: String },
    #[error(transparent)]
    Patch(#[from] PatchError),
}

/// How many observations a drift patch needs: `drift.min_samples` of the applied settings
/// (default [`DEFAULT_MIN_SAMPLES`]).
pub fn drift_min_samples(settings: &Settings) -> u64 {
    u64::from(settings.drift.min_samples)
}

/// The proposal for `service` at the applied commit of the repository at `repo_path`.
pub fn for_service(
    store: &Store,
    repo_path: &Path,
    service: &str,
) -> Result<Proposal, ServicePatchError> {
    let row = store
        .row(&format!("service/{service}"))?
        .ok_or_else(|| ServicePatchError::UnknownService(service.to_string()))?;
    let spec: ServiceSpec = serde_json::from_value(row.value)
        .map_err(|e| ServicePatchError::State(format!("service `{service}`: {e}")))?;
    let root = spec
        .spec
        .clone()
        .ok_or_else(|| ServicePatchError::NoSpec(service.to_string()))?;
    let settings: Settings = match store.row("settings/mockops")? {
        Some(r) => serde_json::from_value(r.value)
            .map_err(|e| ServicePatchError::State(format!("settings: {e}")))?,
        None => Settings::default(),
    };
    let sha = store
        .cursor()?
        .last_applied
        .map(|r| r.sha)
        .ok_or(ServicePatchError::NotApplied)?;
    let files = crate::git::revision::GitFiles::open(repo_path, &sha).map_err(|e| {
        ServicePatchError::Git {
            sha: sha.clone(),
            message: e.message().to_string(),
        }
    })?;
    let incidents = store.incidents(&IncidentFilter {
        service: Some(service.to_string()),
        open_only: true,
    })?;
    let roots = BTreeMap::from([(service.to_string(), root)]);
    Ok(propose(
        &files,
        &roots,
        &incidents,
        drift_min_samples(&settings),
    )?)
}
