//! What the service benches share: the server under test (`execbox serve` on a free port and a
//! temporary data dir), the environment knobs, percentiles, and whether the docker executor can
//! be measured here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The service under test. Dropping it (also on panic) stops the server and removes its data dir.
pub struct Server {
    child: Child,
    pub base: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        let data_dir = tempfile::tempdir().expect("creating a temp data dir");
        // Our own instance name: cgroups live under execbox/<instance> host-wide, and another
        // service (a test run, say) may be using the default one at the same time.
        let mut child = Command::new(env!("CARGO_BIN_EXE_execbox"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("EXECBOX_INSTANCE", format!("bench-{}", std::process::id()))
            .env("EXECBOX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting execbox serve");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        let mut server = Server {
            child,
            base: String::new(),
            _data_dir: data_dir,
        };
        match line.trim().strip_prefix("execbox listening on ") {
            Some(url) if read.is_ok() => server.base = url.to_string(),
            _ => panic!("execbox serve did not start (first stdout line: {line:?})"),
        }
        server
    }

    /// Say so if the server is gone: a request that cannot connect is then explained.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("server exited during the bench: {status}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so the service removes its instance cgroup; SIGKILL if it lingers.
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile (0..=100) of `samples`, nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[i]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Why the docker executor cannot be measured here, if it cannot: no engine, or the service's
/// docker executor does not offer python (image missing, probe failed).
pub fn docker_unusable(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
) -> Option<String> {
    match Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) => return Some(format!("cannot run `docker info` ({e})")),
        Ok(o) if !o.status.success() => {
            let why = String::from_utf8_lossy(&o.stderr);
            return Some(format!(
                "`docker info` failed ({}): {}",
                o.status,
                why.trim().lines().last().unwrap_or("")
            ));
        }
        Ok(_) => {}
    }
    let get = |path: &str| -> serde_json::Value {
        rt.block_on(async {
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"))
                .json()
                .await
                .expect("a JSON answer")
        })
    };
    let runtimes = get("/v1/runtimes");
    let python = runtimes["runtimes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["language"] == "python");
    let offered = python.is_some_and(|p| {
        p["executors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e == "docker")
    });
    if !offered {
        let ready = get("/readyz");
        return Some(format!(
            "the service's docker executor does not offer python ({}); build the images with `bash images/build.sh --if-missing`",
            ready["executors"]["docker"]["detail"].as_str().unwrap_or("docker executor disabled")
        ));
    }
    None
}
