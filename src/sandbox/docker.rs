//! Docker sandboxes: one long-lived hardened container per sandbox (the per-run hardening, a
//! tmpfs /work that is the workspace), labelled `execbox.sandbox=<id>` so it survives the
//! executor's sweep and a graceful restart. Calls are execs into it; file operations are execs
//! too, as the sandbox user, so a link a program planted resolves in the container, never on
//! the host.
//!
//! Each sandbox's container has its own uid (from the service's allocator, held for the
//! sandbox's life and found again after a restart from the container's `execbox.uid` label): its
//! /work belongs to it, and calls, file operations and the kill below run as it.
//!
//! The engine cannot kill one exec, so after every step (and at a call's deadline) every
//! process of the sandbox user is killed from inside: an exec as that user runs `kill -KILL -1`
//! (which spares the caller; the container's init and waiter run as another uid and live on)
//! until /proc shows none left. If even that cannot be done, the container is restarted, which
//! empties /work, and the call's stderr says so.
//!
//! Per container, not per call: memory (tmpfs /work and /tmp count against it too), pids and
//! disk are the sandbox's, whatever a call asks for. A call's wall deadline, output cap and CPU
//! time are its own (CPU as the container's cumulative figure minus a read before the step).
//! `peak_memory_bytes` is the container's peak since the sandbox started, workspace included.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FileEntry, FileKind, Sandbox, SandboxBackend, SandboxError};
use crate::exec::docker::container::{self, LABEL_SANDBOX};
use crate::exec::docker::exec::{self as dexec, ExecOutcome, ExecSpec};
use crate::exec::docker::{DockerExecutor, Prepared, StepInput};
use crate::exec::{BoxFuture, CompileResult, ExecError, Job, RunResult, Status, StepResult};
use crate::policy::{Limits, PolicySet};

/// On a sandbox container: the languages its image serves (comma-separated).
const LABEL_LANGUAGES: &str = "execbox.sandbox.languages";

/// Kill every process of the sandbox user (`$1`, the uid it runs as) but this shell, until
/// /proc shows none (zombies wait for the container's init to reap them). Builtins only: no
/// fork is needed, so it works even when a fork bomb holds every pid. Exit 1: some survived all
/// rounds.
const REAP: &str = r#"i=0
while [ $i -lt 200 ]; do
  kill -KILL -1 2>/dev/null
  left=
  for s in /proc/[0-9]*/status; do
    [ "$s" = "/proc/$$/status" ] && continue
    while read -r k v _; do
      if [ "$k" = Uid: ]; then [ "$v" = "$1" ] && left=1; break; fi
    done < "$s"
  done 2>/dev/null
  [ -z "$left" ] && exit 0
  i=$((i+1))
done
exit 1"#;

/// File operations: `$1` is an absolute, normalized path under /work. A path whose real path
/// differs from itself has a symlink somewhere on the way and is refused.
/// Exit codes: 3 missing, 4 a symlink on the way, 5 wrong kind, 6 a parent is not a directory.
const READ: &str = r#"p=$1
[ -e "$p" ] || [ -L "$p" ] || exit 3
[ "$(realpath -e -- "$p")" = "$p" ] || exit 4
[ -f "$p" ] || exit 5
exec cat -- "$p""#;
const WRITE: &str = r#"p=$1
[ "$(realpath -m -- "$p")" = "$p" ] || exit 4
if [ -e "$p" ] && [ ! -f "$p" ]; then exit 5; fi
mkdir -p -- "${p%/*}" 2>/dev/null || exit 6
exec cat > "$p""#;
const LIST: &str = r#"p=$1
[ -e "$p" ] || [ -L "$p" ] || exit 3
[ "$(realpath -e -- "$p")" = "$p" ] || exit 4
[ -d "$p" ] || exit 5
exec find "$p" -mindepth 1 \( -type f -o -type d -o -type l \) -printf '%P\t%s\t%y\0'"#;
/// Names relative to /work (no `./`), directories before their contents; fifos, sockets and
/// devices are left out, as the local backend does.
const EXPORT: &str = r#"cd /work && find . -mindepth 1 \( -type f -o -type d -o -type l \) -printf '%P\0' | tar -c -f - --null --no-recursion -T -"#;
const IMPORT: &str = "exec tar -x -C /work --no-same-owner --no-overwrite-dir -f -";
/// Before a call, the paths it will write (`$@`, relative to /work): exit 4 when a directory on
/// the way is a link, 6 when it is a file, 5 when the path itself is a directory; stdout names
/// the culprit. What is absent the call creates.
const CHECK_WRITES: &str = r#"cd /work || exit 9
for p; do
  q= rest=$p
  while case $rest in */*) true;; *) false;; esac; do
    q=${q:+$q/}${rest%%/*} rest=${rest#*/}
    if [ -L "$q" ]; then printf %s "$q"; exit 4; fi
    [ -e "$q" ] || break
    [ -d "$q" ] || { printf %s "$q"; exit 6; }
  done
  if [ -d "$p" ] && [ ! -L "$p" ]; then printf %s "$p"; exit 5; fi
done
exit 0"#;

/// How long a file operation may take (it moves at most the sandbox's disk size).
const FILE_OP_DEADLINE: Duration = Duration::from_secs(120);
/// A listing's output cap.
const LIST_CAP: u64 = 16 << 20;

/// A sandbox's container as this backend knows it.
#[derive(Debug, Clone)]
struct Handle {
    id: String,
    /// The uid its programs and file operations run as.
    uid: u32,
    languages: Vec<String>,
}

/// Per-policy values the container is made with.
#[derive(Debug, Clone)]
struct PolicyBits {
    open_files: u64,
    runtime: Option<String>,
    /// The most CPU time a call may ask for; the container's RLIMIT_CPU, lowered per call.
    max_cpu_ms: u64,
}

pub struct DockerSandboxes {
    exec: Arc<DockerExecutor>,
    policies: HashMap<String, PolicyBits>,
    /// Sandbox id → its container; filled at create and on first use after a restart.
    handles: Mutex<HashMap<String, Handle>>,
    /// Container id → held while a step or file operation (and the kill after it) runs there.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn engine(what: &str) -> impl Fn(bollard::errors::Error) -> ExecError + '_ {
    move |e| ExecError::Unavailable("docker".into(), format!("{what}: {e}"))
}

