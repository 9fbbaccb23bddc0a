//! The `auto_promote` step: a promotion is a Git change proposed (or, where the target
//! environment allows it, committed) on the config repository.

use serde_json::Value as Json;

use super::{Outputs, Runner, StepContext, StepError, typed};
use crate::git::write::{Identity, Repo, WriteError};
use crate::model::{
    AutoPromoteConfig, CreatePrConfig, EntityType, FileChange, FileOperation, PrProvider, Settings,
};

impl Runner {
    /// Promotion is a Git change: the entity's file is copied from `environments/<from>/` to
    /// `environments/<to>/` on a branch of the config repository, and a pull request (or, for a
    /// repository without GitHub's API, a pushed branch) proposes it. Where `mockops.yaml` gives
    /// the target environment `direct_commit: true` (never production), the commit goes straight
    /// onto the followed branch instead (outputs `mode: "direct"`). The commit carries
    /// `Mockops-Promotion-Id` and `Mockops-Promotion` trailers; `promotion.completed` is emitted
    /// when a commit with them is reconciled.
    pub(super) async fn auto_promote(
        &self,
        config: Json,
        ctx: &StepContext,
    ) -> Result<Outputs, StepError> {
        let cfg: AutoPromoteConfig = typed(config, "auto_promote")?;
        let settings = self.settings()?;
        let envs: Vec<&str> = settings.environments.iter().map(|e| e.name()).collect();
        let pos = |e: &str| {
            envs.iter().position(|x| *x == e).ok_or_else(|| {
                StepError::invalid(format!(
                    "environment `{e}` is not declared in mockops.yaml (declared: {})",
                    envs.join(", ")
                ))
            })
        };
        let (from, to) = (pos(&cfg.from_environment)?, pos(&cfg.to_environment)?);
        if from >= to {
            return Err(StepError::invalid(format!(
                "promotion goes forward only: `{}` comes after `{}` in mockops.yaml",
                cfg.from_environment, cfg.to_environment
            )));
        }
        let kind = match cfg.entity_type {
            EntityType::Scenario => "scenario",
            EntityType::Persona => "persona",
            EntityType::Config => "config",
        };
        let from_path = match cfg.entity_type {
            EntityType::Scenario | EntityType::Persona => {
                let key = format!("{kind}/{}/{}", cfg.from_environment, cfg.entity_id);
                let row = self
                    .store
                    .row(&key)
                    .map_err(StepError::store)?
                    .ok_or_else(|| {
                        StepError::invalid(format!(
                            "no {kind} `{}` in environment `{}` of the applied state",
                            cfg.entity_id, cfg.from_environment
                        ))
                    })?;
                if let Some(want) = &cfg.entity_version {
                    let have = row
                        .value
                        .get("version")
                        .and_then(Json::as_str)
                        .unwrap_or("");
                    if have != want {
                        return Err(StepError::invalid(format!(
                            "{kind} `{}` is at version {have} in `{}`, not {want}",
                            cfg.entity_id, cfg.from_environment
                        )));
                    }
                }
                row.path
            }
            EntityType::Config => {
                let rel = crate::git::revision::normalize(&cfg.entity_id)
                    .map_err(|e| StepError::invalid(format!("entity_id: {e}")))?;
                format!("environments/{}/{rel}", cfg.from_environment)
            }
        };
        let prefix = format!("environments/{}/", cfg.from_environment);
        let to_path = format!(
            "environments/{}/{}",
            cfg.to_environment,
            from_path.strip_prefix(&prefix).unwrap_or(&from_path)
        );
        let commit = self.applied_commit()?;
        let content = {
            let files = crate::git::revision::GitFiles::open(&self.repo_path, &commit)
                .map_err(|e| StepError::unavailable(format!("cannot read commit {commit}: {e}")))?;
            let bytes = crate::git::revision::RevisionFiles::read(&files, &from_path)
                .map_err(|e| StepError::invalid(format!("{from_path}: {e}")))?;
            String::from_utf8(bytes)
                .map_err(|_| StepError::invalid(format!("{from_path} is not UTF-8 text")))?
        };
        let promotion_id = {
            use sha2::Digest as _;
            let h = sha2::Sha256::digest(ctx.idempotency_key.as_bytes());
            format!("promo-{}", hex::encode(&h[..6]))
        };
        let comments = cfg.comments.clone().unwrap_or_default();
        let marker = format!("{}: {promotion_id}", crate::promotion::ID_TRAILER);
        let promotion = format!(
            "{kind} {} {} {}",
            cfg.entity_id, cfg.from_environment, cfg.to_environment
        );
        let message = format!(
            "Promote {kind} {} from {} to {}\n\n{}{}",
            cfg.entity_id,
            cfg.from_environment,
            cfg.to_environment,
            if comments.trim().is_empty() {
                String::new()
            } else {
                format!("{}\n\n", comments.trim_end())
            },
            crate::promotion::trailers(&self.promotion_key, &promotion_id, &promotion)
        );
        let local = std::path::Path::new(&self.config_remote);
        let is_local = local.is_absolute() && local.exists();
        if direct_commit_allowed(&settings, &cfg.to_environment) {
            let mut req = crate::pipeline::steps::create_pr::DirectCommit::new(
                self.config_remote.clone(),
                self.branch.clone(),
                message,
                marker,
            )
            .write(&to_path, content)?;
            let outcome = if is_local {
                crate::pipeline::steps::create_pr::commit_local(local, &req).await?
            } else {
                match promotion_target(&self.config_remote) {
                    (repository, PrProvider::Github) => {
                        let client = self.github.as_ref().ok_or_else(|| {
                            StepError::invalid(
                                "a direct promotion commit to GitHub needs credentials: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE",
                            )
                        })?;
                        req.repository = repository;
                        crate::pipeline::steps::create_pr::commit_github(client, &req).await?
                    }
                    (_, PrProvider::Git) => {
                        crate::pipeline::steps::create_pr::commit_git(&self.promotion_remote, &req)
                            .await?
                    }
                }
            };
            tracing::info!(
                promotion_id,
                action = outcome.action.as_str(),
                commit = outcome.commit.as_deref().unwrap_or(""),
                "promotion committed directly onto {}",
                self.branch
            );
            let mut out = outcome.outputs();
            out.insert("promotion_id".into(), Json::from(promotion_id));
            out.insert("from_path".into(), Json::from(from_path));
            out.insert("to_path".into(), Json::from(to_path));
            return Ok(out);
        }
        if is_local {
            // A local repository: libgit2 cannot push into a non-bare repository, so the
            // promotion branch is written into it directly (objects, then the ref).
            let branch = crate::pipeline::steps::create_pr::branch_name(
                &settings.pull_requests.branch_prefix,
                &ctx.pipeline,
                &format!("promote-{kind}-{}-{}", cfg.entity_id, cfg.to_environment),
            );
            let repo_dir = local.to_path_buf();
            let (to, base, msg, text) = (to_path.clone(), self.branch.clone(), message, content);
            let br = branch.clone();
            let commit = tokio::task::spawn_blocking(move || {
                local_branch(&repo_dir, &base, &br, &to, text.as_bytes(), &msg)
            })
            .await
            .map_err(|e| StepError::unavailable(format!("promotion task: {e}")))??;
            let mut out = Outputs::new();
            out.insert("promotion_id".into(), Json::from(promotion_id));
            out.insert("from_path".into(), Json::from(from_path));
            out.insert("to_path".into(), Json::from(to_path));
            out.insert("branch".into(), Json::from(branch));
            out.insert("commit".into(), Json::from(commit));
            out.insert("pr_url".into(), Json::Null);
            out.insert("pr_number".into(), Json::Null);
            out.insert("mode".into(), Json::from("branch"));
            return Ok(out);
        }
        let (repository, provider) = promotion_target(&self.config_remote);
        let pr_cfg = CreatePrConfig {
            repository,
            branch: self.branch.clone(),
            title: format!("Promote {kind} {} to {}", cfg.entity_id, cfg.to_environment),
            body: Some(format!(
                "Copies `{from_path}` to `{to_path}` as of {commit}.\n\n{comments}"
            )),
            files: vec![FileChange {
                path: to_path.clone(),
                content: Some(content),
                from_step: None,
                from_drift: None,
                operation: FileOperation::Update,
            }],
            topic: Some(format!(
                "promote-{kind}-{}-{}",
                cfg.entity_id, cfg.to_environment
            )),
            labels: vec!["promotion".into()],
            reviewers: vec![],
            team_reviewers: vec![],
            draft: false,
            provider: Some(provider),
            commit_message: Some(message),
        };
        let req = crate::pipeline::steps::create_pr::request_from_config(
            &pr_cfg,
            &settings.pull_requests,
            ctx,
            &ctx.steps,
        )?;
        let outcome = crate::pipeline::steps::create_pr::run(
            self.github.as_ref(),
            provider,
            &req,
            &self.promotion_remote,
        )
        .await?;
        let mut out = outcome.outputs();
        out.insert("promotion_id".into(), Json::from(promotion_id));
        out.insert("from_path".into(), Json::from(from_path));
        out.insert("to_path".into(), Json::from(to_path));
        out.insert(
            "mode".into(),
            Json::from(match provider {
                PrProvider::Github => "pull_request",
                PrProvider::Git => "branch",
            }),
        );
        Ok(out)
    }
}

