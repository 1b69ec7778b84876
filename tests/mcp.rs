//! The MCP door, driven by real third-party clients: the official MCP Python SDK in its 1.x line
//! (which starts with `initialize`) and its 2.x line (which probes `server/discover` first and
//! falls back), each over stdio (`execbox mcp`) and over streamable HTTP (`/mcp` of `execbox
//! serve`), and AutoGen's McpWorkbench (autogen-ext[mcp], on the 1.x SDK) over both. The clients
//! come from the pinned venvs `.ci/venvs/mcp1.txt` and `mcp2.txt` (target/venv-mcp1, -mcp2);
//! without them these tests skip loudly, and fail under `CI`. The Python scripts in tests/mcp/
//! only drive their client and print what it got; every assertion is here.

#[path = "api/helpers.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod helpers;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use helpers::*;

/// The python of venv `name` (`mcp1` or `mcp2`).
fn python(name: &str) -> Option<PathBuf> {
    Some(pinned_venv(name, "an MCP client test")?.join("bin/python"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// Run `script_name` with the venv's `python`, `input` as JSON on its stdin; what it printed.
/// A stdio server is the script's child and inherits its environment, `env` included.
fn drive(
    python: &Path,
    script_name: &str,
    args: &[String],
    env: &[(&str, &str)],
    input: &Value,
) -> Value {
    let mut child = Command::new(python)
        .arg(script(script_name))
        .args(args)
        .env("EXECBOX_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the client script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script_name} {args:?} failed: {printed}"
    );
    serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed}"))
}

/// `drive.py stdio` arguments: `execbox mcp` over a data dir of its own.
fn stdio_args(data_dir: &Path, executor: &str) -> Vec<String> {
    let mut args = vec![
        "stdio".to_string(),
        env!("CARGO_BIN_EXE_execbox").to_string(),
    ];
    args.extend(["mcp", "--executor", executor, "--data-dir"].map(String::from));
    args.push(data_dir.display().to_string());
    args
}

fn http_args(app: &TestApp, key: Option<&str>) -> Vec<String> {
    let mut args = vec!["http".to_string(), app.url("/mcp")];
    args.extend(key.map(String::from));
    args
}

const TOOLS: &[&str] = &[
    "execute",
    "create_sandbox",
    "sandbox_execute",
    "create_context",
    "write_file",
    "read_file",
    "list_files",
    "delete_sandbox",
];

/// A program that shows its args, a file, its stdin and stderr, and exits 3.
const PROGRAM: &str = "import sys
print('hello', sys.argv[1])
print(open('data/x.txt').read(), end='')
print(sys.stdin.read().upper(), end='')
print('to stderr', file=sys.stderr)
sys.exit(3)
";

const PROGRAM_TEXT: &str = "status: error\nexit_code: 3\n--- stdout ---\nhello world\nfrom a file\nABC\n--- stderr ---\nto stderr\n";

/// The scenario every client goes through, as drive.py's plan.
fn plan() -> Value {
    json!([
        {"tool": "execute", "arguments": {"language": "python", "code": PROGRAM, "args": ["world"],
            "stdin": "abc\n", "files": [{"path": "data/x.txt", "content": "from a file\n"}], "timeout_ms": 10000}},
        {"tool": "execute", "arguments": {"language": "cobol", "code": "DISPLAY 'HI'."}},
        {"tool": "execute", "arguments": {"language": "python"}},
        {"tool": "create_sandbox", "arguments": {"ttl_seconds": 600}, "save": {"sb": "id"}},
        {"tool": "write_file", "arguments": {"sandbox_id": "${sb}", "path": "notes/a.txt", "content": "line one\n"}},
        {"tool": "sandbox_execute", "arguments": {"sandbox_id": "${sb}", "language": "bash",
            "code": "cat notes/a.txt; printf made > out.txt"}},
        {"tool": "read_file", "arguments": {"sandbox_id": "${sb}", "path": "out.txt"}},
        {"tool": "list_files", "arguments": {"sandbox_id": "${sb}"}},
        {"tool": "create_context", "arguments": {"sandbox_id": "${sb}"}, "save": {"ctx": "id"}},
        {"tool": "sandbox_execute", "arguments": {"sandbox_id": "${sb}", "language": "python",
            "context": "${ctx}", "code": "x = 41\nprint('set')"}},
        {"tool": "sandbox_execute", "arguments": {"sandbox_id": "${sb}", "language": "python",
            "context": "${ctx}", "code": "x + 1"}},
        {"tool": "sandbox_execute", "arguments": {"sandbox_id": "${sb}", "language": "python",
            "context": "${ctx}", "code": "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n_ = plt.plot([1, 2, 3])"}},
        {"tool": "delete_sandbox", "arguments": {"sandbox_id": "${sb}"}},
        {"tool": "read_file", "arguments": {"sandbox_id": "${sb}", "path": "out.txt"}},
        {"tool": "no_such_tool", "arguments": {}},
        {"tool": "execute", "arguments": {"language": "python", "code": "import time\nprint('slow')\ntime.sleep(5)",
            "timeout_ms": 300}},
    ])
}

/// The one text block of an answer.
fn text(answer: &Value) -> &str {
    let content = answer["content"].as_array().expect("content");
    assert_eq!(content[0]["type"], "text", "{answer}");
    content[0]["text"].as_str().unwrap()
}

fn is_error(answer: &Value) -> bool {
    answer["isError"].as_bool().unwrap_or(false)
}

/// The API's own error for the same request, to compare the tool's with.
async fn api_error(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> Value {
    let r = client()
        .request(method, app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    r.json::<Value>().await.unwrap()["error"].clone()
}

/// Everything the scenario must have answered, whatever the client and transport (`local_only`:
/// the server runs the local executor alone).
async fn check_scenario(out: &Value, api: &TestApp, local_only: bool) {
    // The tools, each with its schema (inlined: clients hand `properties` to models as is).
    let tools = out["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, TOOLS);
    for t in tools {
        let schema = &t["inputSchema"];
        assert_eq!(schema["type"], "object", "{t}");
        assert_eq!(schema["additionalProperties"], false, "{t}");
        assert!(!schema.to_string().contains("$ref"), "{t}");
        assert!(!t["description"].as_str().unwrap().is_empty());
    }
    let execute = &tools[0]["inputSchema"];
    assert_eq!(execute["required"], json!(["language", "code"]));
    let props: Vec<&String> = execute["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        props,
        [
            "args",
            "code",
            "executor",
            "files",
            "language",
            "policy",
            "stdin",
            "timeout_ms"
        ]
    );
    assert_eq!(execute["properties"]["timeout_ms"]["minimum"], 1);
    assert_eq!(
        execute["properties"]["files"]["items"]["required"],
        json!(["path", "content"])
    );
    assert_eq!(
        execute["properties"]["files"]["items"]["properties"]["encoding"]["enum"],
        json!(["utf8", "base64"])
    );
    // The languages it names are those the server's executors serve (`execbox mcp` here has
    // only the local one), as GET /v1/runtimes lists them.
    let (_, runtimes) = api.get("/v1/runtimes").await;
    let mut served: Vec<&str> = runtimes["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !local_only || r["executors"].as_array().unwrap().contains(&json!("local")))
        .map(|r| r["language"].as_str().unwrap())
        .collect();
    served.sort();
    let language = execute["properties"]["language"]["description"]
        .as_str()
        .unwrap();
    assert!(
        language.ends_with(&format!("Available: {}.", served.join(", "))),
        "{language}"
    );
    assert_eq!(tools[3]["inputSchema"]["required"], json!(["sandbox_id"]));
    assert_eq!(tools[6]["annotations"]["readOnlyHint"], true);
    assert_eq!(tools[7]["annotations"]["destructiveHint"], true);

    let a = out["answers"].as_array().unwrap();
    assert_eq!(a.len(), 16, "{out}");
    // execute: the run as text, the whole result as structured content; exit 3 is a result.
    assert!(!is_error(&a[0]), "{}", a[0]);
    assert_eq!(text(&a[0]), PROGRAM_TEXT);
    let run = &a[0]["structuredContent"];
    assert_eq!(run["status"], "error");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["stdout"], "hello world\nfrom a file\nABC\n");
    assert_eq!(run["stderr"], "to stderr\n");
    assert_eq!(
        (&run["language"], &run["executor"]),
        (&json!("python"), &json!("local"))
    );
    assert_eq!(run["stdout_truncated"], false);
    assert!(run["id"].as_str().is_some_and(|id| !id.is_empty()));

    // A refusal is isError with the API's code and message.
    let unknown = api_error(
        api,
        reqwest::Method::POST,
        "/v1/execute",
        json!({"language": "cobol", "code": "DISPLAY 'HI'."}),
    )
    .await;
    assert!(is_error(&a[1]));
    assert_eq!(
        text(&a[1]),
        format!("unknown_language: {}", unknown["message"].as_str().unwrap())
    );
    assert_eq!(a[1]["structuredContent"]["error"], unknown);
    assert!(is_error(&a[2]));
    assert_eq!(
        text(&a[2]),
        "invalid_request: the arguments of execute do not fit its input schema: missing field `code`"
    );

    // A sandbox: made, written, run in, read, listed.
    assert!(!is_error(&a[3]), "{}", a[3]);
    let sb = a[3]["structuredContent"]["id"].as_str().unwrap();
    assert!(sb.starts_with("sb_"), "{sb}");
    assert_eq!(a[3]["structuredContent"]["executor"], "local");
    assert_eq!(a[3]["structuredContent"]["policy"], "default");
    let expires = a[3]["structuredContent"]["expires_at"].as_str().unwrap();
    assert_eq!(
        text(&a[3]),
        format!("created sandbox {sb} (executor local, policy default); it expires at {expires}")
    );
    assert_eq!(text(&a[4]), "wrote 9 bytes to notes/a.txt");
    assert_eq!(
        a[4]["structuredContent"],
        json!({"path": "notes/a.txt", "path_encoding": "utf-8", "size": 9})
    );
    assert_eq!(
        text(&a[5]),
        "status: ok\nexit_code: 0\n--- stdout ---\nline one\n--- stderr ---\n"
    );
    assert_eq!(text(&a[6]), "made");
    assert_eq!(
        a[6]["structuredContent"],
        json!({"path": "out.txt", "size": 4, "encoding": "utf8", "content": "made"})
    );
    // The call's source stays in the work dir, as in every sandbox call.
    assert_eq!(
        text(&a[7]),
        "main.sh (38 bytes)\nnotes/\nnotes/a.txt (9 bytes)\nout.txt (4 bytes)\n"
    );
    assert_eq!(a[7]["structuredContent"]["files"][3]["path"], "out.txt");
    assert_eq!(a[7]["structuredContent"]["files"][3]["type"], "file");
    assert_eq!(a[7]["structuredContent"]["files"][1]["type"], "dir");

    // A context keeps its variables; the last expression's value is shown.
    let ctx = a[8]["structuredContent"]["id"].as_str().unwrap();
    assert!(ctx.starts_with("ctx_"), "{}", a[8]);
    assert_eq!(
        text(&a[9]),
        "status: ok\nexit_code: 0\n--- stdout ---\nset\n--- stderr ---\n"
    );
    assert_eq!(
        text(&a[10]),
        "status: ok\nexit_code: 0\n--- stdout ---\n--- stderr ---\n--- result ---\n42\n"
    );
    assert_eq!(a[10]["structuredContent"]["results"][0]["text/plain"], "42");

    // A figure the code leaves open is shown as an image.
    // (What the figure's libraries say on stderr is the host's business.)
    let stderr = a[11]["structuredContent"]["stderr"].as_str().unwrap();
    assert_eq!(
        text(&a[11]),
        format!("status: ok\nexit_code: 0\n--- stdout ---\n--- stderr ---\n{stderr}--- result ---\n<Figure size 640x480 with 1 Axes>\n")
    );
    let image = &a[11]["content"][1];
    assert_eq!(
        (&image["type"], &image["mimeType"]),
        (&json!("image"), &json!("image/png"))
    );
    assert!(
        image["data"].as_str().unwrap().starts_with("iVBORw0KGgo"),
        "{image}"
    );

    // Deleted: the sandbox is gone, as the API says.
    assert_eq!(text(&a[12]), format!("deleted sandbox {sb}"));
    let gone = api_error(
        api,
        reqwest::Method::GET,
        &format!("/v1/sandboxes/{sb}/files/out.txt"),
        json!({}),
    )
    .await;
    assert_eq!(gone["code"], "sandbox_not_found");
    assert!(is_error(&a[13]));
    assert_eq!(
        text(&a[13]),
        format!("sandbox_not_found: {}", gone["message"].as_str().unwrap())
    );

    // A timeout is a result too.
    assert!(!is_error(&a[15]), "{}", a[15]);
    assert_eq!(
        text(&a[15]),
        "status: timeout\nsignal: SIGKILL\n--- stdout ---\nslow\n--- stderr ---\n"
    );

    // Only a tool that does not exist is a protocol error.
    assert_eq!(a[14]["rpc_error"]["code"], -32602, "{}", a[14]);
    assert_eq!(
        a[14]["rpc_error"]["message"],
        "no tool named \"no_such_tool\"; tools/list lists them"
    );
}

/// The handshake each SDK line makes: 1.x initializes; 2.x probes, is refused, initializes.
fn check_handshake(out: &Value, sdk: &str) {
    assert_eq!(out["handshake"], "initialize", "{out}");
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(out["server"]["name"], "execbox");
    let sent: Vec<&str> = out["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let opening: &[&str] = match sdk {
        "mcp1" => &["initialize", "notifications/initialized", "tools/list"],
        _ => &[
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
        ],
    };
    assert_eq!(&sent[..opening.len()], opening, "{sent:?}");
    assert!(out["sdk"].as_str().unwrap().starts_with(&sdk[3..]), "{out}");
}

async fn scenario_over_stdio(sdk: &str) {
    let Some(py) = python(sdk) else { return };
    let api = spawn_app();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("mcp-{sdk}-{}", std::process::id());
    let env = [("EXECBOX_INSTANCE", instance.as_str())];
    let out = drive(
        &py,
        "drive.py",
        &stdio_args(dir.path(), "local"),
        &env,
        &plan(),
    );
    check_handshake(&out, sdk);
    check_scenario(&out, api, true).await;
    // The client closed the server's stdin and waited for it: it stopped cleanly.
    assert_eq!(leftover_cgroups(&instance), Vec::<PathBuf>::new());
}

async fn scenario_over_http(sdk: &str) {
    let Some(py) = python(sdk) else { return };
    let app = spawn_app();
    let out = drive(&py, "drive.py", &http_args(app, None), &[], &plan());
    check_handshake(&out, sdk);
    check_scenario(&out, app, false).await;
}

#[tokio::test]
async fn sdk_1x_over_stdio() {
    needs_root!();
    scenario_over_stdio("mcp1").await;
}

#[tokio::test]
async fn sdk_2x_over_stdio() {
    needs_root!();
    scenario_over_stdio("mcp2").await;
}

#[tokio::test]
async fn sdk_1x_over_http() {
    needs_root!();
    scenario_over_http("mcp1").await;
}

#[tokio::test]
async fn sdk_2x_over_http() {
    needs_root!();
    scenario_over_http("mcp2").await;
}

/// AutoGen's workbench lists the tools as it hands them to a model and calls `execute`.
fn check_autogen(out: &Value) {
    let tools = out["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, TOOLS);
    let params = &tools[0]["parameters"];
    assert_eq!(params["required"], json!(["language", "code"]));
    assert_eq!(params["additionalProperties"], false);
    assert_eq!(params["properties"]["files"]["items"]["type"], "object");
    let r = &out["result"];
    assert_eq!(r["is_error"], false, "{out}");
    assert_eq!(r["parts"], json!([PROGRAM_TEXT]));
}

fn autogen_call() -> Value {
    json!({"tool": "execute", "arguments": {"language": "python", "code": PROGRAM, "args": ["world"],
        "stdin": "abc\n", "files": [{"path": "data/x.txt", "content": "from a file\n"}]}})
}

#[test]
fn autogen_workbench_over_stdio() {
    needs_root!();
    let Some(py) = python("mcp1") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = drive(
        &py,
        "autogen_workbench.py",
        &stdio_args(dir.path(), "local"),
        &[],
        &autogen_call(),
    );
    check_autogen(&out);
}

#[test]
fn autogen_workbench_over_http() {
    needs_root!();
    let Some(py) = python("mcp1") else { return };
    let app = spawn_app();
    let out = drive(
        &py,
        "autogen_workbench.py",
        &http_args(app, None),
        &[],
        &autogen_call(),
    );
    check_autogen(&out);
}

/// `execbox mcp --executor docker`: runs and sandboxes in containers, none left after it.
#[tokio::test]
async fn stdio_on_the_docker_executor() {
    needs_root!();
    if app_for("docker").await.is_none() {
        return;
    }
    let Some(py) = python("mcp1") else { return };
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("mcp-docker-{}", std::process::id());
    let plan = json!([
        {"tool": "execute", "arguments": {"language": "python", "code": "print(6 * 7)"}},
        {"tool": "create_sandbox", "arguments": {}, "save": {"sb": "id"}},
        {"tool": "sandbox_execute", "arguments": {"sandbox_id": "${sb}", "language": "bash", "code": "pwd"}},
        {"tool": "delete_sandbox", "arguments": {"sandbox_id": "${sb}"}},
    ]);
    let env = [("EXECBOX_INSTANCE", instance.as_str())];
    let out = drive(
        &py,
        "drive.py",
        &stdio_args(dir.path(), "docker"),
        &env,
        &plan,
    );
    let a = out["answers"].as_array().unwrap();
    assert_eq!(
        text(&a[0]),
        "status: ok\nexit_code: 0\n--- stdout ---\n42\n--- stderr ---\n"
    );
    assert_eq!(a[0]["structuredContent"]["executor"], "docker");
    assert_eq!(a[1]["structuredContent"]["executor"], "docker");
    assert_eq!(
        text(&a[2]),
        "status: ok\nexit_code: 0\n--- stdout ---\n/work\n--- stderr ---\n"
    );
    assert!(!is_error(&a[3]), "{}", a[3]);
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=execbox.instance={instance}"))
        .output()
        .unwrap();
    remove_containers_of(&instance);
    assert_eq!(String::from_utf8_lossy(&left.stdout), "");
}

/// With `--auth api-key`, /mcp is behind the key like /v1: none is the 401 error JSON; with
/// one, the run is that team's (its audit log, its quotas).
#[tokio::test]
async fn with_auth_the_key_decides_the_team() {
    needs_root!();
    require_root();
    let app = TestApp::start(
        &format!("mcp-auth-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
            ("EXECBOX_QUOTAS__MAX_SANDBOXES_PER_TEAM", "1"),
        ],
    );
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = client()
        .post(app.url("/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");

    let Some(py) = python("mcp1") else { return };
    let key = create_key(&app.data_dir, "blue");
    let plan = json!([
        {"tool": "execute", "arguments": {"language": "bash", "code": "echo blue"}},
        {"tool": "create_sandbox", "arguments": {"ttl_seconds": 60}},
        {"tool": "create_sandbox", "arguments": {"ttl_seconds": 60}},
    ]);
    let out = drive(&py, "drive.py", &http_args(&app, Some(&key)), &[], &plan);
    let a = out["answers"].as_array().unwrap();
    assert_eq!(
        text(&a[0]),
        "status: ok\nexit_code: 0\n--- stdout ---\nblue\n--- stderr ---\n"
    );
    assert!(!is_error(&a[1]), "{}", a[1]);
    assert!(is_error(&a[2]));
    assert_eq!(a[2]["structuredContent"]["error"]["code"], "quota_exceeded");

    let run_id = a[0]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = rusqlite::Connection::open(app.data_dir.join("execbox.db")).unwrap();
    let (team, status, sandbox): (String, String, Option<String>) = db
        .query_row(
            "SELECT t.name, r.status, r.sandbox_id FROM runs r JOIN teams t ON t.id = r.team_id WHERE r.id = ?1",
            [&run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (team.as_str(), status.as_str(), sandbox),
        ("blue", "ok", None)
    );
}

/// POST one JSON-RPC message to /mcp as a client would, with `headers` besides Accept:
/// (status, content type, body).
async fn post_mcp(app: &TestApp, headers: &[(&str, &str)], message: Value) -> (u16, String, Value) {
    let mut r = client()
        .post(app.url("/mcp"))
        .header("Accept", "application/json, text/event-stream");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.json(&message).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.bytes().await.unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, ct, v)
}

/// A `server/discover` probe as the 2.x SDK sends it, asking for protocol `version`.
fn discover(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}})
}

/// What a discover probe is answered: the newer protocol is not served (-32022, naming the
/// versions that are, all of the initialize era, which is what makes a 2.x client fall back);
/// at a version that is served, there is still nothing to discover (-32601).
fn check_discover_refused(newest: &Value, served: &Value) {
    assert_eq!(newest["id"], 1);
    assert_eq!(newest["error"]["code"], -32022, "{newest}");
    assert_eq!(
        newest["error"]["data"],
        json!({"requested": "2026-07-28", "supported": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]})
    );
    assert_eq!(served["error"]["code"], -32601, "{served}");
    assert_eq!(
        served["error"]["message"],
        "server/discover is not served: this server speaks protocol versions 2024-11-05 to 2025-11-25; start with initialize"
    );
}

/// The protocol without a client library: `server/discover` is a JSON-RPC error, `initialize`
/// echoes a version it serves and offers its newest for one it does not, a notification is
/// 202, and what is not MCP is the service's error JSON.
#[tokio::test]
async fn the_http_protocol_by_hand() {
    needs_root!();
    let app = spawn_app();
    // The headers the 2.x SDK sends with it.
    let probe = |v| {
        [
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "server/discover"),
        ]
    };
    let (status, ct, newest) = post_mcp(app, &probe("2026-07-28"), discover("2026-07-28")).await;
    assert_eq!((status, ct.as_str()), (400, "application/json"), "{newest}");
    let (status, _, served) = post_mcp(app, &probe("2025-11-25"), discover("2025-11-25")).await;
    assert_eq!(status, 404, "{served}");
    check_discover_refused(&newest, &served);

    for (asked, answered) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-06-18", "2025-06-18"),
        ("2026-07-28", "2025-11-25"),
    ] {
        let init = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
            "protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let (status, _, v) = post_mcp(app, &[], init).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"]["protocolVersion"], answered, "{v}");
        assert_eq!(v["result"]["serverInfo"]["name"], "execbox");
        assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
    }
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, v) = post_mcp(app, &[], initialized).await;
    assert_eq!((status, v), (202, Value::Null));

    // Without auth, a request to another host name (a DNS rebinding page) is refused.
    let r = client()
        .post(app.url("/mcp"))
        .header("Host", "rebound.example")
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "{v}");

    let r = client().get(app.url("/mcp")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
    let r = client()
        .post(app.url("/mcp"))
        .header("Accept", "application/json")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_acceptable");
}

