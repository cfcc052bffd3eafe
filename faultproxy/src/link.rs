//! One proxied connection: a client socket, an upstream socket, and a [`Flow`] per direction
//! that watches the proxy's toxics for as long as the connection lives.

use std::time::Instant;

use bytes::BytesMut;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::flow::{Ending, Flow, Next};
use crate::toxic::{Stream, Toxic};

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 32 * 1024;

/// How one direction ended.
enum Outcome {
    /// The input ended and the output was shut down; the other direction may go on.
    Finished,
    /// The connection must end.
    End(Ending),
}

/// Relays `client` to `upstream` until either side closes, a toxic ends the connection, or
/// `cancel` fires (proxy disabled, deleted or server stopped).
pub(crate) async fn run(
    mut client: TcpStream,
    upstream: String,
    toxics: watch::Receiver<Vec<Toxic>>,
    cancel: CancellationToken,
) {
    let connected = tokio::select! {
        _ = cancel.cancelled() => return,
        connected = TcpStream::connect(&upstream) => connected,
    };
    let mut server = match connected {
        Ok(server) => server,
        Err(e) => {
            // As Toxiproxy does: the client sees its connection closed.
            tracing::warn!(%upstream, error = %e, "upstream unreachable");
            return;
        }
    };
    // Nagle's algorithm would add its own delays to the ones toxics ask for.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if relay(&mut client, &mut server, toxics, &cancel).await == Ending::Reset {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    toxics: watch::Receiver<Vec<Toxic>>,
    cancel: &CancellationToken,
) -> Ending {
    let (client_in, client_out) = client.split();
    let (server_in, server_out) = server.split();
    let up = pump(Stream::Upstream, client_in, server_out, toxics.clone());
    let down = pump(Stream::Downstream, server_in, client_out, toxics);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return Ending::Close,
            outcome = &mut up, if !up_done => { up_done = true; outcome }
            outcome = &mut down, if !down_done => { down_done = true; outcome }
        };
        match outcome {
            Outcome::End(ending) => return ending,
            Outcome::Finished if up_done && down_done => return Ending::Close,
            Outcome::Finished => {}
        }
    }
}

/// Moves one direction's bytes, as the toxics allow, re-reading the toxics whenever they
/// change, even while waiting for data or for a write to drain.
async fn pump(
    stream: Stream,
    mut input: ReadHalf<'_>,
    mut output: WriteHalf<'_>,
    mut toxics: watch::Receiver<Vec<Toxic>>,
) -> Outcome {
    let mut flow = Flow::new(stream, Instant::now(), SmallRng::from_os_rng());
    flow.sync(&toxics.borrow_and_update(), Instant::now());
    let mut buf = BytesMut::new();
    loop {
        let (read, write, wake) = match flow.next(Instant::now()) {
            Next::Continue { read, write, wake } => (read, write, wake),
            Next::Shutdown => {
                let _ = output.shutdown().await;
                return Outcome::Finished;
            }
            Next::End(ending) => return Outcome::End(ending),
        };
        if buf.capacity() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        let sleep_until = wake.map(tokio::time::Instant::from_std);
        tokio::select! {
            changed = toxics.changed() => match changed {
                Ok(()) => flow.sync(&toxics.borrow_and_update(), Instant::now()),
                // The proxy is gone.
                Err(_) => return Outcome::End(Ending::Close),
            },
            written = output.write(flow.ready()), if write => match written {
                Ok(n) if n > 0 => {
                    if let Some(ending) = flow.wrote(n) {
                        return Outcome::End(ending);
                    }
                }
                _ => return Outcome::End(Ending::Close),
            },
            got = input.read_buf(&mut buf), if read => match got {
                Ok(0) => flow.eof(Instant::now()),
                Ok(_) => flow.push(buf.split().freeze(), Instant::now()),
                Err(_) => return Outcome::End(Ending::Close),
            },
            _ = sleep(sleep_until), if sleep_until.is_some() => {}
        }
    }
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
