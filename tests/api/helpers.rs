//! `spawn_app()`: the real service on a loopback port, started once per test binary and shared;
//! `TestApp::start()` for tests that need their own instance (killed on drop).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// `target/venv-NAME`, the pinned venv `.ci/venv.sh` makes from `.ci/venvs/NAME.txt` (it writes
/// `.requirements` last, after pip succeeded). Made here when missing or stale (pinned packages
/// from PyPI, about a minute), so the README's test command alone brings it; one test at a time
/// makes it. Still missing after that: a failure under `CI`, elsewhere a loud skip of `what`.
pub fn pinned_venv(name: &str, what: &str) -> Option<PathBuf> {
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join(format!("target/venv-{name}"));
    let pins = root.join(format!(".ci/venvs/{name}.txt"));
    let ready = || {
        dir.join("bin/python").is_file()
            && std::fs::read(&pins).ok() == std::fs::read(dir.join(".requirements")).ok()
    };
    if !ready() {
        let made = Command::new("bash")
            .arg(root.join(".ci/venv.sh"))
            .arg(name)
            .status();
        eprintln!(".ci/venv.sh {name}: {made:?}");
    }
    if ready() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing or not at its pins: .ci/venv.sh must run before the tests in CI",
            dir.display()
        );
    }
    eprintln!(
        "\n!!! SKIPPING {what}: no {}; run `.ci/venv.sh {name}` !!!\n",
        dir.display()
    );
    None
}

/// The secret in the service's own environment that no program may see.
pub const SERVICE_SECRET: &str = "hunter2-service-secret";

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub instance: String,
    pub data_dir: PathBuf,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Start `execbox serve` with extra `EXECBOX_*` settings; waits for its "listening" line.
    pub fn start(instance: &str, env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let mut app = Self::start_in(instance, &data_dir, env);
        app._dir = Some(dir);
        app
    }

    pub fn start_in(instance: &str, data_dir: &std::path::Path, env: &[(&str, &str)]) -> TestApp {
        ensure_images();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execbox"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("EXECBOX_INSTANCE", instance)
            .env("SECRET_TOKEN", SERVICE_SECRET)
            .env("EXECBOX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting execbox serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("execbox listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("execbox serve did not start: {line:?}")
            });
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        TestApp {
            base: addr.to_string(),
            port,
            instance: instance.to_string(),
            data_dir: data_dir.to_path_buf(),
            child,
            _dir: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM and wait, keeping what a graceful stop keeps (sandbox containers) for a restart
    /// of the same instance: the harness's own cleanup is skipped.
    pub fn stop_for_restart(mut self) -> std::process::ExitStatus {
        let status = self.terminate();
        std::mem::forget(self);
        status
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn execute(&self, body: Value) -> (u16, Value) {
        let r = client()
            .post(self.url("/v1/execute"))
            .json(&body)
            .send()
            .await
            .expect("request failed");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// POST /v1/execute and insist on a 200.
    pub async fn run(&self, body: Value) -> Value {
        let (status, v) = self.execute(body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = client().get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

impl Drop for TestApp {
    /// A graceful stop, so the service removes its cgroups and containers; SIGKILL after 10 s.
    /// Sandbox containers outlive a graceful stop by design; a test's are removed here.
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_containers_of(&self.instance);
    }
}

/// Remove every container labelled with a test instance.
pub fn remove_containers_of(instance: &str) {
    let _ = Command::new("/bin/sh")
        .args(["-c", &format!("ids=$(docker ps -aq --filter label=execbox.instance={instance}); [ -z \"$ids\" ] || docker rm -f $ids")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A client per call: every #[tokio::test] has its own runtime, and a pooled connection must not
/// outlive the runtime that opened it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The shared service of this test binary. Started from a thread that lives as long as the
/// process, and killed with it (PDEATHSIG), so no test leaves it behind.
pub fn spawn_app() -> &'static TestApp {
    static APP: OnceLock<&'static TestApp> = OnceLock::new();
    // Every test of the binary creates its sandboxes here, as the one built-in team.
    shared(
        &APP,
        "test",
        &[("EXECBOX_QUOTAS__MAX_SANDBOXES_PER_TEAM", "1000")],
    )
}

/// The model clients' settings of the agent tests: quick retries, a short timeout.
pub const AGENT_ENV: &[(&str, &str)] = &[
    ("EXECBOX_AGENT__MODEL_BACKOFF_MS", "20"),
    ("EXECBOX_AGENT__MODEL_MAX_RETRIES", "2"),
    ("EXECBOX_AGENT__MODEL_TIMEOUT_SECONDS", "2"),
    ("EXECBOX_AGENT__MAX_CONCURRENT_RUNS", "16"),
];

/// A second shared service, with [`AGENT_ENV`], for the agent tests.
pub fn agent_app() -> &'static TestApp {
    static APP: OnceLock<&'static TestApp> = OnceLock::new();
    shared(&APP, "agent", AGENT_ENV)
}

fn shared(
    cell: &'static OnceLock<&'static TestApp>,
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
) -> &'static TestApp {
    require_root();
    cell.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let app: &'static TestApp = Box::leak(Box::new(TestApp::start(
                &format!("{name}-{}", std::process::id()),
                env,
            )));
            tx.send(app).unwrap();
            loop {
                std::thread::park();
            }
        });
        let app = rx.recv().unwrap();
        kill_with_test_process(app.pid(), &app.instance);
        app
    })
}

