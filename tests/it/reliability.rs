//! The daemon under conditions operators meet: systemd's readiness and watchdog through a real
//! `NOTIFY_SOCKET`, a full disk under the store, a damaged or newer store, a bad
//! `--replay-from`, retention, and logs written to a file. Always the real binary.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::daemon::{Daemon, Repo, free_port, http};
use crate::support::git_server::SilentServer;

const SERVICE: &str = "services/payments.yaml";

fn set_description(repo: &Repo, text: &str) {
    let s = repo.read(SERVICE);
    let out: String = s
        .lines()
        .map(|l| {
            if l.starts_with("description:") {
                format!("description: {text}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    repo.write(SERVICE, &out);
}

/// The socket systemd would give the daemon: collects what it sends, with arrival times.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    started: Instant,
    /// (time since `started`, one `KEY=value` line)
    seen: Vec<(Duration, String)>,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Self {
            sock,
            path,
            _dir: dir,
            started: Instant::now(),
            seen: Vec::new(),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn read_once(&mut self) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = self.sock.recv(&mut buf) {
            let at = self.now();
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                self.seen.push((at, line.to_string()));
            }
        }
    }

    fn collect_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.read_once();
        }
    }

    /// Reads until a line equal to `line` arrives; returns when it did.
    fn wait_for(&mut self, line: &str, within: Duration) -> Duration {
        let until = Instant::now() + within;
        loop {
            if let Some((at, _)) = self.seen.iter().find(|(_, l)| l == line) {
                return *at;
            }
            assert!(
                Instant::now() < until,
                "no {line} within {within:?}; got {:?}",
                self.lines()
            );
            self.read_once();
        }
    }

    fn lines(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        v.dedup();
        v
    }

    fn times_of(&self, line: &str) -> Vec<Duration> {
        self.seen
            .iter()
            .filter(|(_, l)| l == line)
            .map(|(at, _)| *at)
            .collect()
    }

    /// The longest stretch without a `WATCHDOG=1` between `from` and `to`.
    fn longest_watchdog_gap(&self, from: Duration, to: Duration) -> Duration {
        let mut last = from;
        let mut gap = Duration::ZERO;
        for t in self.times_of("WATCHDOG=1") {
            if t < from || t > to {
                continue;
            }
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(to.saturating_sub(last))
    }
}

/// A fresh state directory whose head commit is invalid, and a poll interval of an hour: the
/// daemon is ready once it has looked at the head (it serves, with the failure in status), and
/// the watchdog is fed the whole time it waits, far beyond one watchdog period.
#[test]
fn ready_with_an_invalid_head_and_watchdog_fed_while_idle() {
    let repo = Repo::example();
    let broken = repo.read(SERVICE) + "oops: [\n";
    repo.write(SERVICE, &broken);
    let bad = repo.commit("broken");
    let state = tempfile::tempdir().unwrap();
    let mut n = NotifySocket::bind();
    let d = Daemon::start_env(
        repo.path(),
        state.path(),
        &["--poll-interval", "1h"],
        &[("NOTIFY_SOCKET", n.path()), ("WATCHDOG_USEC", "600000")],
    );
    let ready = n.wait_for("READY=1", Duration::from_secs(30));
    let st = d.wait_attempted(&bad);
    assert!(st["last_applied"].is_null(), "{st}");
    assert_eq!(st["last_attempted_status"], "invalid");
    n.collect_for(Duration::from_secs(6));
    let end = n.now();
    let gap = n.longest_watchdog_gap(ready, end);
    assert!(
        gap < Duration::from_millis(600),
        "the watchdog went {gap:?} without a ping while the daemon waited: {:?}",
        n.times_of("WATCHDOG=1")
    );
    assert!(
        n.lines().iter().any(|l| l.starts_with("STATUS=serving")),
        "{:?}",
        n.lines()
    );
}

/// A first clone that hangs (a remote that accepts and never answers) is not a hung start:
/// the watchdog is fed through the whole fetch, systemd's start timeout is extended, and once
/// the fetch gives up at its deadline the daemon is ready (serving nothing yet, saying why).
#[test]
fn a_slow_first_fetch_keeps_the_watchdog_fed_and_ends_in_ready() {
    let silent = SilentServer::start();
    let state = tempfile::tempdir().unwrap();
    let mut n = NotifySocket::bind();
    let d = Daemon::start_remote_env(
        &format!("git://127.0.0.1:{}/config.git", silent.port),
        state.path(),
        &["--branch", "main", "--fetch-timeout", "4s"],
        &[("NOTIFY_SOCKET", n.path()), ("WATCHDOG_USEC", "500000")],
    );
    let ready = n.wait_for("READY=1", Duration::from_secs(30));
    assert!(
        ready >= Duration::from_secs(4),
        "ready only once the first fetch ended: {ready:?}"
    );
    let first_ping = n.times_of("WATCHDOG=1")[0];
    let gap = n.longest_watchdog_gap(first_ping, ready);
    assert!(
        gap < Duration::from_millis(500),
        "the watchdog went {gap:?} without a ping during the fetch: {:?}",
        n.times_of("WATCHDOG=1")
    );
    let extend = n.times_of("EXTEND_TIMEOUT_USEC=30000000");
    assert!(
        extend.first().is_some_and(|t| *t < ready),
        "{:?}",
        n.lines()
    );
    let (status, st) = http("GET", &d.url("/api/v1/status"), None, Some(&d.auth())).unwrap();
    assert_eq!(status, 200);
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{st}"
    );
    // A remote that is down is not the daemon being unhealthy: it keeps serving.
    assert_eq!(http("GET", &d.url("/healthz"), None, None).unwrap().0, 200);
}