/// Writes `path` = `content` on branch `branch` of the local repository at `dir`, one commit on
/// top of `base`. A branch whose tip mockops did not make is left alone.
fn local_branch(
    dir: &std::path::Path,
    base: &str,
    branch: &str,
    path: &str,
    content: &[u8],
    message: &str,
) -> Result<String, StepError> {
    let git = |e: WriteError| StepError::git(format!("promotion in {}: {e}", dir.display()), e);
    let repo = Repo::open(dir).map_err(git)?;
    let me = crate::pipeline::steps::create_pr::default_identity();
    if let Some(tip) = repo.branch_tip(branch).map_err(git)? {
        let ours = repo.commit_meta(tip).map_err(git)?.committer_email == me.email;
        if !ours {
            return Err(StepError::invalid(format!(
                "branch {branch} has a commit mockops did not make ({tip}); it is left alone"
            )));
        }
    }
    let base_commit = repo.branch_tip(base).map_err(git)?.ok_or_else(|| {
        StepError::unavailable(format!("promotion in {}: no branch {base}", dir.display()))
    })?;
    let commit = repo
        .commit_on(
            base_commit,
            &[(path, Some(content))],
            message,
            Identity {
                name: &me.name,
                email: &me.email,
            },
        )
        .map_err(git)?;
    repo.set_branch(branch, commit, "mockops: promotion")
        .map_err(git)?;
    Ok(commit.to_string())
}