/// `execbox mcp` writes nothing but protocol to stdout (its logs, at info, go to stderr): every
/// line is one JSON-RPC message, answering the requests in order (discover probes first,
/// refused), and it exits when stdin closes.
#[test]
fn stdio_stdout_carries_only_the_protocol() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["mcp", "--data-dir"])
        .arg(dir.path())
        .env("EXECBOX_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut served = discover("2025-11-25");
    served["id"] = json!(9);
    let messages = [
        discover("2026-07-28"),
        served,
        json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "execute",
            "arguments": {"language": "bash", "code": "echo out; echo err >&2"}}}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    for m in &messages {
        writeln!(stdin, "{m}").unwrap();
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let line = lines.next().expect("an answer").unwrap();
        answers
            .push(serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    drop(stdin);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(answers[1]["id"], 9);
    check_discover_refused(&answers[0], &answers[1]);
    assert_eq!(answers[2]["id"], 2);
    assert_eq!(answers[2]["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(answers[3]["id"], 3);
    assert_eq!(
        answers[3]["result"]["content"][0]["text"],
        "status: ok\nexit_code: 0\n--- stdout ---\nout\n--- stderr ---\nerr\n"
    );
    assert_eq!(rest, Vec::<String>::new());
    assert!(status.success(), "{status}");
}

/// A call the client cancels (`notifications/cancelled`) cancels its run: the program is
/// killed long before it ends, and the audit log says `cancelled`.
#[test]
fn a_cancelled_call_cancels_its_run() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["mcp", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |m: Value| writeln!(stdin, "{m}").unwrap();
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    lines.next().unwrap().unwrap();
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let token = token();
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute",
        "arguments": {"language": "bash", "code": format!("exec -a {token} sleep 60"), "timeout_ms": 60000}}}),
    );
    // Cancelled once the program runs.
    let started = std::time::Instant::now();
    while host_processes_with(&token).is_empty() {
        assert!(
            started.elapsed().as_secs() < 20,
            "the program never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}),
    );
    let db = dir.path().join("execbox.db");
    let status = loop {
        let db = rusqlite::Connection::open(&db).unwrap();
        let status: Option<String> = db
            .query_row("SELECT status FROM runs", [], |r| r.get(0))
            .ok();
        if let Some(s) = status {
            break s;
        }
        assert!(started.elapsed().as_secs() < 20, "no run was recorded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status, "cancelled");
    while !host_processes_with(&token).is_empty() {
        assert!(
            started.elapsed().as_secs() < 20,
            "the program outlived its call"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