fn io_err(what: impl Into<String>, msg: impl Into<String>) -> SandboxError {
    SandboxError::Io(what.into(), std::io::Error::other(msg.into()))
}

/// `/work/<rel>` with empty and `.` segments dropped; `..` is refused (the manager has checked
/// already; this is the backstop).
fn abs(rel: &str) -> Result<String, SandboxError> {
    let mut p = String::from("/work");
    for seg in rel.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if seg == ".." || seg.contains('\0') {
            return Err(SandboxError::PathRefused(format!(
                "{rel:?}: `..` and NUL are not allowed"
            )));
        }
        p.push('/');
        p.push_str(seg);
    }
    Ok(p)
}

impl DockerSandboxes {
    /// Sandbox containers are made by `exec`'s engine client, labelled with its instance (so its
    /// OOM watcher sees them); each policy's `open_files` (at least 256, for compilers),
    /// `docker_runtime` and CPU maximum shape the containers of that policy.
    pub fn new(exec: Arc<DockerExecutor>, policies: &PolicySet) -> DockerSandboxes {
        let policies = policies
            .policies
            .iter()
            .map(|(name, p)| {
                let bits = PolicyBits {
                    open_files: p.open_files.max(256),
                    runtime: p.docker_runtime.clone(),
                    max_cpu_ms: p.maxima.cpu_time_ms.max(p.compile.cpu_time_ms),
                };
                (name.clone(), bits)
            })
            .collect();
        DockerSandboxes {
            exec,
            policies,
            handles: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// The limits the container is made with: the sandbox's, with RLIMIT_CPU at the policy's
    /// maximum so that each call can lower it to its own.
    fn container_limits(&self, sb: &Sandbox) -> (Limits, u64, Option<String>) {
        match self.policies.get(&sb.policy) {
            Some(p) => (
                Limits {
                    cpu_time_ms: p.max_cpu_ms.max(sb.limits.cpu_time_ms),
                    ..sb.limits
                },
                p.open_files,
                p.runtime.clone(),
            ),
            None => (sb.limits, 256, None),
        }
    }

    /// The image for a new sandbox: the one serving the most probed languages (python's on a
    /// tie), with those languages. Languages of another image cannot run in this sandbox.
    async fn pick_image(&self) -> Result<(String, Vec<String>), ExecError> {
        let available = self.exec.available();
        let mut by_id: HashMap<String, (String, Vec<String>)> = HashMap::new();
        let mut names: Vec<&String> = available.keys().collect();
        names.sort();
        for lang in names {
            let Some(image) = self.exec.image_of(lang) else {
                continue;
            };
            let id = match self.exec.engine().inspect_image(image).await {
                Ok(i) => i.id.unwrap_or_else(|| image.to_string()),
                Err(_) => continue,
            };
            let e = by_id
                .entry(id)
                .or_insert_with(|| (image.to_string(), Vec::new()));
            e.1.push(lang.clone());
        }
        by_id
            .into_values()
            .max_by_key(|(_, langs)| (langs.len(), langs.iter().any(|l| l == "python")))
            .ok_or_else(|| {
                ExecError::Unavailable(
                    "docker".into(),
                    "no runtime image passed its start-up probe".into(),
                )
            })
    }

    /// The sandbox's running container.
    async fn handle(&self, sb: &Sandbox) -> Result<Handle, ExecError> {
        if let Some(h) = self.handles.lock().unwrap().get(&sb.id) {
            return Ok(h.clone());
        }
        if let Some(e) = self.exec.unavailable() {
            return Err(e);
        }
        let found = container::list_sandboxes(self.exec.engine(), self.exec.instance())
            .await
            .map_err(engine("listing sandbox containers"))?;
        let Some(c) = found.into_iter().find(|c| c.sandbox == sb.id && c.running) else {
            return Err(ExecError::Setup(format!("sandbox {}'s container is not running (was the engine restarted?); its files are gone", sb.id)));
        };
        let languages = c
            .labels
            .get(LABEL_LANGUAGES)
            .map(|l| l.split(',').map(String::from).collect())
            .unwrap_or_default();
        // Containers made before uids were per sandbox ran everything as 65534.
        let uid = c
            .labels
            .get(container::LABEL_UID)
            .and_then(|u| u.parse().ok())
            .unwrap_or(65534);
        let h = Handle {
            id: c.id,
            uid,
            languages,
        };
        self.handles
            .lock()
            .unwrap()
            .insert(sb.id.clone(), h.clone());
        Ok(h)
    }

    async fn create_container(&self, sb: &Sandbox) -> Result<(), ExecError> {
        if let Some(e) = self.exec.unavailable() {
            return Err(e);
        }
        let (image, languages) = self.pick_image().await?;
        let (limits, open_files, runtime) = self.container_limits(sb);
        self.exec
            .ensure_runtime(runtime.as_deref(), &sb.policy)
            .await?;
        let lease = self.exec.sandbox_uid().await?;
        let uid = lease.uid();
        let mut body = container::create_body(
            &self.exec.shape(&image, limits, open_files, runtime),
            self.exec.instance(),
            uid,
        );
        let labels = body.labels.get_or_insert_with(Default::default);
        labels.insert(LABEL_SANDBOX.to_string(), sb.id.clone());
        labels.insert(LABEL_LANGUAGES.to_string(), languages.join(","));
        let id = container::create_started(self.exec.engine(), body)
            .await
            .map_err(engine("starting the sandbox's container"))?;
        tracing::info!(sandbox = %sb.id, container = %id, %image, uid, "sandbox container started");
        self.exec.hold_sandbox_uid(&id, lease);
        self.handles
            .lock()
            .unwrap()
            .insert(sb.id.clone(), Handle { id, uid, languages });
        Ok(())
    }

    /// One call: compile (when the language needs it; the artifact stays in /work), then run,
    /// each step followed by killing whatever it left.
    async fn call(&self, sb: &Sandbox, job: &Job) -> Result<RunResult, ExecError> {
        let Prepared {
            version,
            files,
            env,
            ..
        } = self.exec.prepare(job)?;
        let h = self.handle(sb).await?;
        let rt = &job.runtime;
        if !h.languages.contains(&rt.language) {
            return Err(ExecError::Unavailable(
                "docker".into(),
                format!(
                    "{} runs in another image than this sandbox's container, which serves {}",
                    rt.language,
                    h.languages.join(", ")
                ),
            ));
        }
        let (container_limits, _, _) = self.container_limits(sb);
        let cpu_secs = |l: &Limits| {
            let secs = |ms: u64| ms.div_ceil(1000).max(1);
            (secs(l.cpu_time_ms) < secs(container_limits.cpu_time_ms)).then(|| secs(l.cpu_time_ms))
        };
        let mut compile = None;
        let mut files = &files[..];
        if let Some(cmd) = &rt.compile {
            let input = StepInput {
                argv: cmd.clone(),
                env: self.exec.base_env(),
                files,
                stdin: b"",
                cpu_secs: cpu_secs(&job.compile_limits),
                stream: None,
            };
            let r = self.step(&h, &job.compile_limits, input).await?;
            compile = Some(CompileResult::from(&r));
            if r.status != Status::Ok {
                return Ok(self
                    .exec
                    .result(job, version, compile, StepResult::compile_failed()));
            }
            files = &[];
        }
        let mut argv = rt.run.clone();
        argv.extend(job.args.iter().cloned());
        let input = StepInput {
            argv,
            env,
            files,
            stdin: &job.stdin,
            cpu_secs: cpu_secs(&job.limits),
            stream: job.stream.clone(),
        };
        let r = self.step(&h, &job.limits, input).await?;
        Ok(self.exec.result(job, version, compile, r))
    }

    /// One process, judged like a per-run step, then nothing of it left running.
    async fn step(
        &self,
        h: &Handle,
        limits: &Limits,
        input: StepInput<'_>,
    ) -> Result<StepResult, ExecError> {
        let id = h.id.as_str();
        let occupied = self.occupy(h).await;
        let baseline = self.exec.usage(id).await;
        let ran = self.exec.run_in(id, h.uid, limits, input, baseline).await;
        let reaped = occupied.finish().await;
        let mut r = ran?;
        if !reaped? {
            r.stderr.push_str("\nexecbox: the call's processes could not be stopped, so the sandbox was restarted; its files are gone\n");
        }
        Ok(r)
    }

    /// The container to oneself until the returned guard is finished, released or dropped.
    async fn occupy(&self, h: &Handle) -> Occupied {
        let lock = self
            .busy
            .lock()
            .unwrap()
            .entry(h.id.clone())
            .or_default()
            .clone();
        Occupied {
            exec: self.exec.clone(),
            id: h.id.clone(),
            uid: h.uid,
            lock: Some(lock.lock_owned().await),
        }
    }

    /// One exec of a file operation with the container to itself; its exit code is the
    /// caller's to judge. No answer in time is an error, after what it started is killed.
    async fn op(
        &self,
        sb: &Sandbox,
        what: &str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
        cap: u64,
    ) -> Result<ExecOutcome, SandboxError> {
        let h = self.handle(sb).await?;
        let occupied = self.occupy(&h).await;
        let out = sh(
            &self.exec,
            &h.id,
            h.uid,
            script,
            args,
            stdin,
            cap,
            FILE_OP_DEADLINE,
        )
        .await
        .map_err(engine(what))?;
        if out.exit_code.is_none() {
            occupied.finish().await?;
            return Err(io_err(
                what,
                format!("no answer within {} s", FILE_OP_DEADLINE.as_secs()),
            ));
        }
        // A file operation that ended left nothing running.
        occupied.release();
        Ok(out)
    }

    /// A file operation on `path`: its outcome, with the common exit codes mapped.
    async fn file_op(
        &self,
        sb: &Sandbox,
        what: &str,
        script: &str,
        path: &str,
        stdin: &[u8],
        cap: u64,
    ) -> Result<ExecOutcome, SandboxError> {
        let rel = path.strip_prefix("/work/").unwrap_or("");
        let out = self
            .op(sb, &format!("{what} {rel}"), script, &[path], stdin, cap)
            .await?;
        match out.exit_code {
            Some(0) => Ok(out),
            Some(3) => Err(SandboxError::NotFound(rel.to_string())),
            Some(4) => Err(SandboxError::PathConflict(format!(
                "{rel}: a symlink is in the way"
            ))),
            Some(5) if script == LIST => Err(SandboxError::PathConflict(format!(
                "{rel} is not a directory"
            ))),
            Some(5) => Err(SandboxError::PathConflict(format!(
                "{rel} is not a regular file"
            ))),
            Some(6) => Err(SandboxError::PathConflict(format!(
                "{rel}: a parent is not a directory"
            ))),
            c => {
                let err = out.stderr.lossy();
                if err.contains("No space left") || err.contains("File too large") {
                    return Err(SandboxError::TooLarge {
                        what: format!("{what} {rel}"),
                        max: sb.limits.disk_bytes,
                    });
                }
                Err(io_err(
                    format!("{what} {rel}"),
                    format!("exit {c:?}: {}", err.trim()),
                ))
            }
        }
    }

    async fn list_abs(&self, sb: &Sandbox, dir: &str) -> Result<Vec<FileEntry>, SandboxError> {
        let top = abs(dir)?;
        let out = self
            .file_op(sb, "listing", LIST, &top, b"", LIST_CAP)
            .await?;
        if out.stdout.truncated {
            return Err(SandboxError::TooLarge {
                what: "the listing".into(),
                max: LIST_CAP,
            });
        }
        let prefix = top
            .strip_prefix("/work")
            .unwrap_or("")
            .trim_start_matches('/');
        let mut entries: Vec<FileEntry> = out
            .stdout
            .bytes
            .split(|&b| b == 0)
            .filter(|r| !r.is_empty())
            .filter_map(|rec| {
                let rec = String::from_utf8_lossy(rec);
                // The name may hold tabs; size and type never do.
                let mut it = rec.rsplitn(3, '\t');
                let (kind, size, name) = (it.next()?, it.next()?, it.next()?);
                let kind = match kind {
                    "f" => FileKind::File,
                    "d" => FileKind::Dir,
                    "l" => FileKind::Symlink,
                    _ => return None,
                };
                let size = if kind == FileKind::File {
                    size.parse().ok()?
                } else {
                    0
                };
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                Some(FileEntry::new(path.as_bytes(), size, kind))
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Bytes of regular files in /work.
    async fn used(&self, sb: &Sandbox) -> Result<u64, SandboxError> {
        Ok(self
            .list_abs(sb, "")
            .await?
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.size)
            .sum())
    }

    async fn read(&self, sb: &Sandbox, path: &str) -> Result<Vec<u8>, SandboxError> {
        let p = abs(path)?;
        let max = sb.limits.disk_bytes;
        let out = self.file_op(sb, "reading", READ, &p, b"", max).await?;
        if out.stdout.truncated {
            return Err(SandboxError::TooLarge {
                what: format!("reading {path}"),
                max,
            });
        }
        Ok(out.stdout.bytes)
    }

    async fn write(&self, sb: &Sandbox, path: &str, content: Vec<u8>) -> Result<(), SandboxError> {
        let p = abs(path)?;
        if p == "/work" {
            return Err(SandboxError::PathRefused("empty path".into()));
        }
        let max = sb.limits.disk_bytes;
        if self.used(sb).await? + content.len() as u64 > max {
            return Err(SandboxError::TooLarge {
                what: format!("writing {} bytes to {path}", content.len()),
                max,
            });
        }
        self.file_op(sb, "writing", WRITE, &p, &content, 4096)
            .await
            .map(|_| ())
    }

    async fn check_writes(&self, sb: &Sandbox, paths: Vec<String>) -> Result<(), SandboxError> {
        let args: Vec<&str> = paths.iter().map(String::as_str).collect();
        let out = self
            .op(
                sb,
                "checking the call's paths",
                CHECK_WRITES,
                &args,
                b"",
                64 << 10,
            )
            .await?;
        let culprit = out.stdout.lossy();
        match out.exit_code {
            Some(0) => Ok(()),
            Some(4) => Err(SandboxError::PathConflict(format!("{culprit} is a symlink in the sandbox's work dir; files are never written through links"))),
            Some(5) => Err(SandboxError::PathConflict(format!("{culprit} is a directory in the sandbox's work dir; a file cannot replace it"))),
            Some(6) => Err(SandboxError::PathConflict(format!("{culprit} is a file in the sandbox's work dir, not a directory"))),
            c => Err(io_err("checking the call's paths", format!("exit {c:?}: {}", out.stderr.lossy().trim()))),
        }
    }

    async fn export(&self, sb: &Sandbox) -> Result<Vec<u8>, SandboxError> {
        // Headers and padding on top of the contents: a generous cap that a full /work fits.
        let cap = sb
            .limits
            .disk_bytes
            .saturating_mul(2)
            .saturating_add(16 << 20);
        let out = self
            .op(sb, "archiving /work", EXPORT, &[], b"", cap)
            .await?;
        match out.exit_code {
            Some(0) if !out.stdout.truncated => Ok(out.stdout.bytes),
            Some(0) => Err(SandboxError::TooLarge {
                what: "the archive".into(),
                max: cap,
            }),
            c => Err(io_err(
                "archiving /work",
                format!("tar exited {c:?}: {}", out.stderr.lossy().trim()),
            )),
        }
    }

    async fn import(&self, sb: &Sandbox, tar: Vec<u8>) -> Result<(), SandboxError> {
        let max = sb.limits.disk_bytes;
        let listed = self.list_abs(sb, "").await?;
        let used: u64 = listed
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.size)
            .sum();
        let links = listed
            .into_iter()
            .filter(|e| e.kind == FileKind::Symlink)
            .map(|e| e.path)
            .collect();
        let total = check_archive(&tar, links)?;
        if used.saturating_add(total) > max {
            return Err(SandboxError::TooLarge {
                what: format!("unpacking {total} bytes"),
                max,
            });
        }
        let out = self
            .op(sb, "unpacking into /work", IMPORT, &[], &tar, 64 << 10)
            .await?;
        match out.exit_code {
            Some(0) => Ok(()),
            c => {
                let err = out.stderr.lossy();
                if err.contains("No space left") || err.contains("File too large") {
                    return Err(SandboxError::TooLarge {
                        what: "the archive".into(),
                        max,
                    });
                }
                Err(io_err(
                    "unpacking into /work",
                    format!("tar exited {c:?}: {}", err.trim()),
                ))
            }
        }
    }

    async fn remove(&self, sb: &Sandbox) -> Result<(), SandboxError> {
        let cached = self.handles.lock().unwrap().remove(&sb.id);
        let mut ids: HashSet<String> = cached.into_iter().map(|h| h.id).collect();
        if self.exec.unavailable().is_none() {
            let found = container::list_sandboxes(self.exec.engine(), self.exec.instance())
                .await
                .map_err(engine("listing sandbox containers"))?;
            ids.extend(
                found
                    .into_iter()
                    .filter(|c| c.sandbox == sb.id)
                    .map(|c| c.id),
            );
        }
        for id in ids {
            container::remove(self.exec.engine(), &id).await;
            self.exec.forget_container(&id);
            self.exec.release_sandbox_uid(&id);
            self.busy.lock().unwrap().remove(&id);
        }
        Ok(())
    }

    async fn reconcile_known(&self, known: &[Sandbox]) -> Vec<String> {
        let found = match container::list_sandboxes(self.exec.engine(), self.exec.instance()).await
        {
            Ok(f) => f,
            Err(e) => {
                // Records are kept: their containers may well be there once the engine answers.
                tracing::warn!(error = %e, "could not list sandbox containers; reconciling nothing");
                return Vec::new();
            }
        };
        let known_ids: HashSet<&str> = known
            .iter()
            .filter(|s| s.executor == "docker")
            .map(|s| s.id.as_str())
            .collect();
        let mut alive = HashSet::new();
        for c in found {
            if known_ids.contains(c.sandbox.as_str())
                && c.running
                && alive.insert(c.sandbox.clone())
            {
                continue;
            }
            // No record, stopped (its tmpfs /work is gone) or a duplicate: remove it.
            tracing::info!(sandbox = %c.sandbox, container = %c.id, running = c.running, "removing a sandbox container");
            container::remove(self.exec.engine(), &c.id).await;
            self.exec.forget_container(&c.id);
            self.exec.release_sandbox_uid(&c.id);
        }
        self.handles
            .lock()
            .unwrap()
            .retain(|id, _| alive.contains(id));
        known_ids
            .into_iter()
            .filter(|id| !alive.contains(*id))
            .map(String::from)
            .collect()
    }
}

/// Exclusive use of a sandbox's container for one step or file operation. Dropped unfinished
/// (the caller's future was cancelled: a client hung up), it kills what the operation left in
/// the background and only then lets the next operation in.
struct Occupied {
    exec: Arc<DockerExecutor>,
    id: String,
    uid: u32,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Occupied {
    /// Kill what the operation left, then let the next one in. Ok(false): see [`reap`].
    async fn finish(mut self) -> Result<bool, ExecError> {
        let r = reap(&self.exec, &self.id, self.uid).await;
        self.lock = None;
        r
    }

    /// Let the next operation in; this one left nothing running.
    fn release(mut self) {
        self.lock = None;
    }
}

impl Drop for Occupied {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let (exec, id, uid) = (self.exec.clone(), self.id.clone(), self.uid);
            tokio::spawn(async move {
                if let Err(e) = reap(&exec, &id, uid).await {
                    tracing::warn!(container = %id, error = %e, "could not stop a cancelled sandbox call's processes");
                }
                drop(lock);
            });
        }
    }
}

/// Kill every process of the sandbox user in container `id`. Ok(true): done from inside;
/// Ok(false): it took a container restart (so /work is empty now).
async fn reap(exec: &DockerExecutor, id: &str, uid: u32) -> Result<bool, ExecError> {
    // A fork bomb may hold every pid; the exec then cannot start. Its processes die or back
    // off now and then, so a few tries usually get one in.
    for attempt in 0..20 {
        match sh(
            exec,
            id,
            uid,
            REAP,
            &[&uid.to_string()],
            b"",
            64,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(out) if out.exit_code == Some(0) => return Ok(true),
            Ok(out) => {
                tracing::debug!(container = id, attempt, code = ?out.exit_code, "sandbox processes survived a reap round")
            }
            Err(e) => tracing::debug!(container = id, attempt, error = %e, "reap exec failed"),
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1).min(4))).await;
    }
    tracing::warn!(
        container = id,
        "could not kill a sandbox call's processes from inside; restarting the container"
    );
    let opts = bollard::query_parameters::RestartContainerOptions {
        t: Some(0),
        ..Default::default()
    };
    exec.engine()
        .restart_container(id, Some(opts))
        .await
        .map_err(engine("restarting the sandbox's container"))?;
    Ok(false)
}

