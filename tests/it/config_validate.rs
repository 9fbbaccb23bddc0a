//! Loading and validating config repositories: the example is clean, every broken repository
//! of the corpus gets the diagnostics in its snapshot, hostile input is refused cleanly, the
//! Git and directory loaders agree, and the parse cache does its job.

use mockops::config::diag;
use mockops::config::load::Loader;
use mockops::git::revision::{DirFiles, GitFiles, RevisionFiles};

use crate::support::{Fixture, bin};

fn render(fx: &Fixture) -> String {
    let files = DirFiles::new(fx.path()).expect("dir");
    let loaded = Loader::new().load(&files).expect("load");
    let source = |f: &str| files.read(f).ok().and_then(|b| String::from_utf8(b).ok());
    diag::render_text(&loaded.diagnostics, &source)
}

#[test]
fn example_repo_has_no_diagnostics() {
    let fx = Fixture::example();
    let files = DirFiles::new(fx.path()).expect("dir");
    let loaded = Loader::new().load(&files).expect("load");
    assert_eq!(loaded.diagnostics, vec![], "{}", render(&fx));
    let st = &loaded.state;
    assert_eq!(st.services.len(), 3);
    assert_eq!(st.federations["e-commerce-platform"].spec.services.len(), 4);
    // The by-reference member takes the service file's workspace and base path.
    let inv = &st.federations["e-commerce-platform"].spec.services[2];
    assert_eq!(
        (inv.workspace_id.as_str(), inv.base_path.as_str()),
        ("workspace-inventory-789", "/inventory")
    );
    assert_eq!(st.pipelines.len(), 7);
    assert_eq!(st.scenarios.len(), 4);
    assert!(st.specs["specs/payments/openapi.yaml"].document);
}

#[test]
fn example_uses_every_kind_step_type_and_event_type() {
    use mockops::model::StepType;
    use mockops::model::events::EventType;
    let files = DirFiles::new(crate::support::example_repo()).expect("dir");
    let st = Loader::new().load(&files).expect("load").state;
    let steps: std::collections::BTreeSet<StepType> = st
        .pipelines
        .values()
        .flat_map(|p| p.spec.definition.steps.iter().map(|s| s.step_type))
        .collect();
    assert_eq!(steps.len(), StepType::ALL.len());
    let events: std::collections::BTreeSet<String> = st
        .pipelines
        .values()
        .flat_map(|p| p.spec.definition.triggers.iter().map(|t| t.event.clone()))
        .collect();
    for e in EventType::ALL {
        assert!(
            events.contains(e.as_str()),
            "no pipeline triggers on {}",
            e.as_str()
        );
    }
    assert!(
        events.contains("release.published"),
        "a custom event is used"
    );
    let notify_types: std::collections::BTreeSet<&str> = st
        .pipelines
        .values()
        .flat_map(|p| p.spec.definition.steps.iter())
        .filter(|s| s.step_type == StepType::Notify)
        .filter_map(|s| s.config.get("type").and_then(|t| t.as_str()))
        .collect();
    assert_eq!(
        notify_types.len(),
        3,
        "slack, email and webhook: {notify_types:?}"
    );
    assert!(!st.personas.is_empty());
}

type Edit = fn(&Fixture);

