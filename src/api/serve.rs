//! Serving connections with bounds one caller cannot wear down: a request head must arrive
//! within `header_read_timeout` (hyper's timer, which also ends a kept-alive connection idle
//! that long), a request body or a response write that makes no progress for `idle_timeout`
//! ends the connection, and at most `max_connections` are open at once. At the bound, a new
//! connection evicts the connection that has waited longest without a request in progress; when
//! every open connection is busy with a request, accepting pauses until one ends or falls idle
//! (a kept-alive connection after its response), and that one is evicted. So a flood of
//! half-sent requests cannot keep `/healthz` or an authenticated run off the air, and never
//! takes the descriptors runs need.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The open connections: whether each has a request in progress, since when it has not, and
/// how to ask it to close. A connection is entered when it is accepted, before its task runs,
/// so every slot taken is in the table.
#[derive(Default)]
struct Table {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Conn>>,
    /// Woken when a connection's last request ends: the accept loop, waiting at the bound with
    /// every connection busy, may evict it.
    fell_idle: Notify,
}

struct Conn {
    busy: usize,
    idle_since: Instant,
    /// Asked to close and not yet gone: not asked again.
    evicted: bool,
    evict: Arc<Notify>,
}

impl Table {
    fn open(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.conns.lock().unwrap().insert(
            id,
            Conn {
                busy: 0,
                idle_since: Instant::now(),
                evicted: false,
                evict: evict.clone(),
            },
        );
        (id, evict)
    }

    fn close(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }

    fn busy(&self, id: u64, delta: isize) {
        if let Some(c) = self.conns.lock().unwrap().get_mut(&id) {
            c.busy = c.busy.saturating_add_signed(delta);
            if c.busy == 0 {
                c.idle_since = Instant::now();
                self.fell_idle.notify_waiters();
            }
        }
    }

    fn is_idle(&self, id: u64) -> bool {
        self.conns
            .lock()
            .unwrap()
            .get(&id)
            .is_none_or(|c| c.busy == 0)
    }

    /// Ask the connection idle the longest to close; false when every connection is busy or
    /// already closing.
    fn evict_oldest_idle(&self) -> bool {
        let mut conns = self.conns.lock().unwrap();
        match conns
            .values_mut()
            .filter(|c| c.busy == 0 && !c.evicted)
            .min_by_key(|c| c.idle_since)
        {
            Some(c) => {
                c.evicted = true;
                // notify_one keeps the permit if the connection's task is not waiting yet.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// A slot, at the bound: the connection idle the longest is asked to close and its slot
    /// awaited. With none idle, the next slot freed is awaited, or the next connection to fall
    /// idle is asked to close in turn.
    async fn room(&self, slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        loop {
            let fell_idle = self.fell_idle.notified();
            tokio::pin!(fell_idle);
            // Registered before looking, so a connection that falls idle meanwhile is not missed.
            fell_idle.as_mut().enable();
            if self.evict_oldest_idle() {
                tracing::debug!("at max_connections: closing the connection idle the longest");
                return acquire(slots).await;
            }
            tokio::select! {
                p = acquire(slots) => return p,
                _ = fell_idle => {}
            }
        }
    }
}

async fn acquire(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    slots
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed")
}

/// Connections the kernel completes and queues before the service accepts them. std's and
/// tokio's 128 drops the SYNs of a larger burst (each retried only a second later, then two),
/// and a benchmark harness opens hundreds at once. The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

/// The listening socket on `addr`.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The bound that leaves room for the service's own descriptors (runs' pipes, cgroup files,
/// the store, the engine's socket): half the process's RLIMIT_NOFILE, after raising its soft
/// limit to the hard one.
pub fn default_max_connections() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 512;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    (soft.min(1 << 20) as usize / 2).max(16)
}

/// Serve `app` on `listener` until `shutdown` completes, then let every connection finish the
/// request it is serving and close.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let table = Arc::new(Table::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::select! {
                _ = &mut shutdown => break,
                p = table.room(&slots) => p,
            },
        };
        let (id, evict) = table.open();
        let (app, table, stop) = (app.clone(), table.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, (id, evict), app, limits, table, stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a permit until it is done.
    let _all = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    (id, evict): (u64, Arc<Notify>),
    app: Router,
    limits: Limits,
    table: Arc<Table>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let svc = {
        let table = table.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            table.busy(id, 1);
            let busy = Busy {
                table: table.clone(),
                id,
            };
            let req: Request = req.map(|b| Body::new(IdleBody::new(b, limits.idle_timeout)));
            let mut app = app.clone();
            async move {
                let res = app.call(req).await?;
                // The connection stays busy until the response body is done (an event stream too).
                Ok::<_, std::convert::Infallible>(res.map(|b| {
                    Body::new(Tracked {
                        inner: b,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn =
        builder.serve_connection(TokioIo::new(StallIo::new(stream, limits.idle_timeout)), svc);
    tokio::pin!(conn);
    // Closing: a connection with no request in progress is dropped at once (hyper's graceful
    // shutdown would wait for a half-sent head to complete); one serving a request finishes it.
    let mut closing = false;
    let mut stopped = *stop.borrow();
    loop {
        if stopped && !closing {
            if table.is_idle(id) {
                break;
            }
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            _ = evict.notified(), if !closing => stopped = true,
            _ = stop.changed(), if !closing => stopped = true,
        }
    }
    table.close(id);
}

/// Marks its connection busy until dropped.
struct Busy {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.table.busy(self.id, -1);
    }
}

/// A response body that keeps its connection marked busy until it is done or dropped.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A deadline that runs while something waits and is disarmed by progress.
struct Stall {
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(timeout: Duration) -> Stall {
        Stall {
            timeout,
            sleep: None,
        }
    }

    /// After the inner poll: progress disarms it; waiting arms it (once) and polls it.
    fn expired<T>(&mut self, cx: &mut Context<'_>, inner: &Poll<T>) -> bool {
        if inner.is_ready() {
            self.sleep = None;
            return false;
        }
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

fn stalled(what: &str, timeout: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "{what} made no progress for {}s (server.idle_timeout_seconds)",
            timeout.as_secs()
        ),
    )
}

/// A request body that fails when the client sends nothing for `idle_timeout`.
struct IdleBody {
    inner: Incoming,
    stall: Stall,
}

impl IdleBody {
    fn new(inner: Incoming, timeout: Duration) -> IdleBody {
        IdleBody {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

impl hyper::body::Body for IdleBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stall.expired(cx, &polled) {
            return Poll::Ready(Some(Err(Box::new(stalled(
                "the request body",
                this.stall.timeout,
            )))));
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket; a write the client does not read for `idle_timeout` fails, so a
/// client that stops reading a response cannot hold the connection and its buffers forever.
/// (Reads wait freely: hyper reads only when it wants a request, under its own timeouts.)
struct StallIo {
    inner: TcpStream,
    stall: Stall,
}

impl StallIo {
    fn new(inner: TcpStream, timeout: Duration) -> StallIo {
        StallIo {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

impl AsyncRead for StallIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if this.stall.expired(cx, &polled) {
            return Poll::Ready(Err(stalled("the response", this.stall.timeout)));
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if this.stall.expired(cx, &polled) {
            return Poll::Ready(Err(stalled("the response", this.stall.timeout)));
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
