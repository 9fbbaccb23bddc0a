//! The plans the reconciler computes for the example repository's history (a baseline, a file
//! added, one modified, files removed, an invalid commit, a force-push), snapshot-tested. A
//! plan is what a commit writes: rows, entity changes, events, new workspaces and the revision
//! record. Commit ids, blob ids and timestamps are redacted.

use std::sync::{Arc, Mutex};

use mockops::reconcile::Reconciler;
use mockops::reconcile::plan::Plan;
use mockops::store::Store;
use serde_json::{Value as Json, json};

use crate::support::daemon::Repo;

const SERVICE: &str = "services/payments.yaml";
const SPEC: &str = "specs/payments/openapi.yaml";
const ADDED: &str = "environments/dev/scenarios/refund.yaml";
const PIPELINE: &str = "pipelines/release-hook.yaml";

/// What a snapshot shows of a plan.
fn view(p: &Plan) -> Json {
    json!({
        "revision": p.revision,
        "changes": p
            .changes
            .iter()
            .map(|c| json!({"key": c.key, "action": c.action}))
            .collect::<Vec<_>>(),
        "events": p
            .events
            .iter()
            .map(|e| json!({
                "type": e.event_type,
                "workspace_id": e.workspace_id,
                "workspace_name": e.workspace_name,
                "dedup_key": e.dedup_key,
                "payload": e.payload,
            }))
            .collect::<Vec<_>>(),
        "workspaces": p.workspaces,
        "rows": p.rows.as_ref().map(|r| r.keys().cloned().collect::<Vec<_>>()),
    })
}

struct History {
    repo: Repo,
    _state: tempfile::TempDir,
    reconciler: Reconciler,
    plans: Arc<Mutex<Vec<Json>>>,
}

impl History {
    fn new() -> History {
        let repo = Repo::example();
        let state = tempfile::tempdir().expect("tempdir");
        let (store, opened) = Store::open(state.path()).expect("store");
        let mut reconciler =
            Reconciler::new(store, repo.path(), "main", None, &opened).expect("reconciler");
        let plans = Arc::new(Mutex::new(Vec::new()));
        let seen = plans.clone();
        reconciler.inspect_plans(Box::new(move |p| {
            seen.lock().expect("plans").push(view(p));
        }));
        History {
            repo,
            _state: state,
            reconciler,
            plans,
        }
    }

    /// Syncs to the head of `main`; returns the plans of the commits it processed.
    fn sync(&mut self) -> Vec<Json> {
        let head = git2::Repository::open(self.repo.path())
            .and_then(|r| r.refname_to_id("refs/heads/main"))
            .expect("head");
        self.reconciler.sync(head).expect("sync");
        std::mem::take(&mut *self.plans.lock().expect("plans"))
    }
}

fn snapshot(name: &str, plans: &[Json]) {
    insta::with_settings!({
        prepend_module_to_snapshot => false,
        filters => vec![
            (r"\b[0-9a-f]{40}\b", "[sha]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "[time]"),
        ],
    }, {
        insta::assert_json_snapshot!(name, plans);
    });
}

#[test]
fn plans_of_the_example_history() {
    let mut h = History::new();

    let baseline = h.sync();
    assert_eq!(baseline.len(), 1);
    assert_eq!(baseline[0]["revision"]["status"], "baseline");
    assert_eq!(baseline[0]["events"], json!([]), "a baseline has no events");
    snapshot("plan_1_baseline", &baseline);

    h.repo.write(
        ADDED,
        "name: Refund\nversion: \"1\"\nworkspace_id: workspace-refunds-789\nsteps:\n  - service: payments\n    action: create-charge\n    amount: 10\n",
    );
    h.repo.commit("add a refund scenario");
    let added = h.sync();
    assert_eq!(added.len(), 1);
    snapshot("plan_2_add_a_file", &added);

    let service = h.repo.read(SERVICE).replace(
        "description: Charges and refunds.",
        "description: Charges, refunds and disputes.",
    );
    h.repo.write(SERVICE, &service);
    let modified_sha = h.repo.commit("describe disputes");
    let modified = h.sync();
    snapshot("plan_3_modify_a_file", &modified);

    std::fs::remove_file(h.repo.path().join(PIPELINE)).expect("rm pipeline");
    std::fs::remove_file(h.repo.path().join(ADDED)).expect("rm scenario");
    h.repo
        .commit("drop the release hook and the refund scenario");
    let removed = h.sync();
    snapshot("plan_4_remove_files", &removed);

    h.repo.write(SERVICE, "name: [payments\n");
    h.repo.commit("break the payments service");
    let invalid = h.sync();
    assert_eq!(invalid[0]["revision"]["status"], "invalid");
    assert_eq!(invalid[0]["rows"], Json::Null, "nothing of it is applied");
    snapshot("plan_5_invalid_commit", &invalid);

    // Back to the modified commit, and a spec change on top: the applied commit is gone.
    h.repo.reset_hard(&modified_sha);
    let spec = h.repo.read(SPEC).replacen(
        "        required: true\n        content:",
        "        required: false\n        content:",
        1,
    );
    h.repo.write(SPEC, &spec);
    h.repo.commit("request body of createCharge is optional");
    let forced = h.sync();
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0]["revision"]["forced"], true);
    snapshot("plan_6_force_push", &forced);
}

/// A commit that changes only a template changes every pipeline whose expansion it changes:
/// one `config.changed` each, naming the expanded fields; a template change that no pipeline's
/// expansion sees changes nothing.
#[test]
fn a_template_change_is_a_change_of_the_pipelines_that_use_it() {
    const TEMPLATE: &str = "templates/sdk-regeneration.yaml";
    let mut h = History::new();
    h.repo.write(
        "pipelines/mobile-sdk.yaml",
        "name: mobile-sdk\ndefinition:\n  uses: sdk-regeneration\n  with:\n    languages: [typescript]\n    sdk_repository: example/mobile-sdk\n",
    );
    h.repo.commit("a second pipeline from the SDK template");
    h.sync();

    let t = h
        .repo
        .read(TEMPLATE)
        .replace("labels: [sdk]", "labels: [sdk, generated]");
    h.repo.write(TEMPLATE, &t);
    h.repo.commit("label generated SDK pull requests");
    let plans = h.sync();
    assert_eq!(plans.len(), 1);
    let changed: Vec<(&str, &str)> = plans[0]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "config.changed")
        .map(|e| {
            (
                e["payload"]["entity"].as_str().unwrap_or(""),
                e["payload"]["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            ("auto-sdk-regeneration", "modified"),
            ("mobile-sdk", "modified")
        ]
    );
    let fields: Vec<String> = plans[0]["events"][0]["payload"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["field"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        fields.iter().any(|f| f.contains("labels")),
        "the labels changed: {fields:?}"
    );

    // Only a comment: the expansions are the same, so nothing changes.
    let t = h.repo.read(TEMPLATE).replace(
        "template: sdk-regeneration\n",
        "template: sdk-regeneration\n# Used by the SDK pipelines.\n",
    );
    h.repo.write(TEMPLATE, &t);
    h.repo.commit("comment the template");
    let plans = h.sync();
    assert_eq!(plans[0]["events"], json!([]), "{:#}", plans[0]);
    assert_eq!(plans[0]["changes"], json!([]));
}
