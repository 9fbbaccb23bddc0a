//! The daemon's step runner: the real implementation of each step type, behind `StepRunner`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::StepRunner;
use crate::model::{
    CreatePrConfig, NotifyConfig, PrProvider, RegenerateSdkConfig, Settings, StepType,
};
use crate::store::Store;

pub mod contract;
pub mod create_pr;
pub mod notify;
pub mod promote;
pub mod sdkgen;

pub use contract::{Outputs, StepContext, StepError, Target};

/// What the operator allows steps to do with the daemon's secrets, network and programs
/// (see SPEC.md, "Security stance"). The default is the strict one.
#[derive(Debug, Clone, Default)]
pub struct StepSecurity {
    /// Which files `${file:}` and which variables `${env:}` may read.
    pub secrets: crate::secret::SecretPolicy,
    /// Which non-public addresses notifications may reach.
    pub outbound: Arc<crate::outbound::OutboundPolicy>,
    /// Whether `regenerate_sdk` may run `generators.<language>.command`.
    pub allow_generator_commands: bool,
    /// Signs promotion commits (the daemon's key from its state directory; a random one when
    /// not given, whose promotions no reconciler will recognise).
    pub promotion_key: Option<crate::promotion::PromotionKey>,
    /// The daemon's own Slack webhook URL, for Slack steps that name none.
    pub slack_webhook: Option<crate::secret::SecretSource>,
    /// Directories on the daemon's machine that `create_pr` with `provider: git` may push to
    /// (a path or `file://` URL anywhere else is refused).
    pub local_git_dirs: Vec<PathBuf>,
    /// How pushes reach a Git remote: the operator's pinned SSH host keys, the deadline of a
    /// network Git call, and (for `create_pr` with `provider: git`) the SSH agent's keys.
    pub git_pushes: create_pr::GitRemote,
    /// The credentials of the followed remote, used only for promotions pushed to it.
    pub config_remote_auth: crate::git::access::RemoteAuth,
}

/// Runs steps for one daemon: reads the applied settings from the store at run time, the
/// config repository from `repo_path`.
pub struct Runner {
    pub store: Store,
    /// The Git dir the daemon reads commits from (the repository or its mirror).
    pub repo_path: PathBuf,
    /// `None` when no GitHub credentials are configured: `create_pr` with the GitHub provider
    /// then fails with a message saying what to set.
    pub github: Option<crate::github::GitHub>,
    /// The followed branch: promotions are proposed against it.
    pub branch: String,
    /// Where promotion branches go: the config repository's URL, or its path for a local one.
    pub config_remote: String,
    /// Delivers notifications; its defaults are replaced by the applied settings at each run.
    pub notifier: crate::pipeline::steps::notify::Notifier,
    pub allow_generator_commands: bool,
    pub promotion_key: crate::promotion::PromotionKey,
    outbound: Arc<crate::outbound::OutboundPolicy>,
    local_git_dirs: Vec<PathBuf>,
    /// How `create_pr` pushes reach their remotes.
    git_pushes: create_pr::GitRemote,
    /// How promotion pushes reach the config repository (its own credentials); pipeline
    /// management writes through it too.
    pub(crate) promotion_remote: create_pr::GitRemote,
}