/// Make sure the shared server dies when the test process ends, even though statics never drop:
/// a watchdog process waits for our pid to vanish, then kills the server.
fn kill_with_test_process(server: i32, instance: &str) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; kill -TERM {server} 2>/dev/null; \
         for i in $(seq 50); do kill -0 {server} 2>/dev/null || break; sleep 0.2; done; kill -9 {server} 2>/dev/null; \
         ids=$(docker ps -aq --filter label=execbox.instance={instance}); [ -z \"$ids\" ] || docker rm -f $ids"
    );
    // Deliberately not waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

/// The docker executor's images, built (offline when there is no registry) if missing, once per
/// test binary, so the test command alone brings what the tests need. Without a reachable engine
/// there is nothing to build; the docker tests then skip loudly (or fail in CI).
pub fn ensure_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let engine = Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !engine.is_ok_and(|s| s.success()) {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/images/build.sh");
        let built = Command::new("bash").args([script, "--if-missing"]).stdout(Stdio::null()).status();
        if !built.is_ok_and(|s| s.success()) {
            if std::env::var_os("CI").is_some() {
                panic!("images/build.sh --if-missing failed");
            }
            eprintln!("\n!!! images/build.sh --if-missing failed: the docker tests will skip !!!\n");
        }
        // gVisor, when runsc is installed: registered with the engine (quick when it is). CI
        // installs it first (.ci/run); elsewhere its absence makes the gvisor tests skip loudly.
        if std::path::Path::new("/usr/bin/runsc").exists() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/gvisor.sh");
            if !Command::new("bash").arg(script).stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
                eprintln!("\n!!! .ci/gvisor.sh could not register runsc with the engine: the gvisor tests will skip !!!\n");
            }
        }
    });
}

/// Containment needs root (cgroups, uid switch). In CI a missing root is a failure; elsewhere
/// the test stops with a loud message.
/// Whether this test may go on: true as root. Without root a test that needs it prints a loud
/// SKIPPING line and returns (so the tests that need no root still run); with `CI` set it fails.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: these tests must run as root in CI");
    }
    eprintln!("\n!!! SKIPPING {test}: it needs root (cgroups, namespaces, uid switch); run the tests as root !!!\n");
    false
}

/// The first line of every test that needs root: skips it loudly without root (see [`have_root`]).
macro_rules! needs_root {
    () => {
        if !$crate::helpers::have_root(module_path!()) {
            return;
        }
    };
}
pub(crate) use needs_root;

/// What the service and the sandboxes need: a test that reaches here without root forgot
/// `needs_root!()` at its top, and fails saying so rather than exiting the whole binary.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: start it with `needs_root!();`"
    );
}

/// Pids on the host whose command line contains `token`.
pub fn host_processes_with(token: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(token) {
                found.push(pid);
            }
        }
    }
    found
}

