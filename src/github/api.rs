//! The REST calls mockops makes, with the fields it reads: Git data (refs, blobs, trees,
//! commits), pull requests, labels, reviewers and comments.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::{GitHubError, Repo, enc};

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub object: GitObject,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitObject {
    pub sha: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sha {
    pub sha: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub tree: Sha,
    #[serde(default)]
    pub parents: Vec<Sha>,
    pub author: Person,
    pub committer: Person,
    pub message: String,
}

/// One entry of a branch's history as `GET /repos/{owner}/{repo}/commits` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryCommit {
    pub sha: String,
    pub commit: HistoryDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HistoryDetail {
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tree {
    pub sha: String,
    #[serde(default)]
    pub tree: Vec<TreeItem>,
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TreeItem {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Blob {
    pub content: String,
    pub encoding: String,
}

/// One entry of a new tree: a file's content (inline text or a blob) or its deletion.
#[derive(Debug, Clone, Serialize)]
pub struct TreeEntry {
    pub path: String,
    pub mode: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `None` with no `content` deletes the path (serialized as `"sha": null`).
    #[serde(skip_serializing_if = "skip_sha")]
    pub sha: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

fn skip_sha(s: &Option<Option<String>>) -> bool {
    s.is_none()
}

impl TreeEntry {
    pub fn text(path: &str, content: String) -> Self {
        Self {
            path: path.to_string(),
            mode: "100644",
            kind: "blob",
            sha: None,
            content: Some(content),
        }
    }

    pub fn blob(path: &str, sha: String) -> Self {
        Self {
            path: path.to_string(),
            mode: "100644",
            kind: "blob",
            sha: Some(Some(sha)),
            content: None,
        }
    }

    pub fn delete(path: &str) -> Self {
        Self {
            path: path.to_string(),
            mode: "100644",
            kind: "blob",
            sha: Some(None),
            content: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub state: String,
    pub html_url: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    pub head: PullRef,
    pub base: PullRef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// How many items a list call asks for per page (GitHub's maximum).
pub const PER_PAGE: u32 = 100;

#[derive(Serialize)]
struct PullsQuery<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<&'a str>,
    sort: &'a str,
    direction: &'a str,
    per_page: u32,
    page: u32,
}

impl Repo {
    /// The commit a branch points at; `None` if the branch does not exist.
    pub async fn branch_sha(&self, branch: &str) -> Result<Option<String>, GitHubError> {
        Ok(self
            .get_opt::<GitRef>(&format!("git/ref/heads/{}", enc(branch)))
            .await?
            .map(|r| r.object.sha))
    }

    /// Creates `refs/heads/<branch>`. `Ok(false)` if it already exists.
    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<bool, GitHubError> {
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        match self
            .send::<_, GitRef>("POST", "git/refs", &body, false)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_unprocessable_with("already exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn move_branch(
        &self,
        branch: &str,
        sha: &str,
        force: bool,
    ) -> Result<(), GitHubError> {
        let body = json!({"sha": sha, "force": force});
        self.send::<_, GitRef>(
            "PATCH",
            &format!("git/refs/heads/{}", enc(branch)),
            &body,
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_branch(&self, branch: &str) -> Result<(), GitHubError> {
        self.delete(&format!("git/refs/heads/{}", enc(branch)))
            .await
    }

    pub async fn commit(&self, sha: &str) -> Result<Commit, GitHubError> {
        self.get::<Commit, ()>(&format!("git/commits/{sha}"), None)
            .await
    }

    /// The newest `count` (at most [`PER_PAGE`]) commits reachable from `branch`, newest
    /// first; empty for an empty repository.
    pub async fn recent_commits(
        &self,
        branch: &str,
        count: u32,
    ) -> Result<Vec<HistoryCommit>, GitHubError> {
        let per_page = count.clamp(1, PER_PAGE).to_string();
        match self
            .get::<Vec<HistoryCommit>, _>(
                "commits",
                Some(&[("sha", branch), ("per_page", per_page.as_str())]),
            )
            .await
        {
            Err(e) if e.status() == Some(409) => Ok(Vec::new()),
            r => r,
        }
    }

    pub async fn tree_recursive(&self, sha: &str) -> Result<Tree, GitHubError> {
        self.get(&format!("git/trees/{sha}"), Some(&[("recursive", "1")]))
            .await
    }

    pub async fn blob(&self, sha: &str) -> Result<Vec<u8>, GitHubError> {
        use base64::Engine;
        let blob: Blob = self
            .get::<Blob, ()>(&format!("git/blobs/{sha}"), None)
            .await?;
        if blob.encoding != "base64" {
            return Ok(blob.content.into_bytes());
        }
        let clean: String = blob.content.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| GitHubError::Decode {
                method: "GET",
                route: format!("git/blobs/{sha}"),
                message: format!("blob content is not base64: {e}"),
            })
    }

    pub async fn create_blob(&self, content: &[u8]) -> Result<String, GitHubError> {
        use base64::Engine;
        let body = json!({
            "content": base64::engine::general_purpose::STANDARD.encode(content),
            "encoding": "base64",
        });
        Ok(self
            .send::<_, Sha>("POST", "git/blobs", &body, true)
            .await?
            .sha)
    }

    pub async fn create_tree(
        &self,
        base_tree: &str,
        entries: &[TreeEntry],
    ) -> Result<String, GitHubError> {
        let body = json!({"base_tree": base_tree, "tree": entries});
        Ok(self
            .send::<_, Sha>("POST", "git/trees", &body, true)
            .await?
            .sha)
    }

    pub async fn create_commit(
        &self,
        message: &str,
        tree: &str,
        parents: &[String],
        identity: &Person,
    ) -> Result<String, GitHubError> {
        let body = json!({
            "message": message,
            "tree": tree,
            "parents": parents,
            "author": identity,
            "committer": identity,
        });
        Ok(self
            .send::<_, Sha>("POST", "git/commits", &body, true)
            .await?
            .sha)
    }

    /// Pull requests, newest first; `head` is `owner:branch`.
    pub async fn pulls(
        &self,
        state: &str,
        head: Option<&str>,
        max_pages: u32,
    ) -> Result<Vec<PullRequest>, GitHubError> {
        let mut all = Vec::new();
        for page in 1..=max_pages.max(1) {
            let q = PullsQuery {
                state,
                head,
                sort: "created",
                direction: "desc",
                per_page: PER_PAGE,
                page,
            };
            let batch: Vec<PullRequest> = self.get("pulls", Some(&q)).await?;
            let n = batch.len();
            all.extend(batch);
            if n < PER_PAGE as usize {
                break;
            }
        }
        Ok(all)
    }

    /// Opens a pull request. `Ok(None)` if one already exists for the head.
    pub async fn create_pull(
        &self,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
        draft: bool,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let req = json!({
            "title": title,
            "head": head,
            "base": base,
            "body": body,
            "draft": draft,
            "maintainer_can_modify": true,
        });
        match self
            .send::<_, PullRequest>("POST", "pulls", &req, false)
            .await
        {
            Ok(pr) => Ok(Some(pr)),
            Err(e) if e.is_unprocessable_with("already exists") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn update_pull(
        &self,
        number: u64,
        fields: &Json,
    ) -> Result<PullRequest, GitHubError> {
        self.send("PATCH", &format!("pulls/{number}"), fields, true)
            .await
    }

    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitHubError> {
        if labels.is_empty() {
            return Ok(());
        }
        self.send::<_, Json>(
            "POST",
            &format!("issues/{number}/labels"),
            &json!({"labels": labels}),
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn request_reviewers(
        &self,
        number: u64,
        reviewers: &[String],
        team_reviewers: &[String],
    ) -> Result<(), GitHubError> {
        if reviewers.is_empty() && team_reviewers.is_empty() {
            return Ok(());
        }
        self.send::<_, Json>(
            "POST",
            &format!("pulls/{number}/requested_reviewers"),
            &json!({"reviewers": reviewers, "team_reviewers": team_reviewers}),
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>, GitHubError> {
        self.get(
            &format!("issues/{number}/comments"),
            Some(&[("per_page", "100")]),
        )
        .await
    }

    pub async fn create_comment(&self, number: u64, body: &str) -> Result<Comment, GitHubError> {
        self.send(
            "POST",
            &format!("issues/{number}/comments"),
            &json!({"body": body}),
            false,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_tree_entry_sends_sha_null() {
        let v = serde_json::to_value(TreeEntry::delete("a/b.txt")).unwrap();
        assert_eq!(
            v,
            json!({"path": "a/b.txt", "mode": "100644", "type": "blob", "sha": null})
        );
        let v = serde_json::to_value(TreeEntry::text("a", "x".into())).unwrap();
        assert_eq!(
            v,
            json!({"path": "a", "mode": "100644", "type": "blob", "content": "x"})
        );
    }
}