/// `sh -c script sh args...` as the sandbox user (`uid`) in /work, with only PATH and a C locale.
#[allow(clippy::too_many_arguments)]
async fn sh(
    exec: &DockerExecutor,
    id: &str,
    uid: u32,
    script: &str,
    args: &[&str],
    stdin: &[u8],
    cap: u64,
    deadline: Duration,
) -> Result<ExecOutcome, bollard::errors::Error> {
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let env = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin".into(),
        "LC_ALL=C".into(),
    ];
    dexec::run(
        exec.engine(),
        id,
        ExecSpec {
            uid,
            argv,
            env,
            stdin,
            output_cap: cap,
            deadline,
            stream: None,
            cpu: None,
        },
    )
    .await
}

/// Refuse an archive whole, as the local backend does, before a byte of it lands: entries
/// that are not plain relative paths, kinds other than files, directories and symlinks, and
/// entries beneath a symlink (one already in /work, `links`, or one the archive carries).
/// Returns the total size of its files.
fn check_archive(tar: &[u8], mut links: Vec<String>) -> Result<u64, SandboxError> {
    // A body that is not a tar is the caller's error, not the service's.
    let bad = |e: std::io::Error| SandboxError::InvalidArchive(e.to_string());
    let mut total = 0u64;
    for entry in tar::Archive::new(tar).entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let raw = entry.path_bytes();
        let rel = raw.strip_prefix(b"./").unwrap_or(&raw);
        let rel = rel.strip_suffix(b"/").unwrap_or(rel);
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader
            || (kind.is_dir() && matches!(rel, b"" | b"." | b"/"))
        {
            continue;
        }
        let rel = crate::exec::path::check_bytes(rel)
            .map_err(|e| SandboxError::PathRefused(e.to_string()))?;
        if links.iter().any(|l| rel.starts_with(&format!("{l}/"))) {
            return Err(SandboxError::PathRefused(format!(
                "{rel}: goes through a symlink"
            )));
        }
        // Whatever the entry is, it replaces a link of that name.
        links.retain(|l| *l != rel);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                total = total.saturating_add(entry.size())
            }
            tar::EntryType::Directory => {}
            tar::EntryType::Symlink => links.push(rel),
            other => {
                return Err(SandboxError::PathRefused(format!(
                    "{rel}: {other:?} entries are not accepted"
                )))
            }
        }
    }
    Ok(total)
}