impl Runner {
    pub fn new(
        store: Store,
        repo_path: PathBuf,
        branch: String,
        config_remote: String,
        redactor: crate::secret::Redactor,
        security: StepSecurity,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let github = crate::github::GitHub::from_env_redacted(&redactor);
        let redactor_for_pushes = redactor.clone();
        let secrets = crate::secret::Secrets::new(redactor).with_policy(security.secrets);
        let notifier = crate::pipeline::steps::notify::Notifier::with_secrets(
            crate::pipeline::steps::notify::Notifier::http_client(
                crate::pipeline::steps::notify::REQUEST_TIMEOUT,
                security.outbound.clone(),
            )?,
            Default::default(),
            secrets,
        )
        .with_outbound(security.outbound.clone())
        .with_slack_fallback(security.slack_webhook)
        .with_delivery_log(Arc::new(store.clone()));
        let github = match github {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::info!(reason = %e, "no GitHub client: create_pr can only use `provider: git`");
                None
            }
        };
        Ok(Arc::new(Self {
            store,
            repo_path,
            github,
            branch,
            config_remote,
            notifier,
            allow_generator_commands: security.allow_generator_commands,
            outbound: security.outbound,
            local_git_dirs: security.local_git_dirs,
            promotion_remote: create_pr::GitRemote {
                auth: security.config_remote_auth,
                redactor: redactor_for_pushes.clone(),
                ..security.git_pushes.clone()
            },
            git_pushes: create_pr::GitRemote {
                redactor: redactor_for_pushes,
                ..security.git_pushes
            },
            promotion_key: match security.promotion_key {
                Some(k) => k,
                None => crate::promotion::PromotionKey::generate()
                    .unwrap_or_else(|_| crate::promotion::PromotionKey::from_bytes([0; 32])),
            },
        }))
    }

    fn settings(&self) -> Result<Settings, StepError> {
        let row = self
            .store
            .row("settings/mockops")
            .map_err(StepError::store)?;
        match row {
            Some(r) => serde_json::from_value(r.value)
                .map_err(|e| StepError::invalid(format!("applied settings unreadable: {e}"))),
            None => Ok(Settings::default()),
        }
    }

    /// The last applied commit: what steps read the repository at when the event names none.
    fn applied_commit(&self) -> Result<String, StepError> {
        let cursor = self.store.cursor().map_err(StepError::store)?;
        cursor
            .last_applied
            .map(|r| r.sha)
            .ok_or_else(|| StepError::unavailable("no revision applied yet"))
    }

    async fn regenerate_sdk(&self, config: Json, ctx: &StepContext) -> Result<Outputs, StepError> {
        let cfg: RegenerateSdkConfig = typed(config, "regenerate_sdk")?;
        let mut req = crate::pipeline::steps::sdkgen::SdkRequest::new(&self.repo_path, cfg);
        req.default_rev = self.applied_commit()?;
        req.allow_commands = self.allow_generator_commands;
        crate::pipeline::steps::sdkgen::generate(&req, ctx).await
    }

    async fn create_pr(&self, config: Json, ctx: &StepContext) -> Result<Outputs, StepError> {
        let mut cfg: CreatePrConfig = typed(config, "create_pr")?;
        if let Some(nothing) = self.expand_drift(&mut cfg)? {
            return Ok(nothing);
        }
        let settings = self.settings()?;
        let req = crate::pipeline::steps::create_pr::request_from_config(
            &cfg,
            &settings.pull_requests,
            ctx,
            &ctx.steps,
        )?;
        let provider = crate::pipeline::steps::create_pr::provider_of(&cfg);
        let target = match provider {
            PrProvider::Git => Target::Remote {
                remote: crate::git::access::redact_url(&cfg.repository),
            },
            _ => Target::Repository {
                repository: cfg.repository.clone(),
            },
        };
        let outcome = async {
            if provider == PrProvider::Git {
                check_git_target(&cfg.repository, &self.outbound, &self.local_git_dirs).await?;
            }
            crate::pipeline::steps::create_pr::run(
                self.github.as_ref(),
                provider,
                &req,
                &self.git_pushes,
            )
            .await
        }
        .await
        .map_err(|e| e.or_at(target))?;
        Ok(outcome.outputs())
    }
}

