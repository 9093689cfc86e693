//! Connections: hyper's HTTP/1.1 on a tokio runtime. Each connection is a task (idle
//! connections cost memory, not threads), at most `max_connections` of them; a connection
//! that sends no request head within `header_timeout` (an idle keep-alive connection
//! included) is closed; `TCP_NODELAY` is set so that a response is not held back by
//! Nagle's algorithm waiting for the client's delayed ACK; heads larger than
//! `max_head_bytes` are refused by hyper (431).

use std::{convert::Infallible, sync::Arc, time::Duration};

use hyper::{Request, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::{ServeError, ServeOptions, routes::App};

/// Runs the server on `listener` until the process ends.
pub(super) fn run(
    listener: std::net::TcpListener,
    app: App,
    options: &ServeOptions,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(options.threads.max(1))
        .thread_name("saeidx-serve")
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(accept(listener, Arc::new(app), options.clone()))
}

/// Accepts connections, at most `max_connections` open at once.
async fn accept(
    listener: std::net::TcpListener,
    app: Arc<App>,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let open = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        let permit = open
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // keep serving the others.
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, options) = (app.clone(), options.clone());
        tokio::spawn(async move {
            connection(stream, app, &options).await;
            drop(permit);
        });
    }
}

/// Serves one connection's requests (keep-alive) until it closes or idles out.
async fn connection(stream: tokio::net::TcpStream, app: Arc<App>, options: &ServeOptions) {
    let service = service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.answer(request).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(options.max_head_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!("connection ended: {error}");
    }
}