/// This backend's shell scripts take UTF-8 names only.
fn utf8(path: &[u8]) -> Result<&str, SandboxError> {
    std::str::from_utf8(path).map_err(|_| {
        SandboxError::PathRefused(format!(
            "{}: docker sandboxes take UTF-8 names only",
            super::names::shown(path)
        ))
    })
}

impl SandboxBackend for DockerSandboxes {
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { self.create_container(sb).await.map_err(SandboxError::from) })
    }

    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(self.call(sb, job))
    }

    fn check_call_paths<'a>(
        &'a self,
        sb: &'a Sandbox,
        paths: Vec<String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.check_writes(sb, paths))
    }

    fn read_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        Box::pin(async move { self.read(sb, utf8(path)?).await })
    }

    fn write_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { self.write(sb, utf8(path)?, content).await })
    }

    fn list<'a>(
        &'a self,
        sb: &'a Sandbox,
        dir: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<FileEntry>, SandboxError>> {
        Box::pin(async move { self.list_abs(sb, utf8(dir)?).await })
    }

    fn export_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
    ) -> BoxFuture<'a, Result<super::TarStream, SandboxError>> {
        Box::pin(async move {
            let tar = bytes::Bytes::from(self.export(sb).await?);
            let once = futures_util::stream::once(async move { Ok(tar) });
            Ok(Box::pin(once) as super::TarStream)
        })
    }

    fn import_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
        tar: super::TarStream,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            use futures_util::TryStreamExt;
            let tar: Vec<u8> = tar
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .map_err(|e| SandboxError::Io("receiving the archive".into(), e))?;
            self.import(sb, tar).await
        })
    }

    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.remove(sb))
    }

    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.reconcile_known(known))
    }

    /// Sandbox containers outlive a graceful stop by design; the next start reconciles them.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Against the real engine and images; skipped (loudly) where there is no engine, failed in CI.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::exec::docker::DockerConfig;
    use crate::exec::runtime::RuntimeTable;
    use crate::exec::JobFile;

    /// Counts the sandbox user's (`$1`) processes, this shell excluded.
    const COUNT: &str = r#"n=0
