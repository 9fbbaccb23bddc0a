//! A real OpenSSH server (`sshd`, package openssh-server) on loopback, serving Git over SSH:
//! its own host key, one authorized client key, no PAM, no passwords. Stops when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SshServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// Makes an ed25519 key pair at `path` (and `path.pub`), encrypted when `passphrase` is not
/// empty.
pub fn keygen(path: &Path, passphrase: &str) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "mockops-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen (package openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

/// `SHA256:...` of a public key file, as `ssh-keygen -lf` prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string()
}

impl SshServer {
    /// Starts sshd on a free loopback port, accepting `client_public_key`.
    pub fn start(client_public_key: &Path) -> SshServer {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("sshd (package openssh-server; .ci/run installs it)");
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("host_key"), "");
        std::fs::copy(client_public_key, dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        let port = super::git_server::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("sshd_config");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sshd.log")).expect("log"))
            .spawn()
            .expect("spawn sshd");
        let server = SshServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `ssh://<this user>@127.0.0.1:<port><absolute path>`.
    pub fn url(&self, repo: &Path) -> String {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                let out = Command::new("id").arg("-un").output().expect("id -un");
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            });
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, repo.display())
    }

    /// The fingerprint of the host key the server presents.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.dir.path().join("host_key.pub"))
    }

    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host key")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
