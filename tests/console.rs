//! The web console in a real browser: headless Chromium from Debian's packages, driven over
//! WebDriver (chromedriver, on a loopback port) against the real service. The tests run code and
//! watch its output stream in, work in a sandbox (upload, edit, download, run, a context, a
//! background process), follow an agent run against a scripted OpenAI-compatible server on
//! loopback to its end through an approval, read the Service page, and sign in with an API key;
//! an API error is shown as the API's message. Each page is saved as a screenshot at 1280x800
//! and at a phone's 390x844 in `target/console-screenshots/` (with `EXECBOX_CONSOLE_DOCS=1`,
//! also the README's in `docs/console/`), and at the phone's width no page scrolls sideways.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`) the tests skip loudly; under `CI` they fail. One browser at a time: the
//! tests take turns.

#[path = "api/helpers.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod helpers;
#[path = "api/scripted_model.rs"]
mod scripted_model;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use helpers::*;
use scripted_model::{Reply, ScriptedModel};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);
const WAIT: Duration = Duration::from_secs(45);

/// One browser at a time: two CPUs do not run two Chromiums and the service well.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the browser is installed; without it a loud skip, or a failure under `CI`.
fn have_browser(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {CHROMIUM} and {CHROMEDRIVER} are needed in CI (apt-get install chromium chromium-driver; .ci/run does)");
    }
    eprintln!("\n!!! SKIPPING {test}: no {CHROMIUM} or {CHROMEDRIVER}; apt-get install chromium chromium-driver !!!\n");
    false
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Helpers every script gets: `q(testid)` and `qa(testid)` find by data-testid.
const PRELUDE: &str = "const q = (id, root = document) => root.querySelector(`[data-testid=\"${id}\"]`);\n\
                       const qa = (id, root = document) => [...root.querySelectorAll(`[data-testid=\"${id}\"]`)];\n";