/// Whether a promotion into `to_environment` is committed straight onto the followed branch:
/// only when `mockops.yaml` says `direct_commit: true` for it, and never for production.
fn direct_commit_allowed(settings: &Settings, to_environment: &str) -> bool {
    settings
        .environments
        .iter()
        .find(|e| e.name() == to_environment)
        .is_some_and(|e| e.allows_direct_commit())
}

/// Where a promotion goes: GitHub's API for a github.com repository, a pushed branch otherwise.
fn promotion_target(remote: &str) -> (String, PrProvider) {
    let r = remote.trim_end_matches('/').trim_end_matches(".git");
    for prefix in [
        "https://github.com/",
        "git@github.com:",
        "ssh://git@github.com/",
    ] {
        if let Some(slug) = r.strip_prefix(prefix) {
            return (slug.to_string(), PrProvider::Github);
        }
    }
    (remote.to_string(), PrProvider::Git)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Environment, EnvironmentEntry};

    fn env(name: &str, direct_commit: bool) -> EnvironmentEntry {
        EnvironmentEntry::Detailed(Environment {
            name: name.into(),
            direct_commit,
            description: None,
        })
    }

    #[test]
    fn only_non_production_environments_that_ask_get_direct_commits() {
        let settings = Settings {
            environments: vec![
                env("dev", true),
                EnvironmentEntry::Name("test".into()),
                env("staging", false),
                env("prod", true),
                env("production", true),
            ],
            ..Settings::default()
        };
        assert!(direct_commit_allowed(&settings, "dev"));
        for name in ["test", "staging", "prod", "production", "unknown"] {
            assert!(!direct_commit_allowed(&settings, name), "{name}");
        }
    }

    #[test]
    fn promotions_to_github_use_its_api() {
        assert_eq!(
            promotion_target("https://github.com/acme/config.git"),
            ("acme/config".to_string(), PrProvider::Github)
        );
        assert_eq!(
            promotion_target("git://127.0.0.1:9418/config.git").1,
            PrProvider::Git
        );
    }
}
