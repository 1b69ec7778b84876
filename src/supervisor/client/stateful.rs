//! The client's side of contexts and background processes (see `server/context.rs` and
//! `server/process.rs`).

use futures_util::Stream;

use super::{broken, SupError, Supervisor};
use crate::exec::{OutputSink, StreamKind};
use crate::supervisor::proto::{
    io_async, CallExit, ContextExecSpec, ContextInfo, ContextResult, ContextSpec, Kind,
    ProcessInfo, ProcessSpec, Request,
};

/// What a context call produced.
#[derive(Debug, Default)]
pub struct ContextOutput {
    pub exit: CallExit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub result: ContextResult,
}

/// One item of a background process's logs.
#[derive(Debug)]
pub enum LogItem {
    Output(StreamKind, Vec<u8>),
    /// The last item: the process as it is when the logs end.
    End(Option<ProcessInfo>),
}

impl Supervisor {
    /// Start an interpreter; its id once it is ready.
    pub async fn context_create(&self, spec: ContextSpec) -> Result<String, SupError> {
        self.simple(Request::ContextCreate(spec))
            .await?
            .id
            .ok_or_else(|| broken("a context answered without its id"))
    }

    /// Run code in a context. Output goes to `sink` as it arrives (and is returned whole).
    /// Dropping the future interrupts the code in the sandbox.
    pub async fn context_exec(
        &self,
        spec: ContextExecSpec,
        sink: Option<OutputSink>,
    ) -> Result<ContextOutput, SupError> {
        let mut op = self.open(&Request::ContextExec(spec), &[]).await?;
        let mut out = ContextOutput::default();
        let (stdout, stderr) = (&mut out.stdout, &mut out.stderr);
        let reply = op
            .finish(|kind, b| {
                let (stream, buf) = match kind {
                    Kind::Stdout => (StreamKind::Stdout, &mut *stdout),
                    Kind::Stderr => (StreamKind::Stderr, &mut *stderr),
                    k => return Err(broken(format!("unexpected {k:?} frame in a context call"))),
                };
                if let Some(s) = &sink {
                    let _ = s.send((stream, b.clone()));
                }
                buf.extend_from_slice(&b);
                Ok(())
            })
            .await?;
        out.exit = reply
            .exit
            .ok_or_else(|| broken("a context call answered without its exit"))?;
        out.result = reply.context_result.unwrap_or_default();
        Ok(out)
    }

    pub async fn context_delete(&self, id: &str) -> Result<(), SupError> {
        self.simple(Request::ContextDelete { id: id.into() })
            .await
            .map(|_| ())
    }

    pub async fn context_list(&self) -> Result<Vec<ContextInfo>, SupError> {
        Ok(self
            .simple(Request::ContextList)
            .await?
            .contexts
            .unwrap_or_default())
    }

    pub async fn process_start(&self, spec: ProcessSpec) -> Result<String, SupError> {
        self.simple(Request::ProcessStart(spec))
            .await?
            .id
            .ok_or_else(|| broken("a process answered without its id"))
    }

    pub async fn process_list(&self) -> Result<Vec<ProcessInfo>, SupError> {
        Ok(self
            .simple(Request::ProcessList)
            .await?
            .processes
            .unwrap_or_default())
    }

    pub async fn process_kill(&self, id: &str) -> Result<(), SupError> {
        self.simple(Request::ProcessKill { id: id.into() })
            .await
            .map(|_| ())
    }

    /// A process's kept output, then (with `follow`) its output as it comes until it ends;
    /// the stream's last item is [`LogItem::End`]. An unknown process fails before the stream.
    pub async fn process_logs(
        &self,
        id: &str,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<LogItem, SupError>> + Send + 'static, SupError> {
        let mut op = self
            .open(
                &Request::ProcessLogs {
                    id: id.into(),
                    follow,
                },
                &[],
            )
            .await?;
        // The first frame tells an unknown process (an error answer) from logs.
        let first = io_async::read_frame(&mut op.rd).await.map_err(broken)?;
        let first = match first {
            Some((Kind::Response, b)) => {
                let reply = super::response(&b)?;
                return Ok(futures_util::future::Either::Left(
                    futures_util::stream::iter([Ok(LogItem::End(
                        reply.processes.and_then(|mut p| p.pop()),
                    ))]),
                ));
            }
            other => other,
        };
        let state = (Some(op), first);
        Ok(futures_util::future::Either::Right(
            futures_util::stream::unfold(state, |(op, pending)| async move {
                let mut op = op?;
                let frame = match pending {
                    Some(f) => Ok(Some(f)),
                    None => io_async::read_frame(&mut op.rd).await,
                };
                let item = match frame {
                    Ok(Some((Kind::Stdout, b))) => Ok(LogItem::Output(StreamKind::Stdout, b)),
                    Ok(Some((Kind::Stderr, b))) => Ok(LogItem::Output(StreamKind::Stderr, b)),
                    Ok(Some((Kind::Response, b))) => {
                        let end = super::response(&b)
                            .map(|r| LogItem::End(r.processes.and_then(|mut p| p.pop())));
                        return Some((end, (None, None)));
                    }
                    Ok(Some((k, _))) => Err(broken(format!("unexpected {k:?} frame in logs"))),
                    Ok(None) => Err(broken("the connection closed during logs")),
                    Err(e) => Err(broken(e)),
                };
                let next = if item.is_ok() { Some(op) } else { None };
                Some((item, (next, None)))
            }),
        ))
    }
}