/// chromedriver (in a process group of its own, with the Chromium it starts) and one session.
struct Browser {
    client: Client,
    driver: Child,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let downloads = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--force-color-profile=srgb",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            ],
            "prefs": {
                "download.default_directory": downloads.path(),
                "download.prompt_for_download": false,
            },
        }});
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let mut browser = Browser {
            client: builder
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
                .expect("a WebDriver session with headless Chromium"),
            driver,
            downloads,
            _profile: profile,
        };
        browser.size(DESKTOP).await;
        browser
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Run `body` (with [`PRELUDE`]) in the page; its return value.
    async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(&format!("{PRELUDE}{body}"), args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Poll `body` until it returns something other than null, false or undefined; that value.
    async fn wait(&self, what: &str, body: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(body, vec![]).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            if Instant::now() > deadline {
                self.shot("failure").await;
                let page = self
                    .js("return document.getElementById('main').innerText", vec![])
                    .await;
                panic!(
                    "waited {WAIT:?} for {what}; the page says:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element with this data-testid, once it is there.
    async fn el(&self, testid: &str) -> fantoccini::elements::Element {
        self.wait(
            &format!("[data-testid={testid}]"),
            &format!("return q('{testid}') !== null"),
        )
        .await;
        self.client
            .find(Locator::Css(&format!("[data-testid=\"{testid}\"]")))
            .await
            .unwrap()
    }

    async fn click(&self, testid: &str) {
        self.el(testid).await.click().await.unwrap();
    }

    /// Type into a field (cleared first), as a person would.
    async fn type_into(&self, testid: &str, text: &str) {
        let el = self.el(testid).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Set a field's whole value (for multi-line text the editor would auto-indent as typed).
    async fn set(&self, testid: &str, value: &str) {
        self.el(testid).await;
        self.js(
            &format!("const el = q('{testid}'); el.focus(); el.value = arguments[0]; el.dispatchEvent(new Event('input', {{bubbles: true}}));"),
            vec![json!(value)],
        )
        .await;
    }

    async fn choose(&self, testid: &str, value: &str) {
        self.el(testid).await.select_by_value(value).await.unwrap();
    }

    /// The textContent of the element with this data-testid (exact, unlike rendered text).
    async fn text(&self, testid: &str) -> String {
        self.el(testid).await;
        let v = self
            .js(&format!("return q('{testid}').textContent"), vec![])
            .await;
        v.as_str().unwrap().to_string()
    }

    /// Resize the viewport; the page then is exactly this size.
    async fn size(&mut self, (w, h): (u32, u32)) {
        self.client.set_window_size(w, h).await.unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", vec![])
            .await;
        let (iw, ih) = (
            inner[0].as_u64().unwrap() as u32,
            inner[1].as_u64().unwrap() as u32,
        );
        if (iw, ih) != (w, h) {
            // The window's frame took some: grow it by the difference.
            self.client
                .set_window_size(w + (w - iw), h + (h - ih))
                .await
                .unwrap();
        }
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", vec![])
            .await;
        assert_eq!(inner, json!([w, h]), "the viewport");
    }

    /// Save the viewport as `<name>-<w>x<h>.png`.
    async fn shot(&self, name: &str) {
        let size = self
            .js(
                "return `${window.innerWidth}x${window.innerHeight}`",
                vec![],
            )
            .await;
        let file = format!("{name}-{}.png", size.as_str().unwrap());
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshots().join(&file), &png).unwrap();
        if std::env::var_os("EXECBOX_CONSOLE_DOCS").is_some() && name != "failure" {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(&file), &png).unwrap();
        }
    }

    /// The page at the phone's width: its screenshot, and nothing wider than the screen (the
    /// tables scroll inside their boxes; the page itself never sideways). Back to the desktop.
    async fn on_a_phone(&mut self, name: &str) {
        self.size(PHONE).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let widths = self
            .js(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await;
        if widths[0] != widths[1] {
            self.shot(&format!("failure-{name}")).await;
            // The innermost elements that stick out, to say what is too wide.
            let wide = self
                .js(
                    "const out = (e) => e.getBoundingClientRect().right > window.innerWidth + 0.5;
                     const clipped = (e) => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
                     return [...document.querySelectorAll('body *')]
                        .filter((e) => out(e) && !clipped(e))
                        .filter((e) => ![...e.children].some((c) => out(c) && !clipped(c)))
                        .slice(0, 8)
                        .map((e) => `${e.tagName.toLowerCase()}.${e.className} [${e.dataset.testid || ''}] right=${Math.round(e.getBoundingClientRect().right)}`)
                        .concat((() => {
                            const texts = [];
                            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                            for (let t = walk.nextNode(); t; t = walk.nextNode()) {
                                const r = document.createRange();
                                r.selectNodeContents(t);
                                const right = r.getBoundingClientRect().right;
                                if (right > window.innerWidth + 0.5 && !clipped(t.parentElement) && getComputedStyle(t.parentElement).overflowX === 'visible')
                                    texts.push(`text ${JSON.stringify(t.textContent.slice(0, 40))} in ${t.parentElement.tagName.toLowerCase()}.${t.parentElement.className} right=${Math.round(right)}`);
                            }
                            return texts.slice(0, 8);
                        })())",
                    vec![],
                )
                .await;
            panic!("{name} scrolls sideways at {PHONE:?} ({widths}); too wide: {wide:#}");
        }
        self.shot(name).await;
        self.size(DESKTOP).await;
    }

    /// Every visible control has a name: a label, an aria-label, or (a button) its text.
    async fn every_control_is_labelled(&self, page: &str) {
        let unlabelled = self
            .js(
                "return [...document.querySelectorAll('input, select, textarea, button')]
                    .filter((e) => e.offsetParent !== null)
                    .filter((e) => e.tagName === 'BUTTON'
                        ? !(e.textContent.trim() || e.getAttribute('aria-label'))
                        : !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                    .map((e) => e.outerHTML.slice(0, 120))",
                vec![],
            )
            .await;
        assert_eq!(unlabelled, json!([]), "unlabelled controls on {page}");
    }

    /// A file the browser downloaded, once it is whole.
    async fn downloaded(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.path().join(name);
        let deadline = Instant::now() + WAIT;
        loop {
            let partial = std::fs::read_dir(self.downloads.path()).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".crdownload")
            });
            if path.exists() && !partial {
                return std::fs::read(&path).unwrap();
            }
            assert!(Instant::now() < deadline, "{name} was not downloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    /// chromedriver and every Chromium process it started: its process group.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn run_page_streams_the_output_then_shows_the_result() {
    needs_root!();
    if !have_browser("run_page_streams_the_output_then_shows_the_result") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = spawn_app();
    let mut b = Browser::start().await;
    b.goto(&app.url("/#/run")).await;
    // Without auth it opens directly, as the built-in team.
    assert_eq!(b.text("team").await, "default");
    b.el("code").await;
    assert_eq!(
        b.js("return q('api-key') === null", vec![]).await,
        json!(true)
    );
    b.choose("executor", "local").await;
    b.choose("language", "python").await;
    b.set(
        "code",
        "import sys, time\nprint('first', input(), sys.argv[1:], flush=True)\ntime.sleep(2)\nprint('second')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)\n",
    )
    .await;
    b.set("stdin", "ada\n").await;
    b.set("args", "x\ny z").await;
    b.click("run").await;

    // The first line arrives while the run still runs: it streamed.
    let seen = b
        .wait(
            "the first line of stdout",
            "const out = q('stdout').textContent; return out ? [out, q('status').textContent] : null",
        )
        .await;
    assert_eq!(seen, json!(["first ada ['x', 'y z']\n", "running"]));
    b.wait("the result", "return q('status').textContent === 'error'")
        .await;
    assert_eq!(b.text("stdout").await, "first ada ['x', 'y z']\nsecond\n");
    assert_eq!(b.text("stderr").await, "to stderr\n");
    assert_eq!(b.text("exit-code").await, "3");
    assert_eq!(b.text("signal").await, "—");
    b.every_control_is_labelled("Run").await;
    b.shot("run").await;
    b.on_a_phone("run").await;

    // The editor: Tab indents, Enter keeps the indentation, the gutter numbers the lines, and
    // Escape then Tab leaves it for the next field.
    b.set("code", "").await;
    let code = b.el("code").await;
    code.send_keys(&Key::Tab).await.unwrap();
    assert_eq!(b.js("return q('code').value", vec![]).await, "    ");
    b.set("code", "").await;
    code.send_keys(&format!("if True:{}print(1)", &*Key::Enter))
        .await
        .unwrap();
    assert_eq!(
        b.js("return q('code').value", vec![]).await,
        "if True:\n    print(1)"
    );
    assert_eq!(
        b.js(
            "return q('code').parentElement.querySelector('.gutter').textContent",
            vec![]
        )
        .await,
        "1\n2"
    );
    code.send_keys(&format!("{}{}", &*Key::Escape, &*Key::Tab))
        .await
        .unwrap();
    assert_eq!(
        b.js("return document.activeElement.dataset.testid", vec![])
            .await,
        "stdin"
    );
    b.close().await;
}

#[tokio::test]
async fn an_api_error_is_shown_as_the_apis_message() {
    needs_root!();
    if !have_browser("an_api_error_is_shown_as_the_apis_message") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = spawn_app();
    // What the API answers a wall time over the default policy's maximum.
    let (status, refused) = post(
        app,
        "/v1/execute",
        json!({"language": "python", "code": "print(1)", "executor": "local", "policy": "default", "limits": {"wall_time_ms": 999999}}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();

    let b = Browser::start().await;
    b.goto(&app.url("/#/run")).await;
    b.el("code").await;
    b.choose("executor", "local").await;
    b.choose("language", "python").await;
    b.choose("policy", "default").await;
    b.set("code", "print(1)").await;
    b.js(
        "document.querySelector('details.limits').open = true",
        vec![],
    )
    .await;
    b.type_into("limit-wall_time_ms", "999999").await;
    b.click("run").await;
    b.wait("the error", "return !q('error').hidden").await;
    assert_eq!(b.text("error").await, message);
    assert_eq!(b.text("status").await, "not run");
    assert_eq!(b.text("stdout").await, "");
    b.close().await;
}

#[tokio::test]
async fn a_sandbox_is_made_filled_edited_downloaded_run_and_deleted() {
    needs_root!();
    if !have_browser("a_sandbox_is_made_filled_edited_downloaded_run_and_deleted") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = spawn_app();
    let mut b = Browser::start().await;
    let owner = token();
    b.goto(&app.url("/#/sandboxes")).await;
    b.choose("sandbox-executor", "local").await;
    b.set("sandbox-metadata", &format!("owner={owner}")).await;
    b.click("sandbox-create").await;
    let id = b
        .wait(
            "the new sandbox's row",
            &format!("const row = qa('sandbox-row').find((r) => r.textContent.includes('owner={owner}')); return row ? row.dataset.id : null"),
        )
        .await;
    let id = id.as_str().unwrap().to_string();
    let (status, sb) = app.get(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(sb["metadata"], json!({"owner": owner}));
    assert_eq!(
        (sb["executor"].as_str(), sb["policy"].as_str()),
        (Some("local"), Some("default"))
    );
    b.el("sandbox-list").await;
    b.every_control_is_labelled("Sandboxes").await;
    b.shot("sandboxes").await;
    b.on_a_phone("sandboxes").await;

    // Keep it alive from the list: its expiry moves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.js(&format!("qa('sandbox-row').find((r) => r.dataset.id === '{id}').querySelector('[data-testid=\"sandbox-keepalive\"]').click()"), vec![]).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, now) = app.get(&format!("/v1/sandboxes/{id}")).await;
        if now["expires_at"] != sb["expires_at"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keepalive did not move {}",
            sb["expires_at"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Inside it: upload a file into a folder.
    b.goto(&app.url(&format!("/#/sandboxes/{id}"))).await;
    b.wait(
        "an empty work dir",
        "return q('file-list').textContent === 'The work dir is empty.'",
    )
    .await;
    let local = tempfile::tempdir().unwrap();
    let upload = local.path().join("greeting.txt");
    std::fs::write(&upload, "hello from the browser\n").unwrap();
    b.type_into("upload-dir", "notes").await;
    b.el("file-upload")
        .await
        .send_keys(upload.to_str().unwrap())
        .await
        .unwrap();
    b.wait(
        "the uploaded file's row",
        "return qa('file-row').some((r) => r.dataset.path === 'notes/greeting.txt')",
    )
    .await;
    let file_url = app.url(&format!("/v1/sandboxes/{id}/files/notes/greeting.txt"));
    let on_the_service = || async {
        client()
            .get(&file_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(on_the_service().await, "hello from the browser\n");

    // Open it, edit it, save it.
    b.js("qa('file-row').find((r) => r.dataset.path === 'notes/greeting.txt').querySelector('[data-testid=\"file-open\"]').click()", vec![]).await;
    b.wait(
        "the file in the editor",
        "const t = q('file-content'); return t && t.value === 'hello from the browser\\n'",
    )
    .await;
    b.set("file-content", "").await;
    b.el("file-content")
        .await
        .send_keys("edited in the browser")
        .await
        .unwrap();
    b.click("file-save").await;
    b.wait(
        "the save",
        "return q('file-status').textContent.startsWith('Saved')",
    )
    .await;
    assert_eq!(
        b.text("file-status").await,
        "Saved notes/greeting.txt (21 B)."
    );
    assert_eq!(on_the_service().await, "edited in the browser");

    // Download it, and the whole work dir.
    b.js("qa('file-row').find((r) => r.dataset.path === 'notes/greeting.txt').querySelector('[data-testid=\"file-download\"]').click()", vec![]).await;
    assert_eq!(b.downloaded("greeting.txt").await, b"edited in the browser");
    b.click("archive-download").await;
    let tar = b.downloaded(&format!("{id}.tar")).await;
    let mut archive = tar::Archive::new(&tar[..]);
    let mut found = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("notes/greeting.txt") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            found = Some(text);
        }
    }
    assert_eq!(found.as_deref(), Some("edited in the browser"));

    // Run code in it that reads the file.
    b.choose("language", "python").await;
    b.set("code", "print(open('notes/greeting.txt').read().upper())")
        .await;
    b.click("sandbox-run").await;
    b.wait(
        "the call's result",
        "return q('status').textContent === 'ok'",
    )
    .await;
    assert_eq!(b.text("stdout").await, "EDITED IN THE BROWSER\n");

    // A stateful context keeps a variable from one call to the next.
    b.click("context-create").await;
    b.wait(
        "the context chosen",
        "return q('context').value.startsWith('ctx_')",
    )
    .await;
    b.set("code", "x = 41").await;
    b.click("sandbox-run").await;
    b.wait(
        "the first context call",
        "return q('status').textContent === 'ok'",
    )
    .await;
    b.set("code", "x + 1").await;
    b.click("sandbox-run").await;
    b.wait("the second context call", "return q('display') !== null")
        .await;
    assert_eq!(b.text("display").await, "42");

    // A background process, and its logs.
    b.type_into("process-command", "python3 -c print(6*7)")
        .await;
    b.click("process-start").await;
    b.wait(
        "the process to end",
        "const s = q('process-state'); return s && s.textContent.startsWith('exited')",
    )
    .await;
    assert_eq!(b.text("process-stdout").await, "42\n");
    assert_eq!(b.text("process-state").await, "exited: exit code 0");
    b.every_control_is_labelled("a sandbox").await;
    b.js("window.scrollTo(0, 0)", vec![]).await;
    b.shot("sandbox").await;
    b.on_a_phone("sandbox").await;

    // Delete it: a second press confirms.
    b.click("sandbox-delete").await;
    assert_eq!(b.text("sandbox-delete").await, "Really delete?");
    b.click("sandbox-delete").await;
    b.wait("the list again", "return location.hash === '#/sandboxes'")
        .await;
    let (status, _) = app.get(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(status, 404);
    b.close().await;
}

/// Start a run from the form against the scripted model; its id, from the page it opens.
async fn start_agent_run(b: &Browser, app: &TestApp, model: &ScriptedModel, task: &str) -> String {
    b.goto(&app.url("/#/agent")).await;
    b.type_into("agent-task", task).await;
    b.type_into("agent-model", "scripted-model").await;
    b.type_into("agent-base-url", &model.base_url_openai).await;
    b.choose("agent-executor", "local").await;
    b.click("agent-approval").await;
    b.click("agent-start").await;
    let id = b
        .wait(
            "the run's page",
            "const m = location.hash.match(/^#\\/agent\\/(ar_.+)$/); return m && m[1]",
        )
        .await;
    id.as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_agent_run_is_watched_approved_and_reaches_its_end() {
    needs_root!();
    if !have_browser("an_agent_run_is_watched_approved_and_reaches_its_end") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = spawn_app();
    let mut b = Browser::start().await;
    let model = ScriptedModel::start(vec![
        Reply::TextWithUsage(
            "I'll compute it.\n```python\nprint(6 * 7)\n```".into(),
            40,
            12,
        ),
        Reply::TextWithUsage("It printed 42. TERMINATE".into(), 70, 6),
    ]);
    b.goto(&app.url("/#/agent")).await;
    b.el("agent-task").await;
    b.every_control_is_labelled("Agent runs").await;
    let id = start_agent_run(&b, app, &model, "Print six times seven").await;

    // The block waits for approval; approve it from the page.
    b.wait(
        "the approval buttons",
        "const a = q('agent-approve'); return a && a.offsetParent !== null",
    )
    .await;
    assert_eq!(b.text("agent-state").await, "running, awaiting approval");
    b.shot("agent-approval").await;
    b.click("agent-approve").await;
    b.wait(
        "the end of the run",
        "return q('agent-state').textContent === 'finished'",
    )
    .await;
    assert_eq!(b.text("agent-stop-reason").await, "text_mention: TERMINATE");
    assert_eq!(b.text("agent-tokens").await, "110 / 18 / 128");
    assert_eq!(b.text("agent-stdout").await, "42\n");
    assert_eq!(b.text("agent-decision").await, "Approved");

    // The page shows every message of the run, in order.
    let (status, run) = app.get(&format!("/v1/agent/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["state"], "finished");
    let api_types: Vec<Value> = run["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].clone())
        .collect();
    let shown = b
        .js(
            "return qa('agent-message').map((m) => m.dataset.type)",
            vec![],
        )
        .await;
    assert_eq!(shown, Value::Array(api_types));
    assert_eq!(
        shown,
        json!([
            "task",
            "text",
            "approval_request",
            "approval_decision",
            "code_execution",
            "text",
            "text"
        ])
    );
    assert_eq!(model.requests().len(), 2);
    b.js("window.scrollTo(0, 0)", vec![]).await;
    b.shot("agent-run").await;
    b.on_a_phone("agent-run").await;

    // It is in the list of past runs, with its state, stop reason and tokens.
    b.goto(&app.url("/#/agent")).await;
    let row = b
        .wait(
            "the run in the list",
            &format!("const r = qa('agent-run-row').find((r) => r.dataset.id === '{id}'); return r && [q('agent-run-state', r).textContent, q('agent-run-tokens', r).textContent, r.textContent.includes('text_mention: TERMINATE')]"),
        )
        .await;
    assert_eq!(row, json!(["finished", "110 / 18 / 128", true]));
    b.shot("agent").await;
    b.on_a_phone("agent").await;

    // A second run, cancelled while it waits for approval.
    let held = ScriptedModel::start(vec![Reply::text("```python\nprint('never')\n```")]);
    let id = start_agent_run(&b, app, &held, "Wait for me").await;
    b.wait(
        "the approval buttons",
        "const a = q('agent-approve'); return a && a.offsetParent !== null",
    )
    .await;
    b.click("agent-cancel").await;
    b.wait(
        "the cancel",
        "return q('agent-state').textContent === 'cancelled'",
    )
    .await;
    let (_, run) = app.get(&format!("/v1/agent/runs/{id}")).await;
    assert_eq!(
        (run["state"].as_str(), run["stop_reason"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    b.close().await;
}

#[tokio::test]
async fn the_service_page_shows_readiness_runtimes_policies_and_quota_use() {
    needs_root!();
    if !have_browser("the_service_page_shows_readiness_runtimes_policies_and_quota_use") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = spawn_app();
    let mut b = Browser::start().await;
    b.goto(&app.url("/#/service")).await;
    b.el("service-policies").await;
    let (_, team) = app.get("/v1/team").await;
    let (_, ready) = app.get("/readyz").await;
    let (_, runtimes) = app.get("/v1/runtimes").await;
    let (_, policies) = app.get("/v1/policies").await;
    assert_eq!(b.text("service-team-name").await, "default");
    let quotas = b.js("return qa('quota-row').map((r) => [q('quota-used', r).textContent, q('quota-limit', r).textContent])", vec![]).await;
    let shown = |q: &Value| {
        json!([
            q["used"].to_string(),
            q["limit"]
                .as_u64()
                .map_or("unlimited".to_string(), |l| l.to_string())
        ])
    };
    assert_eq!(
        quotas,
        json!([
            shown(&team["quotas"]["concurrent_runs"]),
            shown(&team["quotas"]["sandboxes"]),
            shown(&team["quotas"]["agent_runs"])
        ])
    );
    let readiness = b.js("return Object.fromEntries(qa('executor-card').map((c) => [c.dataset.executor, q('executor-ready', c).textContent]))", vec![]).await;
    for (name, r) in ready["executors"].as_object().unwrap() {
        let expected = match (
            r["ready"].as_bool().unwrap(),
            r["degraded"].as_bool().unwrap_or(false),
        ) {
            (true, false) => "ready",
            (true, true) => "ready, degraded",
            (false, _) => "not ready",
        };
        assert_eq!(readiness[name], expected, "{name}");
    }
    let versions = b.js("return qa('runtime-row').map((r) => [r.dataset.language, r.querySelector('[data-executor=\"local\"]').textContent])", vec![]).await;
    let expected: Vec<Value> = runtimes["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["language"],
                r["versions"]["local"].as_str().unwrap_or("—")
            ])
        })
        .collect();
    assert_eq!(versions, Value::Array(expected));
    let names = b
        .js(
            "return qa('policy-row').map((r) => r.dataset.policy)",
            vec![],
        )
        .await;
    let expected: Vec<Value> = policies["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, Value::Array(expected));
    let default_maxima = b.js("return q('policy-maxima', document.querySelector('[data-policy=\"default\"]')).textContent", vec![]).await;
    assert_eq!(
        default_maxima,
        "wall 300 s · CPU 300 s · memory 2 GiB · pids 512 · output 16 MiB · disk 1 GiB"
    );
    b.shot("service").await;
    b.on_a_phone("service").await;
    b.close().await;
}

#[tokio::test]
async fn with_api_keys_it_asks_for_a_key_and_shows_the_keys_team() {
    needs_root!();
    if !have_browser("with_api_keys_it_asks_for_a_key_and_shows_the_keys_team") {
        return;
    }
    let _turn = TURN.lock().await;
    let app = TestApp::start(
        &format!("console-auth-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let key = create_key(&app.data_dir, "console-team");
    let wrong = format!("exb_{}", "0".repeat(64));
    let r = client()
        .get(app.url("/v1/team"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let refusal: Value = r.json().await.unwrap();

    let mut b = Browser::start().await;
    b.goto(&app.url("/")).await;
    b.el("api-key").await;
    assert_eq!(
        b.js("return document.getElementById('nav').hidden", vec![])
            .await,
        json!(true)
    );
    b.type_into("api-key", &wrong).await;
    b.click("api-key-submit").await;
    b.wait("the refusal", "return !q('error').hidden").await;
    assert_eq!(
        b.text("error").await,
        refusal["error"]["message"].as_str().unwrap()
    );
    b.every_control_is_labelled("Sign in").await;
    b.shot("signin").await;
    b.on_a_phone("signin").await;

    b.type_into("api-key", &key).await;
    b.el("api-key").await.send_keys(&Key::Enter).await.unwrap();
    b.wait(
        "the team",
        "return q('team').textContent === 'console-team'",
    )
    .await;
    b.el("code").await;
    // The key lives in this tab's session: a reload keeps it, signing out forgets it.
    b.client.refresh().await.unwrap();
    b.wait(
        "the team after a reload",
        "return q('team') && q('team').textContent === 'console-team' && q('code') !== null",
    )
    .await;
    assert_eq!(
        b.js("return sessionStorage.getItem('execbox.apiKey')", vec![])
            .await,
        json!(key)
    );
    b.js("document.getElementById('sign-out').click()", vec![])
        .await;
    b.el("api-key").await;
    assert_eq!(
        b.js("return sessionStorage.getItem('execbox.apiKey')", vec![])
            .await,
        Value::Null
    );
    b.close().await;
}