/// Run cgroups of `instance` still present on the host (v1: any controller; v2: below the
/// delegated root).
pub fn leftover_cgroups(instance: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ctl in ["memory", "pids", "cpuacct", "cpu,cpuacct"] {
        let dir = PathBuf::from("/sys/fs/cgroup")
            .join(ctl)
            .join("execbox")
            .join(instance);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path()),
            );
        }
    }
    out
}

pub fn token() -> String {
    format!("tok{}", uuid::Uuid::new_v4().simple())
}

pub fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {v}"))
        .to_string()
}

/// A test target beside the two executors: the docker executor under the `gvisor` policy
/// (runsc). Tests name a target; [`executor_of`] and [`policy_of`] make it a request's fields.
pub const GVISOR: &str = "gvisor";

/// The executor a target runs on.
pub fn executor_of(target: &str) -> &str {
    if target == GVISOR {
        "docker"
    } else {
        target
    }
}

/// The policy a target runs under.
pub fn policy_of(target: &str) -> &str {
    if target == GVISOR {
        "gvisor"
    } else {
        "default"
    }
}

/// The shared service, if `target` is ready on it. The docker executor needs the engine and
/// the images (`images/build.sh`), the gvisor target also runsc registered with the engine
/// (`.ci/gvisor.sh`); in CI their absence is a failure, elsewhere a loud skip.
pub async fn app_for(target: &str) -> Option<&'static TestApp> {
    let app = spawn_app();
    let executor = executor_of(target);
    let (_, ready) = app.get("/readyz").await;
    let runsc = &ready["executors"]["docker"]["features"]["oci_runtimes"]["runsc"];
    let (ok, why) = match target {
        GVISOR if ready["executors"][executor]["ready"] == true => (
            runsc["ready"] == true,
            format!("runsc: {}", runsc["detail"]),
        ),
        _ => (
            ready["executors"][executor]["ready"] == true,
            ready["executors"][executor]["detail"].to_string(),
        ),
    };
    if ok {
        return Some(app);
    }
    if std::env::var_os("CI").is_some() {
        panic!("the {target} target is not ready in CI: {why}");
    }
    eprintln!("\n!!! SKIPPING a {target} test: it is not ready here ({why}) !!!\n");
    None
}

/// Generate one test per executor for each named `async fn name(executor: &str)`.
macro_rules! on_both_executors {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[tokio::test] async fn $name() { $crate::helpers::needs_root!(); super::$name("local").await } )*
        }
        mod docker {
            $( #[tokio::test] async fn $name() { $crate::helpers::needs_root!(); super::$name("docker").await } )*
        }
    };
}
pub(crate) use on_both_executors;

/// Generate one test on the gvisor target (docker under runsc) for each named
/// `async fn name(target: &str)`.
macro_rules! on_gvisor {
    ($($name:ident),* $(,)?) => {
        mod gvisor {
            $( #[tokio::test] async fn $name() { $crate::helpers::needs_root!(); super::$name(crate::helpers::GVISOR).await } )*
        }
    };
}
pub(crate) use on_gvisor;

/// One parsed Server-Sent Event and when it arrived.
pub struct Ev {
    pub event: String,
    pub data: Value,
    pub at: std::time::Instant,
}

/// Read events until `stop` says so (or the stream ends).
pub async fn read_events(resp: reqwest::Response, stop: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    use futures::StreamExt;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() {
                continue; // a keepalive comment
            }
            let ev = Ev {
                event,
                data: serde_json::from_str(&data).expect("event data is JSON"),
                at: std::time::Instant::now(),
            };
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }
    out
}

/// Create a sandbox with `body`; its id (201 asserted).
pub async fn create_sandbox_with(app: &TestApp, body: Value) -> String {
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    s(&v, "id")
}

/// A sandbox call that must answer 200; its body.
pub async fn sandbox_call_ok(app: &TestApp, id: &str, body: Value) -> Value {
    let r = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

/// A new API key for `team` in the store of `data_dir` (`execbox keys create`; a running
/// service sees it at once): the last line it prints.
pub fn create_key(data_dir: &std::path::Path, team: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", team, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(key.starts_with("exb_") && key.len() == 68, "{key}");
    key
}