for s in /proc/[0-9]*/status; do
  [ "$s" = "/proc/$$/status" ] && continue
  while read -r k v _; do
    if [ "$k" = Uid: ]; then [ "$v" = "$1" ] && n=$((n+1)); break; fi
  done < "$s"
done 2>/dev/null
echo $n"#;

    struct Env {
        sbx: DockerSandboxes,
        instance: String,
    }

    /// Whatever a test leaves, its instance's containers go (even when it panicked).
    impl Drop for Env {
        fn drop(&mut self) {
            let ids = std::process::Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label={}={}", container::LABEL_INSTANCE, self.instance),
                ])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }

    fn skip(why: String) -> Option<Env> {
        if std::env::var_os("CI").is_some() {
            panic!("docker sandbox tests need the engine and images in CI: {why}");
        }
        eprintln!("SKIPPED: docker sandbox test: {why}");
        None
    }

    async fn setup(name: &str) -> Option<Env> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let instance = format!("sbtest-{name}-{}-{nanos:x}", std::process::id());
        // Its own range, away from the services' default one: these tests make few containers.
        let uids = crate::exec::uids::Uids::new(
            crate::exec::uids::UidRange {
                first: 300_000 + (nanos % 1000) * 100,
                count: 100,
            },
            None,
        )
        .unwrap();
        let cfg = DockerConfig {
            instance: instance.clone(),
            pool_per_shape: 0,
            pool_max_total: 0,
            cpus: 1.0,
            uids,
        };
        let exec = match DockerExecutor::new(cfg).await {
            Ok(e) => e,
            Err(e) => return skip(e),
        };
        if let Some(e) = exec.unavailable() {
            return skip(e.to_string());
        }
        exec.probe(None).await;
        for lang in ["python", "bash", "c"] {
            if !exec.available().contains_key(lang) {
                return skip(format!("the {lang} image did not pass its probe; build the images with images/build.sh"));
            }
        }
        let policies = PolicySet::embedded().unwrap();
        Some(Env {
            sbx: DockerSandboxes::new(Arc::new(exec), &policies),
            instance,
        })
    }

    fn sandbox(id: &str) -> Sandbox {
        let limits = PolicySet::embedded()
            .unwrap()
            .get("default")
            .unwrap()
            .defaults;
        Sandbox {
            id: id.into(),
            team_id: 1,
            executor: "docker".into(),
            policy: "default".into(),
            state: "running".into(),
            metadata: BTreeMap::new(),
            env: vec![],
            created_at: 0,
            expires_at: 0,
            last_used_at: 0,
            idle_timeout_seconds: None,
            ttl_seconds: None,
            limits,
        }
    }

    fn job(lang: &str, code: &str, wall_ms: u64) -> Job {
        let p = PolicySet::embedded().unwrap();
        let p = p.get("default").unwrap();
        Job {
            id: "run-1".into(),
            runtime: RuntimeTable::embedded().find(lang).unwrap().clone(),
            policy: "default".into(),
            limits: Limits {
                wall_time_ms: wall_ms,
                ..p.defaults
            },
            compile_limits: p.compile,
            open_files: p.open_files,
            docker_runtime: None,
            code: code.into(),
            files: vec![],
            stdin: vec![],
            args: vec![],
            env: vec![],
            stream: None,
        }
    }

    impl Env {
        async fn procs(&self, sb: &Sandbox) -> usize {
            let h = self.sbx.handle(sb).await.unwrap();
            let out = sh(
                &self.sbx.exec,
                &h.id,
                h.uid,
                COUNT,
                &[&h.uid.to_string()],
                b"",
                64,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            out.stdout.lossy().trim().parse().unwrap()
        }

        async fn containers(&self) -> Vec<container::SandboxContainer> {
            container::list_sandboxes(self.sbx.exec.engine(), &self.instance)
                .await
                .unwrap()
        }
    }

    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_size(0);
                b.append_link(&mut h, path, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                // Set by hand: the builder's checks would refuse the hostile names under test.
                h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_are_checked_whole_before_unpacking() {
        use tar::EntryType::{Directory as D, Fifo, Link as H, Regular as F, Symlink as L};
        let ok = archive(&[
            ("./", D, ""),
            ("./a/", D, ""),
            ("./a/x.txt", F, "12345"),
            ("./ln", L, "a/x.txt"),
            ("b.txt", F, "abc"),
        ]);
        assert_eq!(check_archive(&ok, vec![]).unwrap(), 8);
        let refused = |entries: &[(&str, tar::EntryType, &str)], links: &[&str]| {
            let r = check_archive(
                &archive(entries),
                links.iter().map(|l| l.to_string()).collect(),
            );
            assert!(
                matches!(r, Err(SandboxError::PathRefused(_))),
                "{entries:?}: {r:?}"
            );
        };
        refused(&[("esc", L, "/etc"), ("esc/pwned", F, "x")], &[]);
        refused(&[("planted/pwned", F, "x")], &["planted"]);
        refused(&[("/abs", F, "x")], &[]);
        refused(&[("a/../../up", F, "x")], &[]);
        refused(&[("hard", H, "/etc/passwd")], &[]);
        refused(&[("fifo", Fifo, "")], &[]);
        // A directory entry replaces a planted link of its name; what follows is beneath it.
        assert_eq!(
            check_archive(
                &archive(&[("planted/", D, ""), ("planted/f", F, "x")]),
                vec!["planted".into()]
            )
            .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn files_persist_across_calls_and_round_trip_through_tar() {
        let Some(env) = setup("files").await else {
            return;
        };
        let sb = sandbox("sb-files");
        env.sbx.create(&sb).await.unwrap();

        env.sbx
            .write_file(&sb, b"data/in.txt", b"hello from the host".to_vec())
            .await
            .unwrap();
        let mut j = job(
            "python",
            "d = open('data/in.txt').read()\nprint(d.upper())\nopen('out.txt', 'w').write(d[::-1])",
            10_000,
        );
        j.files = vec![JobFile {
            path: "lib/helper.py".into(),
            content: b"X = 41".to_vec(),
        }];
        let r = env.sbx.exec(&sb, &j).await.unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str(), r.executor.as_str()),
            (Status::Ok, "HELLO FROM THE HOST\n", "docker"),
            "{r:?}"
        );
        assert_eq!(
            env.sbx.read_file(&sb, b"out.txt").await.unwrap(),
            b"tsoh eht morf olleh"
        );

        // A second call sees what the first one left, and the job's files.
        let r = env.sbx.exec(&sb, &job("python", "import sys; sys.path.insert(0, 'lib'); import helper\nprint(helper.X + 1, open('out.txt').read()[:4])", 10_000)).await.unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str()),
            (Status::Ok, "42 tsoh\n"),
            "{r:?}"
        );

        // A compiled language compiles in the sandbox; its artifact stays in /work.
        let r = env
            .sbx
            .exec(
                &sb,
                &job(
                    "c",
                    "#include <stdio.h>\nint main(void){puts(\"compiled\");return 3;}",
                    10_000,
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.stdout.as_str()),
            (Status::Error, Some(3), "compiled\n"),
            "{r:?}"
        );
        assert_eq!(r.compile.as_ref().map(|c| c.status), Some(Status::Ok));

        let e = |path: &str, size, kind| FileEntry::new(path.as_bytes(), size, kind);
        let listed = env.sbx.list(&sb, b"").await.unwrap();
        let names: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        let pyc = "lib/__pycache__/helper.cpython-311.pyc";
        assert_eq!(
            names,
            [
                "data",
                "data/in.txt",
                "lib",
                "lib/__pycache__",
                pyc,
                "lib/helper.py",
                "main",
                "main.c",
                "main.py",
                "out.txt"
            ]
        );
        assert!(
            listed.contains(&e("data/in.txt", 19, FileKind::File))
                && listed.contains(&e("data", 0, FileKind::Dir))
        );
        assert_eq!(
            env.sbx.list(&sb, b"data").await.unwrap(),
            vec![e("data/in.txt", 19, FileKind::File)]
        );
        assert!(matches!(
            env.sbx.list(&sb, b"nope").await,
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            env.sbx.list(&sb, b"out.txt").await,
            Err(SandboxError::PathConflict(_))
        ));
        assert!(matches!(
            env.sbx.read_file(&sb, b"nope.txt").await,
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            env.sbx.read_file(&sb, b"data").await,
            Err(SandboxError::PathConflict(_))
        ));

        // Export from one sandbox, import into another: the same tree, the same bytes.
        let tar = env.sbx.export_tar(&sb).await.unwrap();
        let other = sandbox("sb-files-2");
        env.sbx.create(&other).await.unwrap();
        env.sbx.import_tar(&other, tar).await.unwrap();
        assert_eq!(env.sbx.list(&other, b"").await.unwrap(), listed);
        assert_eq!(
            env.sbx.read_file(&other, b"data/in.txt").await.unwrap(),
            b"hello from the host"
        );
        let r = env
            .sbx
            .exec(&other, &job("bash", "./main; echo $?", 10_000))
            .await
            .unwrap();
        assert_eq!(
            r.stdout, "compiled\n3\n",
            "the compiled program came along, executable"
        );

        // Writes over the sandbox's disk size are refused before a byte lands.
        let big = vec![b'x'; sb.limits.disk_bytes as usize];
        assert!(matches!(
            env.sbx.write_file(&sb, b"big", big).await,
            Err(SandboxError::TooLarge { .. })
        ));
        assert!(matches!(
            env.sbx.read_file(&sb, b"big").await,
            Err(SandboxError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn no_process_of_a_call_outlives_it() {
        let Some(env) = setup("procs").await else {
            return;
        };
        let sb = sandbox("sb-procs");
        env.sbx.create(&sb).await.unwrap();

        let started = Instant::now();
        let r = env
            .sbx
            .exec(
                &sb,
                &job("bash", "trap '' TERM; echo started; sleep 30", 1_000),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str()),
            (Status::Timeout, "started\n"),
            "{r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered after {:?}",
            started.elapsed()
        );
        assert_eq!(env.procs(&sb).await, 0, "the timed-out call left processes");

        // A daemonized child that would write a file a second later never gets to.
        let code = "import os, subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1; echo late > /work/late'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint('parent done')";
        let r = env
            .sbx
            .exec(&sb, &job("python", code, 10_000))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str()),
            (Status::Ok, "parent done\n"),
            "{r:?}"
        );
        assert_eq!(
            env.procs(&sb).await,
            0,
            "the daemonized child survived its call"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(matches!(
            env.sbx.read_file(&sb, b"late").await,
            Err(SandboxError::NotFound(_))
        ));

        // A call whose caller goes away (a client hung up) is killed in the background, before
        // the next operation on the sandbox may start.
        let slow = job("bash", "echo started; sleep 30", 60_000);
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), env.sbx.exec(&sb, &slow))
                .await
                .is_err()
        );
        env.sbx.list(&sb, b"").await.unwrap();
        assert_eq!(env.procs(&sb).await, 0, "the cancelled call left processes");

        // A call's CPU limit is its own, below the sandbox's.
        let mut spin = job("python", "while True: pass", 20_000);
        spin.limits.cpu_time_ms = 1_000;
        // Twice: the second would report the container's 2 s total if the first were not subtracted.
        for _ in 0..2 {
            let r = env.sbx.exec(&sb, &spin).await.unwrap();
            assert_eq!(r.status, Status::CpuLimit, "{r:?}");
            assert!(
                (500..1_500).contains(&r.usage.cpu_time_ms),
                "cpu is this call's, not the container's total: {:?}",
                r.usage
            );
        }

        // Memory is the sandbox's: a call over it is memory_limit, from the engine's OOM record.
        let r = env
            .sbx
            .exec(
                &sb,
                &job(
                    "python",
                    "x = bytearray(512 << 20)\nprint('survived')",
                    10_000,
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str()),
            (Status::MemoryLimit, ""),
            "{r:?}"
        );

        // A fork bomb (its script returns at once; the bomb goes on in the background) is held by
        // the pids limit and cleaned up after, though it holds every pid; the sandbox keeps working.
        let r = env
            .sbx
            .exec(&sb, &job("bash", "b() { b | b & }; b", 2_000))
            .await
            .unwrap();
        assert!(matches!(r.status, Status::Ok | Status::Error), "{r:?}");
        assert_eq!(env.procs(&sb).await, 0, "the fork bomb left processes");
        let r = env
            .sbx
            .exec(&sb, &job("bash", "echo still here", 10_000))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.stdout.as_str()),
            (Status::Ok, "still here\n"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn links_planted_by_a_call_are_never_followed() {
        let Some(env) = setup("links").await else {
            return;
        };
        let sb = sandbox("sb-links");
        env.sbx.create(&sb).await.unwrap();
        env.sbx
            .write_file(&sb, b"real/f.txt", b"ok".to_vec())
            .await
            .unwrap();
        let plant = "ln -s /etc/shadow s; ln -s /etc d; ln -s /nonexistent dangling; ln -s real alias; mkfifo fifo; echo planted";
        let r = env
            .sbx
            .exec(&sb, &job("bash", plant, 10_000))
            .await
            .unwrap();
        assert_eq!(r.stdout, "planted\n", "{r:?}");

        fn refused<T>(r: Result<T, SandboxError>, what: &str) {
            assert!(
                matches!(
                    r,
                    Err(SandboxError::PathRefused(_) | SandboxError::PathConflict(_))
                ),
                "{what}: {:?}",
                r.map(|_| ())
            );
        }
        refused(
            env.sbx.read_file(&sb, b"s").await,
            "read through a link to /etc/shadow",
        );
        refused(
            env.sbx.read_file(&sb, b"d/passwd").await,
            "read through a directory link",
        );
        refused(
            env.sbx.read_file(&sb, b"alias/f.txt").await,
            "read through a link inside /work",
        );
        refused(
            env.sbx.read_file(&sb, b"dangling").await,
            "read a dangling link",
        );
        refused(
            env.sbx.read_file(&sb, b"fifo").await,
            "read a fifo (and return at once)",
        );
        refused(
            env.sbx.write_file(&sb, b"s", b"x".to_vec()).await,
            "write through a link",
        );
        refused(
            env.sbx.write_file(&sb, b"d/new", b"x".to_vec()).await,
            "write beneath a directory link",
        );
        refused(
            env.sbx.write_file(&sb, b"dangling", b"x".to_vec()).await,
            "write through a dangling link",
        );
        refused(
            env.sbx.write_file(&sb, b"fifo", b"x".to_vec()).await,
            "write into a fifo",
        );
        refused(
            env.sbx.list(&sb, b"d").await,
            "list through a directory link",
        );
        let tar = archive(&[("d/new", tar::EntryType::Regular, "x")]);
        refused(
            env.sbx
                .import_tar(
                    &sb,
                    Box::pin(futures_util::stream::once(async move {
                        Ok(bytes::Bytes::from(tar))
                    })),
                )
                .await,
            "unpack beneath a planted link",
        );
        assert!(matches!(
            env.sbx.read_file(&sb, b"../etc/passwd").await,
            Err(SandboxError::PathRefused(_))
        ));

        let listed = env.sbx.list(&sb, b"").await.unwrap();
        let links: Vec<&str> = listed
            .iter()
            .filter(|e| e.kind == FileKind::Symlink)
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            links,
            ["alias", "d", "dangling", "s"],
            "links are listed, fifos left out: {listed:?}"
        );
        assert_eq!(env.sbx.read_file(&sb, b"real/f.txt").await.unwrap(), b"ok");
        // The program itself can follow its link, and meets the container's own file.
        let r = env
            .sbx
            .exec(&sb, &job("bash", "cat s", 10_000))
            .await
            .unwrap();
        assert!(
            r.stderr.contains("Permission denied") && r.stdout.is_empty(),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn destroy_sweep_and_reconcile_keep_exactly_the_known_sandboxes() {
        let Some(env) = setup("reconcile").await else {
            return;
        };
        let (a, b, c, d) = (
            sandbox("sb-a"),
            sandbox("sb-b"),
            sandbox("sb-c"),
            sandbox("sb-d"),
        );
        for sb in [&a, &b, &d] {
            env.sbx.create(sb).await.unwrap();
        }
        env.sbx
            .write_file(&a, b"keep.txt", b"kept".to_vec())
            .await
            .unwrap();

        // The executor's sweep (start and graceful stop) leaves sandbox containers alone.
        container::sweep(env.sbx.exec.engine(), &env.instance)
            .await
            .unwrap();
        assert_eq!(env.containers().await.len(), 3);

        // d's container stops (an engine restart would do that): its tmpfs is gone, so is d.
        let h = env.sbx.handle(&d).await.unwrap();
        env.sbx
            .exec
            .engine()
            .stop_container(
                &h.id,
                None::<bollard::query_parameters::StopContainerOptions>,
            )
            .await
            .unwrap();

        // After a restart: a fresh backend knows nothing but what the engine lists.
        let policies = PolicySet::embedded().unwrap();
        let fresh = DockerSandboxes::new(env.sbx.exec.clone(), &policies);
        let mut lost = fresh
            .reconcile(&[
                a.clone(),
                c.clone(),
                d.clone(),
                Sandbox {
                    executor: "local".into(),
                    ..sandbox("sb-local")
                },
            ])
            .await;
        lost.sort();
        assert_eq!(lost, ["sb-c", "sb-d"]);
        let left: Vec<String> = env
            .containers()
            .await
            .into_iter()
            .map(|c| c.sandbox)
            .collect();
        assert_eq!(
            left,
            ["sb-a"],
            "b had no record and d was stopped: both removed"
        );
        assert_eq!(
            fresh.read_file(&a, b"keep.txt").await.unwrap(),
            b"kept",
            "a is reattached with its files"
        );

        fresh.destroy(&a).await.unwrap();
        assert!(env.containers().await.is_empty());
        fresh.destroy(&a).await.unwrap();
        assert!(fresh.exec(&a, &job("bash", "true", 1_000)).await.is_err());
    }
}