/// Broken repositories: each is the example with one kind of mistake (or several, where the
/// point is that all are reported at once).
const BROKEN: &[(&str, Edit)] = &[
    ("yaml_syntax_error", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: [unclosed\n",
        );
    }),
    ("tabs_in_indentation", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: w\nowners:\n\t- me\n",
        );
    }),
    ("duplicate_key", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: w1\nworkspace_id: w2\n",
        );
    }),
    ("alias_bomb", |f| {
        let mut s = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (p, n) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            s.push_str(&format!(
                "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        f.write("services/bomb.yaml", s);
    }),
    ("huge_file", |f| {
        let mut s = String::from("name: huge\nworkspace_id: w\ndescription: \"");
        s.push_str(&"x".repeat(2 * 1024 * 1024));
        s.push_str("\"\n");
        f.write("services/huge.yaml", s);
    }),
    ("invalid_utf8", |f| {
        f.write(
            "services/latin1.yaml",
            b"name: caf\xe9\nworkspace_id: w\n".as_slice(),
        );
    }),
    ("deep_nesting", |f| {
        let s = format!(
            "name: deep\nworkspace_id: w\ndescription: {}x{}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        f.write("services/deep.yaml", s);
    }),
    ("empty_file", |f| {
        f.write("services/empty.yaml", "# nothing here\n");
    }),
    ("symlink_outside_repo", |f| {
        f.symlink("services/passwd.yaml", "/etc/passwd");
    }),
    ("symlink_escaping_with_dotdot", |f| {
        f.symlink("pipelines/escape.yaml", "../../../../../../etc/hostname");
    }),
    ("unknown_top_level_field", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: w\nspce: specs/auth/openapi.json\nreality: real\n",
        );
    }),
    ("wrong_types", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  enabled: \"yes please\"\n  triggers:\n    - event: schema.changed\n  steps:\n    - name: s\n      step_type: notify\n      timeout: soon\n      retries: -1\n      config: {type: webhook, webhook_url: \"https://x.example\", message: [not, a, string]}\n",
        );
    }),
    ("missing_required_fields", |f| {
        f.write("pipelines/p.yaml", "name: p\ndefinition:\n  steps: []\n");
        f.write("services/nows.yaml", "name: nows\n");
    }),
    ("misspelt_step_type", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - name: s\n      step_type: regenerate-sdk\n",
        );
    }),
    ("step_type_spelled_type", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - name: s\n      type: notify\n      config: {type: slack, message: hi}\n",
        );
    }),
    ("misspelt_event_type", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers:\n    - event: schema.chnaged\n    - event: scenario_published\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n",
        );
    }),
    ("unknown_notify_type", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: teams, message: hi}}\n",
        );
    }),
    ("unknown_key_in_step_config", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi, chanels: [\"#a\"]}}\n",
        );
    }),
    ("unknown_reality_level", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - {name: a, workspace_id: wa, base_path: /a, reality_level: mock-v3}\n  - {name: b, workspace_id: wb, base_path: /b, reality_level: fake}\n",
        );
    }),
    ("duplicate_service_names", |f| {
        f.write(
            "services/auth2.yaml",
            "name: auth\nworkspace_id: workspace-auth-999\n",
        );
    }),
    ("name_does_not_match_file", |f| {
        f.write("pipelines/misnamed.yaml", "name: something-else\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n");
    }),
    ("unknown_service_reference_in_federation", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - name: paymnets\n  - name: gateway\n    service: auth2\n",
        );
    }),
    ("federation_dependency_cycle", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - {name: a, workspace_id: wa, base_path: /a, dependencies: [b]}\n  - {name: b, workspace_id: wb, base_path: /b, dependencies: [c]}\n  - {name: c, workspace_id: wc, base_path: /c, dependencies: [a]}\n",
        );
    }),
    ("service_dependency_cycle_and_unknown", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: workspace-auth-123\ndependencies: [payments, billing]\n",
        );
    }),
    ("federation_unknown_dependency_and_self", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - {name: a, workspace_id: wa, base_path: /a, dependencies: [a, zz]}\n",
        );
    }),
    ("base_path_conflict_and_overlap", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - {name: a, workspace_id: wa, base_path: /api}\n  - {name: b, workspace_id: wb, base_path: /api}\n  - {name: c, workspace_id: wc, base_path: /api/v2}\n  - {name: d, workspace_id: wd, base_path: /apis}\n",
        );
    }),
    ("malformed_base_paths", |f| {
        f.write(
            "federations/f.yaml",
            "name: f\nservices:\n  - {name: a, workspace_id: wa, base_path: auth}\n  - {name: b, workspace_id: wb, base_path: /b/}\n  - {name: c, workspace_id: wc, base_path: \"/c/{id}\"}\n  - {name: d, workspace_id: wd, base_path: /d/../e}\n  - {name: e, workspace_id: we}\n",
        );
    }),
    ("filter_on_field_event_lacks", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers:\n    - event: scenario.published\n      filters:\n        spec_path: \"specs/*\"\n        schema_type: openapi\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n",
        );
    }),
    ("bad_filter_values", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers:\n    - event: schema.changed\n      filters:\n        schema_type: [openapi, graphql]\n        spec_path: \"specs/[bad\"\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n",
        );
    }),
    ("template_names_missing_event_field", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers:\n    - event: scenario.published\n    - event: schema.changed\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: \"{{event.scenario_name}} {{event.spec_pth}}\"}}\n",
        );
    }),
    ("template_unknown_names", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: a, step_type: notify, config: {type: slack, message: \"{{workspace}} {{variables.nope}} {{steps.b.outputs.x}}\"}}\n    - {name: b, step_type: notify, config: {type: slack, message: \"{{steps.a.outputs.pr_url}} {{steps.a.result}}\"}}\n",
        );
    }),
    ("template_syntax_error", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: a, step_type: notify, config: {type: slack, message: \"{{event.spec_path\"}}\n",
        );
    }),
    ("regenerate_sdk_without_spec_for_non_schema_event", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: workspace.created}]\n  steps:\n    - {name: a, step_type: regenerate_sdk, config: {languages: [typescript, cobol, pyhton]}}\n",
        );
    }),
    ("auto_promote_bad_environments", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: scenario.published}]\n  steps:\n    - {name: a, step_type: auto_promote, config: {entity_type: scenario, entity_id: x, from_environment: dev, to_environment: staging}}\n    - {name: b, step_type: auto_promote, config: {entity_type: scenario, entity_id: x, from_environment: prod, to_environment: test}}\n    - {name: c, step_type: auto_promote, config: {entity_type: scenario, entity_id: x, from_environment: dev, to_environment: prod}}\n    - {name: d, step_type: auto_promote, config: {entity_type: scenarios, entity_id: x, from_environment: dev, to_environment: dev}}\n",
        );
    }),
    ("create_pr_unsafe_paths", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - name: pr\n      step_type: create_pr\n      config:\n        repository: not a repo\n        branch: main\n        title: t\n        files:\n          - {path: ../outside.txt, content: x}\n          - {path: /etc/passwd, content: x}\n          - {path: .git/hooks/post-checkout, content: x}\n          - {path: ok.txt}\n          - {path: gen, from_step: later}\n",
        );
    }),
    ("notify_missing_destinations", |f| {
        f.write("mockops.yaml", "environments: [dev, test, prod]\n");
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: a, step_type: notify, config: {type: slack, message: hi}}\n    - {name: b, step_type: notify, config: {type: email, message: hi}}\n    - {name: c, step_type: notify, config: {type: webhook, message: hi}}\n",
        );
    }),
    ("inline_secrets", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - name: a\n      step_type: notify\n      config:\n        type: slack\n        message: hi\n        slack_webhook_url: https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX\n    - name: b\n      step_type: notify\n      config:\n        type: webhook\n        message: hi\n        webhook_url: https://example.com/hook\n        secret: hunter2\n        headers:\n          Authorization: ghp_0123456789abcdefghijklmnopqrstuvwxyz\n",
        );
    }),
    ("spec_missing", |f| {
        f.remove("specs/payments/openapi.yaml");
    }),
    ("spec_not_openapi", |f| {
        f.write(
            "specs/payments/openapi.yaml",
            "openapi: 2.0\ninfo: {title: x}\npaths:\n  charges: {}\n",
        );
    }),
    ("spec_swagger_2", |f| {
        f.write(
            "specs/payments/openapi.yaml",
            "swagger: \"2.0\"\ninfo: {title: x, version: \"1\"}\npaths: {}\n",
        );
    }),
    ("spec_dangling_and_escaping_refs", |f| {
        let text =
            std::fs::read_to_string(f.path().join("specs/payments/openapi.yaml")).expect("read");
        f.write(
            "specs/payments/openapi.yaml",
            text.replace(
                "#/components/schemas/ChargeRequest",
                "#/components/schemas/ChargeRequst",
            )
            .replace(
                "\"#/components/schemas/Error\"",
                "\"../../../outside.yaml#/Error\"",
            ),
        );
    }),
    ("spec_unparseable_json", |f| {
        f.write(
            "specs/auth/openapi.json",
            "{\"openapi\": \"3.1.0\", \"info\": {\"title\": \"x\",}\n",
        );
    }),
    ("proto_does_not_compile", |f| {
        f.write(
            "specs/inventory/v1/inventory.proto",
            "syntax = \"proto3\";\npackage inventory.v1;\nimport \"inventory/v1/missing.proto\";\nmessage A { Unknown field = 1; }\n",
        );
    }),
    ("service_bad_upstream_and_spec_escape", |f| {
        f.write("services/auth.yaml", "name: auth\nworkspace_id: workspace-auth-123\nupstream: auth.internal:8080\nspec: ../../secrets.yaml\nbase_path: /auth/\n");
    }),
    ("scenario_in_undeclared_environment", |f| {
        f.write(
            "environments/staging/scenarios/x.yaml",
            "name: x\nversion: 1\nworkspace_id: workspace-payments-456\n",
        );
    }),
    ("scenario_unknown_references", |f| {
        f.write(
            "environments/dev/scenarios/x.yaml",
            "name: x\nversion: 1\nfederation: e-commerce\nworkspace_id: workspace-nope\n",
        );
        f.write(
            "environments/dev/scenarios/y.yaml",
            "name: y\nversion: 1\nfederation: e-commerce-platform\nsteps:\n  - {service: billing, action: charge}\n",
        );
    }),
    ("duplicate_scenario_ids", |f| {
        f.write("environments/dev/scenarios/other.yaml", "id: checkout-happy-path\nname: Other\nversion: 1\nworkspace_id: workspace-payments-456\n");
    }),
    ("settings_errors", |f| {
        f.write(
            "mockops.yaml",
            "environments:\n  - dev\n  - dev\n  - {name: prod, direct_commit: true}\n  - {name: \"qa env\"}\npull_requests: {max_per_hour: many}\n",
        );
    }),
    ("settings_semantic_errors", |f| {
        f.write(
            "mockops.yaml",
            "environments:\n  - dev\n  - dev\n  - {name: prod, direct_commit: true}\n  - {name: \"qa env\"}\n",
        );
    }),
    ("pipeline_without_triggers_or_steps", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: []\n  steps: []\n",
        );
    }),
    ("pipeline_event_loop", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: pipeline.completed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: \"{{event.pipeline}}\"}}\n",
        );
    }),
    ("duplicate_step_names_and_zero_timeout", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, timeout: 0, config: {type: slack, message: hi}}\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n",
        );
    }),
    ("empty_and_duplicate_step_names", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: notify, step_type: notify, config: {type: slack, message: hi}}\n    - {name: \"\", step_type: notify, config: {type: slack, message: hi}}\n    - {name: notify, step_type: notify, config: {type: slack, message: hi}}\n    - name: \"  \"\n      step_type: regenerate_sdk\n      config: {languages: [rust]}\n",
        );
    }),
    ("template_unknown", |f| {
        let p = f.read("pipelines/auto-sdk-regeneration.yaml");
        f.write(
            "pipelines/auto-sdk-regeneration.yaml",
            p.replace("uses: sdk-regeneration", "uses: sdk-regenration"),
        );
    }),
    ("template_missing_variable", |f| {
        let p = f.read("pipelines/auto-sdk-regeneration.yaml");
        f.write(
            "pipelines/auto-sdk-regeneration.yaml",
            p.replace("    sdk_repository: example/payments-sdk\n", ""),
        );
    }),
    ("template_unknown_variable", |f| {
        let p = f.read("pipelines/auto-sdk-regeneration.yaml");
        f.write(
            "pipelines/auto-sdk-regeneration.yaml",
            p.replace("sdk_repository:", "sdk_repo:"),
        );
    }),
    ("template_uses_itself", |f| {
        let t = f.read("templates/sdk-regeneration.yaml");
        f.write(
            "templates/sdk-regeneration.yaml",
            t.replace("variables:\n", "uses: sdk-regeneration\nvariables:\n"),
        );
    }),
    ("template_cycle", |f| {
        f.write(
            "templates/a.yaml",
            "template: a\nuses: b\nsteps:\n  - {name: a, step_type: notify, config: {type: slack, message: a}}\n",
        );
        f.write(
            "templates/b.yaml",
            "template: b\nuses: a\nsteps:\n  - {name: b, step_type: notify, config: {type: slack, message: b}}\n",
        );
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  uses: a\n  triggers: [{event: schema.changed}]\n",
        );
    }),
    ("template_expansion_fails_step_checks", |f| {
        // The template's step reads a variable it does not declare and the pipeline's own step
        // takes a name the template already uses.
        let t = f.read("templates/sdk-regeneration.yaml");
        f.write(
            "templates/sdk-regeneration.yaml",
            t.replace("{{variables.output_dir}}", "{{variables.out_dir}}"),
        );
        let p = f.read("pipelines/auto-sdk-regeneration.yaml");
        f.write(
            "pipelines/auto-sdk-regeneration.yaml",
            format!(
                "{p}  steps:\n    - {{name: open_sdk_pr, step_type: notify, config: {{type: slack, message: done}}}}\n"
            ),
        );
    }),
    ("template_with_without_uses_and_bad_shape", |f| {
        f.write(
            "pipelines/p.yaml",
            "name: p\ndefinition:\n  with: {a: 1}\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n",
        );
        f.write("templates/t.yaml", "template: t\nstep: []\n");
    }),
    ("misplaced_files", |f| {
        f.write("pipelines/nested/p.yaml", "name: p\n");
        f.write("services/auth.json", "{}");
        f.write("environments/dev/stuff/x.yaml", "a: 1\n");
    }),
    ("many_errors_across_files_reported_at_once", |f| {
        f.write(
            "services/auth.yaml",
            "name: auth\nworkspace_id: workspace-auth-123\nreality_level: realistic\n",
        );
        f.write(
            "federations/e-commerce-platform.yaml",
            "name: e-commerce-platform\nservices:\n  - name: nope\n",
        );
        f.write("pipelines/p.yaml", "name: p\ndefinition:\n  triggers: [{event: schema.chagned}]\n  steps:\n    - {name: s, step_type: notify, config: {type: slack, message: hi}}\n");
    }),
];

