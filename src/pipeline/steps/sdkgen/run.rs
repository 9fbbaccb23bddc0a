//! Running one generator process: its own process group, a cleared environment, stdin closed,
//! stdout and stderr drained into size-capped tails, and a deadline after which the whole group
//! is killed. Dropping the future kills the group too, so a cancelled step leaves nothing behind.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// How long the pipes may stay open after the generator exits and its group was killed.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One process to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// The whole environment of the process (nothing is inherited).
    pub env: Vec<(String, OsString)>,
}

/// How a process that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Tail,
    pub stderr: Tail,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {}", humantime::format_duration(*after))]
    TimedOut {
        program: String,
        after: Duration,
        stderr: Tail,
    },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// The last `cap` bytes of a stream, and how many bytes were dropped before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

impl Tail {
    /// The tail as text (lossy), prefixed with a note when the start was cut.
    pub fn text(&self) -> String {
        let body = String::from_utf8_lossy(&self.bytes);
        let body = body.trim_end();
        if self.dropped > 0 {
            format!("[… {} earlier bytes not shown]\n{body}", self.dropped)
        } else {
            body.to_string()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

/// Reads `reader` to its end, keeping only the last `cap` bytes.
async fn read_tail(mut reader: impl AsyncRead + Unpin, cap: usize) -> Tail {
    let mut tail = Tail::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.bytes.extend_from_slice(&buf[..n]);
                if tail.bytes.len() > cap {
                    let excess = tail.bytes.len() - cap;
                    tail.bytes.drain(..excess);
                    tail.dropped += excess as u64;
                }
            }
        }
    }
    tail
}

/// Kills every process of a group when dropped, unless disarmed.
struct GroupGuard {
    pgid: Option<rustix::process::Pid>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the expected outcome once all have exited.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `inv` until it exits or `deadline` passes; stdout and stderr keep their last
/// `output_cap` bytes each.
pub async fn run(
    inv: &Invocation,
    deadline: Instant,
    output_cap: usize,
) -> Result<Finished, RunError> {
    let program = inv.program.display().to_string();
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(&inv.cwd)
        .env_clear()
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let guard = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    };
    let stdout = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_tail(s, output_cap)));
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_tail(s, output_cap)));
    let collect = |task: Option<tokio::task::JoinHandle<Tail>>| async move {
        match task {
            Some(t) => tokio::time::timeout(DRAIN_GRACE, t)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Tail::default(),
        }
    };

    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            // Whatever the generator left running in the background goes with it, so the
            // pipes close and nothing outlives the step.
            guard.kill();
            let stdout = collect(stdout).await;
            let stderr = collect(stderr).await;
            Ok(Finished {
                status,
                stdout,
                stderr,
                elapsed: started.elapsed(),
            })
        }
        Ok(Err(source)) => Err(RunError::Wait { program, source }),
        Err(_) => {
            guard.kill();
            let _ = child.kill().await;
            let _ = collect(stdout).await;
            let stderr = collect(stderr).await;
            Err(RunError::TimedOut {
                program,
                after: started.elapsed(),
                stderr,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_keeps_the_end() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(&data[..], 1000).await;
        assert_eq!(tail.bytes.len(), 1000);
        assert_eq!(tail.dropped, 99_000);
        assert_eq!(&tail.bytes[..], &data[99_000..]);
    }

    #[tokio::test]
    async fn exit_status_and_output_are_reported() {
        let inv = Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        let done = run(&inv, Instant::now() + Duration::from_secs(30), 1024)
            .await
            .expect("runs");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout.text(), "out");
        assert_eq!(done.stderr.text(), "err");
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        let inv = Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "env".into()],
            cwd: std::env::temp_dir(),
            env: vec![("ONLY".into(), "this".into())],
        };
        let done = run(&inv, Instant::now() + Duration::from_secs(30), 4096)
            .await
            .expect("runs");
        let vars: Vec<String> = done
            .stdout
            .text()
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .map(str::to_string)
            .collect();
        assert_eq!(vars, ["ONLY=this"]);
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_step() {
        // The shell exits at once but leaves a sleeper holding stdout open.
        let inv = Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 300 & echo started".into()],
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        let begin = std::time::Instant::now();
        let done = run(&inv, Instant::now() + Duration::from_secs(60), 1024)
            .await
            .expect("runs");
        assert!(done.status.success());
        assert_eq!(done.stdout.text(), "started");
        assert!(
            begin.elapsed() < Duration::from_secs(10),
            "{:?}",
            begin.elapsed()
        );
    }
}