/// A reconcile pass that really hangs (a blob of the new commit is a FIFO nobody writes to,
/// so reading it blocks forever): the watchdog stops being fed, so systemd restarts the
/// daemon.
#[test]
fn a_stuck_reconcile_loop_stops_the_watchdog() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut n = NotifySocket::bind();
    let d = Daemon::start_env(
        repo.path(),
        state.path(),
        &[],
        &[("NOTIFY_SOCKET", n.path()), ("WATCHDOG_USEC", "500000")],
    );
    n.wait_for("READY=1", Duration::from_secs(30));
    n.collect_for(Duration::from_secs(1));
    assert!(!n.times_of("WATCHDOG=1").is_empty());

    stick_next_pass(&repo);
    let moved = n.now();

    // Before, the watchdog went on for 4 s after the pass began, whatever the pass did.
    n.collect_for(Duration::from_secs(5));
    let last = *n.times_of("WATCHDOG=1").last().unwrap();
    assert!(
        last < moved + Duration::from_millis(2500),
        "the watchdog was still fed {:?} after the loop got stuck",
        last - moved
    );
    let log = d.log_text();
    assert!(
        log.contains("no longer feeding the systemd watchdog"),
        "{log}"
    );
}

/// Moves the branch to a commit whose reading blocks forever: the commit's objects first, then
/// its blob replaced by a FIFO nobody writes to, then the branch moves.
fn stick_next_pass(repo: &Repo) {
    set_description(repo, "a blob that cannot be read");
    let git = git2::Repository::open(repo.path()).expect("stuck commit");
    let mut index = git.index().expect("stuck commit");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("stuck commit");
    let tree = git
        .find_tree(index.write_tree().expect("stuck commit"))
        .expect("stuck commit");
    let blob = tree
        .get_path(Path::new(SERVICE))
        .expect("stuck commit")
        .id()
        .to_string();
    let sig = git2::Signature::now("T", "t@example.com").expect("stuck commit");
    let parent = git
        .head()
        .expect("stuck commit")
        .peel_to_commit()
        .expect("stuck commit");
    let oid = git
        .commit(None, &sig, &sig, "stuck", &tree, &[&parent])
        .expect("stuck commit");
    let loose = repo
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    std::fs::remove_file(&loose).expect("stuck commit");
    let st = Command::new("mkfifo")
        .arg(&loose)
        .status()
        .expect("stuck commit");
    assert!(st.success());
    git.reference("refs/heads/main", oid, true, "stuck")
        .expect("stuck commit");
}

/// The first SIGTERM drains (here: waits for a pass that cannot end, up to a long drain
/// timeout); a second one exits at once, with the signal's exit code.
#[test]
fn a_second_sigterm_exits_at_once_while_a_pass_is_busy() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--poll-interval", "100ms", "--drain-timeout", "120s"],
    );
    d.wait_ready();
    stick_next_pass(&repo);
    // The next pass starts within a poll interval and blocks on the FIFO.
    std::thread::sleep(Duration::from_millis(1500));
    let mut child = d.child.take().unwrap();
    let pid = child.id().to_string();
    let term = || {
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
    };
    term();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the pass in progress (drain timeout 120s)"
    );
    term();
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("a second SIGTERM did not end the daemon: {}", d.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(143), "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("a second signal exits at once"), "{log}");
    assert!(log.contains("second signal: exiting at once"), "{log}");
}