#[test]
fn broken_repos_corpus() {
    assert!(BROKEN.len() >= 40, "the corpus has {} cases", BROKEN.len());
    let mut failures = Vec::new();
    for (name, edit) in BROKEN {
        let fx = Fixture::example();
        edit(&fx);
        let out = render(&fx);
        assert!(
            out.contains("error[") || out.contains("warning["),
            "{name}: a broken repository produced no diagnostics"
        );
        let result = std::panic::catch_unwind(|| {
            insta::with_settings!({snapshot_suffix => *name, prepend_module_to_snapshot => false}, {
                insta::assert_snapshot!("broken", out);
            });
        });
        if result.is_err() {
            failures.push(*name);
        }
    }
    assert!(failures.is_empty(), "snapshot mismatches: {failures:?}");
}

#[test]
fn settings_file_is_optional() {
    let fx = Fixture::example();
    fx.remove("mockops.yaml");
    // The example's notify steps rely on mockops.yaml's Slack and SMTP defaults.
    let out = render(&fx);
    assert!(!out.contains("unknown-environment"), "{out}");
    assert!(out.contains("no Slack webhook URL"), "{out}");
}

#[test]
fn fifo_is_refused() {
    let fx = Fixture::example();
    let path = fx.path().join("services/pipe.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let out = render(&fx);
    assert!(
        out.contains("error[not-a-regular-file]: named pipe"),
        "{out}"
    );
}

#[test]
fn git_revision_loads_like_the_working_directory() {
    let fx = Fixture::example();
    let first = fx.commit("initial");
    let loader = Loader::new();
    let from_git = loader
        .load(&GitFiles::open(fx.path(), &first.to_string()).expect("rev"))
        .expect("load");
    let from_dir = loader
        .load(&DirFiles::new(fx.path()).expect("dir"))
        .expect("load");
    assert_eq!(from_git.diagnostics, vec![]);
    assert_eq!(from_git.state, from_dir.state);

    // A later broken commit does not change what the earlier revision loads to.
    fx.write("services/auth.yaml", "name: auth\n");
    fx.commit("break auth");
    let old = loader
        .load(&GitFiles::open(fx.path(), &first.to_string()).expect("rev"))
        .expect("load");
    assert!(old.is_valid());
    let head = loader
        .load(&GitFiles::open(fx.path(), "HEAD").expect("rev"))
        .expect("load");
    assert!(!head.is_valid());
    assert_eq!(head.diagnostics[0].file, "services/auth.yaml");
}

#[test]
fn symlinks_inside_the_repo_are_followed_in_git_and_on_disk() {
    let fx = Fixture::example();
    fx.symlink("specs/payments/current.yaml", "openapi.yaml");
    fx.write(
        "services/payments.yaml",
        std::fs::read_to_string(fx.path().join("services/payments.yaml"))
            .expect("read")
            .replace("specs/payments/openapi.yaml", "specs/payments/current.yaml"),
    );
    let head = fx.commit("link");
    let loader = Loader::new();
    let dir = loader
        .load(&DirFiles::new(fx.path()).expect("dir"))
        .expect("load");
    assert_eq!(dir.diagnostics, vec![], "{}", render(&fx));
    let git = loader
        .load(&GitFiles::open(fx.path(), &head.to_string()).expect("rev"))
        .expect("load");
    assert_eq!(git.diagnostics, vec![]);
}

#[test]
fn unchanged_files_are_never_parsed_twice() {
    let fx = Fixture::example();
    let c1 = fx.commit("one");
    let loader = Loader::new();
    loader
        .load(&GitFiles::open(fx.path(), &c1.to_string()).expect("rev"))
        .expect("load");
    let cold = loader.stats();
    assert!(cold.misses > 10 && cold.hits == 0, "{cold:?}");
    loader
        .load(&GitFiles::open(fx.path(), &c1.to_string()).expect("rev"))
        .expect("load");
    let warm = loader.stats();
    assert_eq!(
        warm.misses, cold.misses,
        "a second load of the same commit parses nothing"
    );
    fx.write(
        "services/auth.yaml",
        std::fs::read_to_string(fx.path().join("services/auth.yaml")).expect("read")
            + "tags: [changed]\n",
    );
    let c2 = fx.commit("two");
    loader
        .load(&GitFiles::open(fx.path(), &c2.to_string()).expect("rev"))
        .expect("load");
    assert_eq!(
        loader.stats().misses,
        cold.misses + 1,
        "a one-file change parses one file"
    );
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run mockops");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_validate_formats_and_exit_codes() {
    let ok = crate::support::example_repo();
    let (code, stdout, _) = run_cli(&["validate", ok.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("ok: 3 services"), "{stdout}");

    let fx = Fixture::example();
    fx.write(
        "services/auth.yaml",
        "name: auth\nworkspace_id: w\nreality_level: fake\n",
    );
    fx.write("pipelines/p.yaml", "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, config: {type: webhook, webhook_url: \"https://x.example\", message: hi, secret: hunter2}}\n");
    let path = fx.path().to_str().expect("utf8");
    let (code, stdout, _) = run_cli(&["validate", path, "--format", "json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json output");
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"], 1);
    assert_eq!(json["warnings"], 1);
    assert_eq!(json["diagnostics"][1]["file"], "services/auth.yaml");
    assert_eq!(json["diagnostics"][1]["line"], 3);
    assert_eq!(
        json["diagnostics"][1]["hint"],
        "expected one of: real, mock_v3, blended, chaos_driven"
    );

    let (code, stdout, _) = run_cli(&["validate", path, "--format", "github"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("::error file=services/auth.yaml,line=3,col=16,title=unknown-value::"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::warning file=pipelines/p.yaml"),
        "{stdout}"
    );

    // Warnings alone pass unless denied.
    fx.write("services/auth.yaml", "name: auth\nworkspace_id: w\n");
    let (code, _, _) = run_cli(&["validate", path]);
    assert_eq!(code, 0);
    let (code, _, _) = run_cli(&["validate", path, "--deny-warnings"]);
    assert_eq!(code, 1);

    // --rev reads the object database, not the working tree.
    fx.commit("c1");
    fx.write("services/auth.yaml", "garbage: [\n");
    let (code, _, _) = run_cli(&["validate", path, "--rev", "HEAD"]);
    assert_eq!(code, 0);
    let (code, _, stderr) = run_cli(&["validate", path, "--rev", "no-such-rev"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot open revision `no-such-rev`"),
        "{stderr}"
    );
}

#[test]
fn committed_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, text) in mockops::cli::schemas::generate() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == text,
            "schemas/{name} is stale: run `cargo run -- schemas`"
        );
    }
}

/// A file whose only structural problems are unknown keys still takes part in cross-file
/// checks; one with another structural problem does not, and a federation naming its service
/// is not told the service is unknown.
#[test]
fn unknown_keys_alone_keep_a_file_in_the_cross_file_checks() {
    let fx = Fixture::example();
    let federation =
        std::fs::read_to_string(fx.path().join("federations/e-commerce-platform.yaml"))
            .expect("federation");
    fx.write(
        "federations/e-commerce-platform.yaml",
        format!("{federation}  - name: extra\n"),
    );
    let service = "name: extra\nworkspace_id: w-extra\nspec: specs/nope.json\nbase_path: /extra\n";
    fx.write("services/extra.yaml", format!("{service}colour: blue\n"));
    let out = render(&fx);
    assert!(
        out.contains("error[unknown-field]: unknown field `colour`"),
        "{out}"
    );
    assert!(out.contains("error[spec-missing]"), "{out}");
    assert!(out.contains("2 errors"), "{out}");

    fx.write(
        "services/extra.yaml",
        format!("{service}reality_level: 5\n"),
    );
    let out = render(&fx);
    assert!(out.contains("error[unknown-value]"), "{out}");
    assert!(!out.contains("spec-missing"), "{out}");
    assert!(!out.contains("unknown-service"), "{out}");
    assert!(out.contains("1 error,"), "{out}");
}

// ---- the committed JSON Schemas, as an editor uses them --------------------------------------

fn committed_schema(kind: mockops::model::Kind) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{}.schema.json", kind.as_str()));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("committed schema")).expect("json")
}

fn yaml_json(text: &str) -> serde_json::Value {
    mockops::config::yaml::parse(text.as_bytes(), mockops::config::yaml::Limits::CONFIG)
        .expect("yaml")
        .to_json()
}

/// What an editor with the YAML language server reports for `doc` against the committed
/// schema of `kind`: `instance path: message` per problem.
fn editor_problems(kind: mockops::model::Kind, doc: &serde_json::Value) -> Vec<String> {
    let schema = committed_schema(kind);
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_file_is_valid_against_the_committed_schemas() {
    use mockops::config::load::{FileClass, classify};
    let root = crate::support::example_repo();
    let mut checked = 0;
    let mut problems = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under root")
                .to_str()
                .expect("utf8")
                .replace('\\', "/");
            let kind = match classify(&rel) {
                FileClass::Config(k) | FileClass::EnvEntity(k, _) => k,
                _ => continue,
            };
            let doc = yaml_json(&std::fs::read_to_string(&path).expect("read"));
            for p in editor_problems(kind, &doc) {
                problems.push(format!("{rel}: {p}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} files checked");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A template stands for a list or a number in a step's `config` (it is rendered before the
/// config is read), in the schema an editor uses and in `mockops validate`; a plain string
/// there is still wrong in both.
#[test]
fn templates_are_accepted_in_typed_step_fields_and_plain_strings_are_not() {
    use mockops::model::Kind;
    let pipeline = |config: &str| {
        format!(
            "name: p\ndefinition:\n  triggers: [{{event: schema.changed}}]\n  variables: {{langs: [rust], port: 8080, cors: true, cmd: [gen]}}\n  steps:\n    - name: gen\n      step_type: regenerate_sdk\n      config: {config}\n"
        )
    };
    let templated = pipeline(
        "{languages: \"{{variables.langs}}\", port: \"{{variables.port}}\", enable_cors: \"{{ variables.cors }}\", generators: {go: {command: \"{{variables.cmd}}\"}}}",
    );
    assert_eq!(
        editor_problems(Kind::Pipeline, &yaml_json(&templated)),
        Vec::<String>::new()
    );
    let fx = Fixture::example();
    fx.write("pipelines/p.yaml", &templated);
    let out = render(&fx);
    assert!(
        !out.contains("pipelines/p.yaml"),
        "a template in a typed field is valid: {out}"
    );

    for (config, pointer, message) in [
        (
            "{languages: rust}",
            "/definition/steps/0/config/languages",
            "`definition.steps[0].config.languages` must be a list, found string `rust`",
        ),
        (
            "{languages: [rust], port: \"eighty\"}",
            "/definition/steps/0/config/port",
            "`definition.steps[0].config.port` must be an integer, found string `eighty`",
        ),
    ] {
        let text = pipeline(config);
        let editor = editor_problems(Kind::Pipeline, &yaml_json(&text));
        // A validator reports the step (no variant of its `oneOf` fits) or the field itself.
        assert!(
            editor
                .iter()
                .any(|p| p.split_once(':').is_some_and(|(at, _)| at
                    .starts_with("/definition/steps/0")
                    && pointer.starts_with(at))),
            "{config}: the editor flags {pointer}: {editor:#?}"
        );
        fx.write("pipelines/p.yaml", &text);
        let out = render(&fx);
        assert!(out.contains(message), "{config}: {out}");
        assert!(out.contains("error[wrong-type]"), "{config}: {out}");
    }

    // Outside a step's `config` nothing is rendered, so a template is a wrong type there.
    let text = "name: p\ndefinition:\n  triggers: [{event: schema.changed}]\n  steps:\n    - {name: s, step_type: notify, timeout: \"{{variables.t}}\", config: {type: slack, message: hi}}\n";
    assert!(!editor_problems(Kind::Pipeline, &yaml_json(text)).is_empty());
    fx.write("pipelines/p.yaml", text);
    let out = render(&fx);
    assert!(
        out.contains(
            "`definition.steps[0].timeout` must be an integer, found string `{{variables.t}}`"
        ),
        "{out}"
    );
}
