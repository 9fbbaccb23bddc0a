//! Load benchmark: a generated config repository of 10,000 entities and 200 specs, committed
//! to a real Git repository, loaded from the commit cold, again warm (blob cache), and after a
//! one-file change. Prints each time and its ratio to the cold load; the warm times are the
//! median of several loads (one-file: a different file changed in each new commit).
//!
//! Run: `cargo bench --bench load` (release build).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use mockops::config::load::Loader;
use mockops::git::revision::GitFiles;

const SERVICES: usize = 3_000;
const FEDERATIONS: usize = 500;
const PIPELINES: usize = 2_500;
const SCENARIOS: usize = 3_000;
const PERSONAS: usize = 1_000;
const OPENAPI_SPECS: usize = 150;
const PROTO_SPECS: usize = 50;

fn openapi(i: usize) -> String {
    let mut s = format!("openapi: 3.0.3\ninfo: {{title: API {i}, version: 1.0.0}}\npaths:\n");
    for p in 0..40 {
        let _ = write!(
            s,
            "  /r{p}/{{id}}:\n    get:\n      parameters:\n        - {{name: id, in: path, required: true, schema: {{type: string}}}}\n      responses:\n        \"200\":\n          description: ok\n          content:\n            application/json:\n              schema: {{$ref: \"#/components/schemas/T{p}\"}}\n"
        );
    }
    s.push_str("components:\n  schemas:\n");
    for p in 0..40 {
        let _ = write!(
            s,
            "    T{p}:\n      type: object\n      required: [id]\n      properties:\n        id: {{type: string}}\n        n: {{type: integer, minimum: 0}}\n        tags: {{type: array, items: {{type: string}}}}\n"
        );
    }
    s
}

fn generate(dir: &std::path::Path) {
    let w = |rel: String, content: String| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    };
    for i in 0..OPENAPI_SPECS {
        w(format!("specs/api{i}/openapi.yaml"), openapi(i));
    }
    for i in 0..PROTO_SPECS {
        w(
            format!("specs/proto/svc{i}/v1/svc.proto"),
            format!(
                "syntax = \"proto3\";\npackage svc{i}.v1;\nservice S {{ rpc Get(Req) returns (Resp); }}\nmessage Req {{ string id = 1; }}\nmessage Resp {{ string id = 1; int64 n = 2; repeated string tags = 3; }}\n"
            ),
        );
    }
    for i in 0..SERVICES {
        let spec = if i % 4 == 0 {
            format!("spec: specs/api{}/openapi.yaml\n", i % OPENAPI_SPECS)
        } else {
            String::new()
        };
        let dep = if i % 5 != 0 {
            format!("dependencies: [svc-{}]\n", i - 1)
        } else {
            String::new()
        };
        w(
            format!("services/svc-{i}.yaml"),
            format!(
                "name: svc-{i}\nworkspace_id: ws-{i}\n{spec}upstream: https://svc-{i}.internal.example\nbase_path: /svc-{i}\nreality_level: mock_v3\n{dep}owners: [\"@example/team-{}\"]\n",
                i % 50
            ),
        );
    }
    for i in 0..FEDERATIONS {
        let mut s = format!("name: fed-{i}\nservices:\n");
        for m in 0..5 {
            let _ = writeln!(s, "  - name: svc-{}", (i * 5 + m) % SERVICES);
        }
        w(format!("federations/fed-{i}.yaml"), s);
    }
    for i in 0..PIPELINES {
        w(
            format!("pipelines/p-{i}.yaml"),
            format!(
                "name: p-{i}\ndefinition:\n  triggers:\n    - event: schema.changed\n      filters:\n        schema_type: openapi\n        spec_path: \"specs/api{}/**\"\n  steps:\n    - name: notify\n      step_type: notify\n      config:\n        type: webhook\n        webhook_url: https://hooks.example.com/p-{i}\n        message: \"{{{{event.spec_path}}}} changed in {{{{event.commit}}}}\"\n",
                i % OPENAPI_SPECS
            ),
        );
    }
    for i in 0..SCENARIOS {
        w(
            format!("environments/dev/scenarios/s-{i}.yaml"),
            format!(
                "name: Scenario {i}\nversion: {}\nworkspace_id: ws-{}\nsteps:\n  - service: svc-{}\n    action: call\n",
                i % 7,
                i % SERVICES,
                i % SERVICES
            ),
        );
    }
    for i in 0..PERSONAS {
        w(
            format!("environments/dev/personas/p-{i}.yaml"),
            format!(
                "name: Persona {i}\nversion: 1\nworkspace_id: ws-{}\ntraits: {{tier: gold}}\n",
                i % SERVICES
            ),
        );
    }
}

fn commit_all(repo: &git2::Repository, message: &str) -> git2::Oid {
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("add");
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let sig = git2::Signature::now("bench", "bench@example.com").expect("sig");
    let parents: Vec<git2::Commit> = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &refs)
        .expect("commit")
}

/// Warm loads timed per case; the median is reported.
const RUNS: usize = 7;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path());
    let repo = git2::Repository::init(dir.path()).expect("init");
    let c1 = commit_all(&repo, "generated");
    let entities = SERVICES + FEDERATIONS + PIPELINES + SCENARIOS + PERSONAS;
    println!(
        "repository: {entities} entities, {} specs",
        OPENAPI_SPECS + PROTO_SPECS
    );

    let loader = Loader::new();
    let (loaded, cold) = time(|| {
        loader
            .load(&GitFiles::open(dir.path(), &c1.to_string()).expect("rev"))
            .expect("load")
    });
    assert!(
        loaded.is_valid(),
        "generated repo must be valid: {:?}",
        &loaded.diagnostics[..loaded.diagnostics.len().min(5)]
    );
    let warm = median(
        (0..RUNS)
            .map(|_| {
                time(|| {
                    loader
                        .load(&GitFiles::open(dir.path(), &c1.to_string()).expect("rev"))
                        .expect("load")
                })
                .1
            })
            .collect(),
    );

    let mut one_file = Vec::new();
    let mut c2 = c1;
    for i in 0..RUNS {
        let path = dir.path().join(format!("services/svc-{}.yaml", 42 + i));
        let text = std::fs::read_to_string(&path).expect("read") + "tags: [changed]\n";
        std::fs::write(&path, text).expect("write");
        c2 = commit_all(&repo, "one file");
        let (loaded2, t) = time(|| {
            loader
                .load(&GitFiles::open(dir.path(), &c2.to_string()).expect("rev"))
                .expect("load")
        });
        assert!(loaded2.is_valid());
        one_file.push(t);
    }
    let one_file = median(one_file);

    use mockops::config::snapshot::Snapshot as _;
    let (_, listing) = time(|| {
        GitFiles::open(dir.path(), &c2.to_string())
            .expect("rev")
            .entries()
            .expect("entries")
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("of which listing the tree: {:.1} ms", ms(listing));
    println!("{:<38} {:>10} {:>12}", "load", "ms", "vs cold");
    println!(
        "{:<38} {:>10.1} {:>12}",
        "cold (every file parsed)",
        ms(cold),
        "1.00x"
    );
    println!(
        "{:<38} {:>10.1} {:>11.1}x",
        format!("warm, same commit (median of {RUNS})"),
        ms(warm),
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    println!(
        "{:<38} {:>10.1} {:>11.1}x",
        format!("warm, one-file change (median of {RUNS})"),
        ms(one_file),
        cold.as_secs_f64() / one_file.as_secs_f64()
    );
    println!("cache: {:?}", loader.stats());
}