/// `--replay-from` is checked before anything is stored: a revision that does not resolve, or
/// is not on the branch, stops the daemon with exit code 2 and names the revision.
#[test]
fn a_bad_replay_from_is_an_error_before_anything_is_stored() {
    let repo = Repo::example();
    let run = |args: &[&str], state: &Path| {
        let mut child = Command::new(crate::support::bin())
            .arg("daemon")
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--poll-interval", "100ms"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon kept running with {args:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.code(), err)
    };
    let local = repo.path().to_str().unwrap().to_string();

    let state = tempfile::tempdir().unwrap();
    let (code, err) = run(
        &["--repo", &local, "--replay-from", "no-such-rev"],
        state.path(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--replay-from no-such-rev"), "{err}");
    assert!(err.contains("no such revision"), "{err}");
    assert!(
        !state.path().join("mockops.redb").exists(),
        "nothing was stored"
    );

    // A commit that is not on the followed branch.
    let git = git2::Repository::open(repo.path()).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    let sig = git2::Signature::now("T", "t@example.com").unwrap();
    let side = git
        .commit(None, &sig, &sig, "side", &head.tree().unwrap(), &[&head])
        .unwrap()
        .to_string();
    let (code, err) = run(&["--repo", &local, "--replay-from", &side], state.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&side) && err.contains("not an ancestor"),
        "{err}"
    );

    // A remote: checked after the first fetch, before the baseline.
    let remote_state = tempfile::tempdir().unwrap();
    let url = format!("file://{local}");
    let (code, err) = run(
        &[
            "--repo-url",
            &url,
            "--branch",
            "main",
            "--replay-from",
            "nope",
        ],
        remote_state.path(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--replay-from nope"), "{err}");
    let fresh = mockops::store::Store::open(remote_state.path()).unwrap().0;
    assert!(
        fresh.cursor().unwrap().last_attempted.is_none(),
        "no baseline"
    );
}

/// Text logs written to a file carry no ANSI colour codes.
#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("daemon.log");
    let port = free_port();
    let mut child = Command::new(crate::support::bin())
        .arg("daemon")
        .arg("--repo")
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "text"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        http(
            "GET",
            &format!("http://127.0.0.1:{port}/readyz"),
            None,
            None
        ),
        Ok((200, _))
    ) {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mockops daemon started"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {text:?}"
    );
}

/// A small tmpfs to fill for real (unmounted when dropped); mounting needs root.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a real file system and needs to mount a tmpfs (root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn fill(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0x5au8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8; 512]).is_ok() {}
}

/// The disk under the state directory fills up: the commit that cannot be stored fails, the
/// daemon says it is unhealthy (`/healthz`, status) while writes fail, nothing stored before is
/// lost, and once there is room again the commit is applied, once, and health returns.
#[test]
fn a_full_disk_makes_the_daemon_unhealthy_until_writes_work_again() {
    let mnt = Tmpfs::mount("48m");
    let logs = tempfile::tempdir().unwrap();
    let repo = Repo::example();
    let mut d = Daemon::start_logged(
        repo.path(),
        mnt.path(),
        &logs.path().join("daemon.log"),
        &[],
        &[],
    );
    d.wait_ready();
    set_description(&repo, "before the disk filled");
    let c1 = repo.commit("before");
    d.wait_attempted(&c1);
    let before = d.all_events();
    assert!(!before.is_empty());
    let token = d.token();

    let filler = mnt.path().join("filler");
    fill(&filler);
    // A commit large enough to need new pages in the store.
    set_description(&repo, &"y".repeat(600_000));
    let c2 = repo.commit("big");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (code, body) = http("GET", &d.url("/healthz"), None, None).unwrap();
        if code == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "never unhealthy: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let body = body.as_str().unwrap_or_default().to_string();
    assert!(body.contains("store"), "{body}");
    let (_, st) = http("GET", &d.url("/api/v1/status"), None, Some(&d.auth())).unwrap();
    if st.is_object() {
        assert_eq!(st["health"]["healthy"], false, "{st}");
        assert_ne!(st["last_attempted"]["sha"], c2.as_str());
    }

    std::fs::remove_file(&filler).unwrap();
    let auth = [("authorization", format!("Bearer {token}"))];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = http("POST", &d.url("/api/v1/sync"), None, Some(&auth));
        if let Ok((200, _)) = http("GET", &d.url("/healthz"), None, None) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy again: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = d.wait_attempted(&c2);
    assert_eq!(st["health"]["healthy"], true, "{st}");
    assert_eq!(st["last_applied"]["sha"], c2.as_str());
    let after = d.all_events();
    assert_eq!(&after[..before.len()], &before[..], "nothing was lost");
    let of_c2: Vec<&Json> = after
        .iter()
        .filter(|e| e["payload"]["commit"] == c2.as_str())
        .collect();
    assert_eq!(of_c2.len(), 1, "the big commit's event, once: {of_c2:?}");
    assert!(d.log_text().contains("store writes succeed again"));
}