impl Runner {
    /// Replaces every `from_drift: SERVICE` file entry with the service's patched spec files
    /// and appends the evidence to the body; the topic defaults to the service, so each
    /// service has one branch and one pull request. When entries ask for drift fixes and none
    /// of the services has anything to patch, returns the step's outputs for "nothing to
    /// propose" (nothing is opened).
    fn expand_drift(&self, cfg: &mut CreatePrConfig) -> Result<Option<Outputs>, StepError> {
        use crate::drift::patch::ServicePatchError as E;
        if cfg.files.iter().all(|f| f.from_drift.is_none()) {
            return Ok(None);
        }
        let mut files = Vec::new();
        let mut evidence = Vec::new();
        let mut services = Vec::new();
        let mut patched = 0usize;
        for fc in std::mem::take(&mut cfg.files) {
            let Some(service) = fc.from_drift.clone() else {
                files.push(fc);
                continue;
            };
            let service = service.trim().to_string();
            let proposal = crate::drift::patch::for_service(&self.store, &self.repo_path, &service)
                .map_err(|e| match e {
                    E::Store(s) => StepError::store(s),
                    E::NotApplied | E::Git { .. } => StepError::unavailable(e.to_string()),
                    other => StepError::invalid(format!("from_drift: {other}")),
                })?;
            for f in &proposal.files {
                files.push(crate::model::FileChange {
                    path: f.path.clone(),
                    content: Some(f.after.clone()),
                    from_step: None,
                    from_drift: None,
                    operation: crate::model::FileOperation::Update,
                });
            }
            patched += proposal.files.len();
            evidence.push(proposal.summary);
            services.push(service);
        }
        if patched == 0 {
            let mut o = serde_json::Map::new();
            o.insert("pr_url".into(), Json::Null);
            o.insert("pr_number".into(), Json::Null);
            o.insert("branch".into(), Json::Null);
            o.insert("commit".into(), Json::Null);
            o.insert("action".into(), Json::String("nothing_to_propose".into()));
            o.insert(
                "reason".into(),
                Json::String(format!(
                    "nothing to propose: no open incident of {} was seen often enough and can be patched",
                    services
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return Ok(Some(o));
        }
        cfg.files = files;
        if cfg.topic.as_deref().is_none_or(|t| t.trim().is_empty()) {
            cfg.topic = Some(format!("drift-{}", services.join("-")));
        }
        let mut body = cfg.body.take().unwrap_or_default();
        for e in evidence {
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(&e);
        }
        cfg.body = Some(body);
        Ok(None)
    }
}

/// Refuses a `provider: git` remote the repository may not reach: a path (or `file://` URL) on
/// the daemon's machine outside `local_dirs`, or a host that is, or resolves to, an address
/// the outbound policy refuses.
async fn check_git_target(
    repository: &str,
    outbound: &crate::outbound::OutboundPolicy,
    local_dirs: &[PathBuf],
) -> Result<(), StepError> {
    let r = repository.trim();
    let local = r
        .strip_prefix("file://")
        .or_else(|| r.starts_with('/').then_some(r));
    if let Some(path) = local {
        let canonical = std::fs::canonicalize(path).ok();
        let inside = canonical.as_ref().is_some_and(|c| {
            local_dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .any(|d| c.starts_with(d))
        });
        if inside {
            return Ok(());
        }
        return Err(StepError::refused(format!(
            "create_pr: pushing to `{r}` on the daemon's machine is refused: a local remote must \
             be under {}",
            if local_dirs.is_empty() {
                "a directory the operator allows (none is)".to_string()
            } else {
                local_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    // `scheme://[user@]host[:port]/...` or scp-like `user@host:path`.
    let (host, port) = if let Some((scheme, rest)) = r.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            "ssh" => 22,
            "git" => 9418,
            _ => 0,
        };
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                (h.to_string(), p.parse().unwrap_or(default_port))
            }
            _ => (hostport.to_string(), default_port),
        }
    } else if let Some((userhost, _)) = r.split_once(':') {
        (userhost.rsplit('@').next().unwrap_or("").to_string(), 22)
    } else {
        return Ok(());
    };
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Ok(());
    }
    outbound
        .resolve(host, port)
        .await
        .map(|_| ())
        .map_err(|e| StepError::refused(format!("create_pr: repository {r}: {e}")))
}

fn typed<T: DeserializeOwned>(config: Json, step: &str) -> Result<T, StepError> {
    serde_json::from_value(config)
        .map_err(|e| StepError::invalid(format!("{step}: invalid config after rendering: {e}")))
}

impl StepRunner for Runner {
    fn run<'a>(
        &'a self,
        step_type: StepType,
        config: Json,
        ctx: &'a StepContext,
    ) -> Pin<Box<dyn Future<Output = Result<Outputs, StepError>> + Send + 'a>> {
        Box::pin(async move {
            // Only notify resolves secrets; the others see references as the repository wrote
            // them.
            let config = match step_type {
                StepType::Notify => config,
                _ => crate::secret::unsealed_json(&config),
            };
            let result = match step_type {
                StepType::RegenerateSdk => self.regenerate_sdk(config, ctx).await,
                StepType::CreatePr => self.create_pr(config, ctx).await,
                StepType::Notify => {
                    let cfg: NotifyConfig = typed(config, "notify")?;
                    let settings = self.settings()?;
                    self.notifier
                        .with_defaults(settings.notify)
                        .send(&cfg, ctx)
                        .await
                }
                StepType::AutoPromote => {
                    // What a promotion reaches is the config repository.
                    let remote = Target::Remote {
                        remote: crate::git::access::redact_url(&self.config_remote),
                    };
                    self.auto_promote(config, ctx).await.map_err(|e| {
                        if e.failure.reaches_out() {
                            e.or_at(remote)
                        } else {
                            e
                        }
                    })
                }
            };
            result.map_err(|e| e.in_step(step_type))
        })
    }
}
