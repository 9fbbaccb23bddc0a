//! The daemon's step runner: the real implementation of each step type, behind `StepRunner`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::StepRunner;
use crate::model::{CreatePrConfig, RegenerateSdkConfig, Settings, StepType};
use crate::step::{Outputs, StepContext, StepError};
use crate::store::Store;

/// Runs steps for one daemon: reads the applied settings from the store at run time, the
/// config repository from `repo_path`.
pub struct Steps {
    pub store: Store,
    /// The Git dir the daemon reads commits from (the repository or its mirror).
    pub repo_path: PathBuf,
    /// `None` when no GitHub credentials are configured: `create_pr` with the GitHub provider
    /// then fails with a message saying what to set.
    pub github: Option<crate::github::GitHub>,
}

impl Steps {
    pub fn new(store: Store, repo_path: PathBuf) -> Arc<Self> {
        let github = match crate::github::GitHub::from_env() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::info!(reason = %e, "no GitHub client: create_pr can only use `provider: git`");
                None
            }
        };
        Arc::new(Self {
            store,
            repo_path,
            github,
        })
    }

    fn settings(&self) -> Result<Settings, StepError> {
        let row = self
            .store
            .row("settings/mockops")
            .map_err(|e| StepError::transient(format!("store: {e}")))?;
        match row {
            Some(r) => serde_json::from_value(r.value)
                .map_err(|e| StepError::permanent(format!("applied settings unreadable: {e}"))),
            None => Ok(Settings::default()),
        }
    }

    /// The last applied commit: what steps read the repository at when the event names none.
    fn applied_commit(&self) -> Result<String, StepError> {
        let cursor = self
            .store
            .cursor()
            .map_err(|e| StepError::transient(format!("store: {e}")))?;
        cursor
            .last_applied
            .map(|r| r.sha)
            .ok_or_else(|| StepError::transient("no revision applied yet"))
    }

    async fn regenerate_sdk(&self, config: Json, ctx: &StepContext) -> Result<Outputs, StepError> {
        let cfg: RegenerateSdkConfig = typed(config, "regenerate_sdk")?;
        let mut req = crate::sdkgen::SdkRequest::new(&self.repo_path, cfg);
        req.default_rev = self.applied_commit()?;
        crate::sdkgen::generate(&req, ctx).await
    }

    async fn create_pr(&self, config: Json, ctx: &StepContext) -> Result<Outputs, StepError> {
        let cfg: CreatePrConfig = typed(config, "create_pr")?;
        let settings = self.settings()?;
        let req = crate::pr::request_from_config(&cfg, &settings.pull_requests, ctx, &ctx.steps)?;
        let outcome = crate::pr::run(
            self.github.as_ref(),
            crate::pr::provider_of(&cfg),
            &req,
            &crate::pr::GitRemote::default(),
        )
        .await?;
        Ok(outcome.outputs())
    }
}

fn typed<T: DeserializeOwned>(config: Json, step: &str) -> Result<T, StepError> {
    serde_json::from_value(config)
        .map_err(|e| StepError::permanent(format!("{step}: invalid config after rendering: {e}")))
}

impl StepRunner for Steps {
    fn run<'a>(
        &'a self,
        step_type: StepType,
        config: Json,
        ctx: &'a StepContext,
    ) -> Pin<Box<dyn Future<Output = Result<Outputs, StepError>> + Send + 'a>> {
        Box::pin(async move {
            match step_type {
                StepType::RegenerateSdk => self.regenerate_sdk(config, ctx).await,
                StepType::CreatePr => self.create_pr(config, ctx).await,
                StepType::Notify => Err(StepError::permanent(
                    "notify is not available in this build",
                )),
                StepType::AutoPromote => Err(StepError::permanent(
                    "auto_promote is not available in this build: promote by committing the \
                     file to environments/<to>/ (or open the pull request by hand)",
                )),
            }
        })
    }
}