/// A store written by a newer mockops is refused with exit code 2, and left alone.
#[test]
fn a_store_in_a_newer_format_is_refused_and_left_alone() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    drop(mockops::store::Store::open(state.path()).unwrap());
    {
        let db = redb::Database::create(state.path().join("mockops.redb")).unwrap();
        let tx = redb::Database::begin_write(&db).unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("format", b"99".as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let out = Command::new(crate::support::bin())
        .arg("daemon")
        .arg("--repo")
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("format 99") && err.contains("newer"), "{err}");
    let names: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"mockops.redb".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("unreadable")),
        "not moved aside: {names:?}"
    );
}

/// A store damaged while the daemon was down is rebuilt: it replays the commits made since the
/// old store's cursor (their events are not skipped), and event ids go on past the old ones.
#[test]
fn a_rebuilt_store_replays_from_the_old_cursor_with_increasing_ids() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    set_description(&repo, "one");
    let c1 = repo.commit("one");
    let old_max = {
        let mut d = Daemon::start(repo.path(), state.path(), &[]);
        d.wait_ready();
        d.wait_attempted(&c1);
        set_description(&repo, "two");
        let c = repo.commit("two");
        d.wait_attempted(&c);
        let max = d
            .all_events()
            .iter()
            .filter_map(|e| e["id"].as_u64())
            .max()
            .unwrap();
        assert!(d.terminate());
        max
    };
    let applied_before = {
        let git = git2::Repository::open(repo.path()).unwrap();
        git.head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
            .to_string()
    };
    set_description(&repo, "three");
    let c3 = repo.commit("three");
    set_description(&repo, "four");
    let c4 = repo.commit("four");
    std::fs::write(
        state.path().join("mockops.redb"),
        b"this store was damaged while the daemon was down",
    )
    .unwrap();

    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let st = d.wait_attempted(&c4);
    let rebuilt = st["rebuilt"].as_str().unwrap_or_default();
    assert!(
        rebuilt.contains("replayed") && rebuilt.contains(&applied_before),
        "{st}"
    );
    let events = d.all_events();
    let commits: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "config.changed")
        .filter_map(|e| e["payload"]["commit"].as_str())
        .collect();
    assert_eq!(commits, vec![c3.as_str(), c4.as_str()]);
    assert!(
        events.iter().all(|e| e["id"].as_u64().unwrap() > old_max),
        "ids go on past {old_max}: {events:?}"
    );
}

/// Retention by count through the daemon's flags: old events go, ids go on.
#[test]
fn retention_flags_prune_old_events_and_ids_go_on() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--retain-events", "2", "--prune-interval", "1s"],
    );
    d.wait_ready();
    let mut last = String::new();
    for i in 0..4 {
        set_description(&repo, &format!("version {i}"));
        last = repo.commit(&format!("v{i}"));
        d.wait_attempted(&last);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids: Vec<u64> = d
            .all_events()
            .iter()
            .filter_map(|e| e["id"].as_u64())
            .collect();
        if ids == vec![3, 4] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {ids:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        http("GET", &d.url("/api/v1/events/1"), None, Some(&d.auth()))
            .unwrap()
            .0,
        404
    );
    let auth = [("authorization", format!("Bearer {}", d.token()))];
    let body = serde_json::to_vec(&serde_json::json!({"event_type": "release.published"})).unwrap();
    let (code, ev) = http("POST", &d.url("/api/v1/events"), Some(body), Some(&auth)).unwrap();
    assert_eq!(code, 201, "{ev}");
    assert_eq!(ev["id"], 5);
    assert!(!last.is_empty());
    // A bad value is refused with what to write instead.
    let out = Command::new(crate::support::bin())
        .args(["daemon", "--retain-events", "30 fortnights"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("30d"), "{err}");
}
