//! Tool answers: text for the model to read (and a context call's figures as images), with the
//! whole result as structured content; a refusal is `isError` with the API's code and message.

use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;

use crate::api::{ApiError, ErrorBody};
use crate::exec::RunResult;
use crate::sandbox::{FileEntry, FileKind};

/// A run that happened, whatever its status: a non-zero exit, a timeout or a limit is part of
/// the result (as in the HTTP API), not a failed tool call.
///
/// The text is `status: S`, then `exit_code: N` (or `signal: SIG`), then each stream after a
/// `--- stdout ---` / `--- stderr ---` line (`(truncated)` when cut at the output cap); a
/// compile step that failed adds `--- compile ---` with its output; a context call adds each
/// display result after `--- result ---` and an uncaught exception after `--- error ---`.
pub fn run(r: &RunResult) -> CallToolResult {
    let mut text = format!("status: {}\n", r.status.as_str());
    match (&r.signal, r.exit_code) {
        (Some(signal), _) => text += &format!("signal: {signal}\n"),
        (None, Some(code)) => text += &format!("exit_code: {code}\n"),
        (None, None) => {}
    }
    if let Some(c) = r
        .compile
        .as_ref()
        .filter(|c| c.status != crate::exec::Status::Ok)
    {
        section(&mut text, "compile", &format!("{}{}", c.stdout, c.stderr));
    }
    let cut = |t: bool| if t { " (truncated)" } else { "" };
    section(
        &mut text,
        &format!("stdout{}", cut(r.stdout_truncated)),
        &r.stdout,
    );
    section(
        &mut text,
        &format!("stderr{}", cut(r.stderr_truncated)),
        &r.stderr,
    );
    let mut images = Vec::new();
    for bundle in r.results.iter().flatten() {
        let shown = bundle.get("text/plain").and_then(|v| v.as_str());
        section(&mut text, "result", shown.unwrap_or("<no text form>"));
        if let Some(png) = bundle.get("image/png").and_then(|v| v.as_str()) {
            images.push(ContentBlock::image(png, "image/png"));
        }
    }
    if let Some(Some(e)) = &r.error {
        section(&mut text, "error", &e.traceback);
    }
    let mut content = vec![ContentBlock::text(text)];
    content.extend(images);
    with_structured(CallToolResult::success(content), r)
}

/// `--- name ---` and the text on lines of its own.
fn section(out: &mut String, name: &str, body: &str) {
    out.push_str(&format!("--- {name} ---\n"));
    out.push_str(body);
    if !body.is_empty() && !body.ends_with('\n') {
        out.push('\n');
    }
}

/// The service refused or failed: the API's error body, and `code: message` as text.
pub fn error(e: &ApiError) -> CallToolResult {
    let text = format!("{}: {}", e.code, e.message);
    with_structured(
        CallToolResult::error(vec![ContentBlock::text(text)]),
        &ErrorBody::from(e),
    )
}

/// An operation that is done: what it did, and what it made.
pub fn done(text: String, made: &impl Serialize) -> CallToolResult {
    with_structured(
        CallToolResult::success(vec![ContentBlock::text(text)]),
        made,
    )
}

/// A file's content: itself when it is UTF-8, else its base64.
pub fn file(path: &str, bytes: Vec<u8>) -> CallToolResult {
    let size = bytes.len();
    let (text, encoding, content) = match String::from_utf8(bytes) {
        Ok(s) => (s.clone(), "utf8", s),
        Err(e) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            let text = format!("{path} is not UTF-8 text; its {size} bytes in base64:\n{b64}");
            (text, "base64", b64)
        }
    };
    let structured = serde_json::json!({
        "path": path, "size": size, "encoding": encoding, "content": content,
    });
    done(text, &structured)
}

/// One line per entry (`path/` for a directory, sizes of files, links marked), then the
/// entries as structured content.
pub fn listing(files: &[FileEntry]) -> CallToolResult {
    let mut text = String::new();
    for f in files {
        match f.kind {
            FileKind::Dir => text += &format!("{}/\n", f.path),
            FileKind::File => text += &format!("{} ({} bytes)\n", f.path, f.size),
            FileKind::Symlink => text += &format!("{} (symlink)\n", f.path),
        }
    }
    if files.is_empty() {
        text = "no files\n".into();
    }
    done(text, &serde_json::json!({ "files": files }))
}

fn with_structured(mut answer: CallToolResult, value: &impl Serialize) -> CallToolResult {
    answer.structured_content =
        Some(serde_json::to_value(value).expect("answers serialize to JSON"));
    answer
}
