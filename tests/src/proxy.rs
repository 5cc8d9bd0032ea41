//! A TCP proxy for fault injection, between the product and what it talks
//! to (the emulator, a receiver). It forwards; or refuses every connection
//! (accepted, then closed at once); or blackholes them (held open, silent);
//! or cuts the connection of requests that carry a marker (an AWS target
//! such as `TransactWriteItems`) instead of forwarding them, or after
//! forwarding one, before its answer. A fault on every connection applies to
//! those already open too, as a network failure would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Refuse,
    Blackhole,
    /// Requests carrying the marker are not forwarded: their connection is cut.
    CutRequests(&'static str),
    /// The next request carrying the marker is forwarded, but its answer is
    /// not: the connection is cut as the answer comes. Once only; then the
    /// proxy forwards again.
    LoseAnswer(&'static str),
}

pub struct Proxy {
    /// `http://127.0.0.1:port`
    pub url: String,
    fault: Arc<watch::Sender<Fault>>,
    /// Connections refused or blackholed so far.
    faulted: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to `target` (`http://host:port` or `host:port`), forwarding.
    pub async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let fault = Arc::new(watch::channel(Fault::None).0);
        let faulted = Arc::new(AtomicUsize::new(0));
        let (faults, count) = (fault.clone(), faulted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, target.clone(), faults.clone(), count.clone()));
            }
        });
        Self { url, fault, faulted }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault now in force (a `LoseAnswer` is gone once it struck).
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Waits (up to ten seconds) until `count` connections in all have been
    /// refused or blackholed: a fault measured in the caller's attempts, not
    /// in time.
    pub async fn wait_faulted(&self, count: usize) {
        for _ in 0..1000 {
            if self.faulted.load(Ordering::SeqCst) >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} connections faulted, not {count}", self.faulted.load(Ordering::SeqCst));
    }
}

async fn serve(client: TcpStream, target: String, fault: Arc<watch::Sender<Fault>>, faulted: Arc<AtomicUsize>) {
    let mut faults = fault.subscribe();
    let now = *faults.borrow_and_update();
    match now {
        Fault::Refuse => {
            faulted.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // Held until the fault changes; the caller's own timeout ends it first.
        Fault::Blackhole => {
            faulted.fetch_add(1, Ordering::SeqCst);
            let _ = faults.changed().await;
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(&target).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let losing = AtomicBool::new(false);
    let upstream = async {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buffer).await
            && n > 0
        {
            let chunk = &buffer[..n];
            let carries = |marker: &str| chunk.windows(marker.len()).any(|w| w == marker.as_bytes());
            // Copied out: the watch's lock must not be held while it is replaced.
            let now = *fault.borrow();
            match now {
                Fault::CutRequests(marker) if carries(marker) => return,
                Fault::LoseAnswer(marker) if carries(marker) => {
                    fault.send_replace(Fault::None);
                    losing.store(true, Ordering::SeqCst);
                }
                _ => {}
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buffer).await
            && n > 0
        {
            if losing.load(Ordering::SeqCst) {
                return;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Refusing or blackholing cuts connections already open.
    let cut = async {
        while faults.changed().await.is_ok() {
            if matches!(*faults.borrow(), Fault::Refuse | Fault::Blackhole) {
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    // Whichever ends first closes both connections.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        () = cut => {}
    }
}
