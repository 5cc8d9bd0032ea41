//! A TCP proxy for fault injection, between the product and what it talks
//! to (the emulator, a receiver): it forwards, or refuses every connection
//! (accepted, then closed at once), or blackholes them (held open, silent).
//! A fault set applies to connections already open too, as a network
//! failure would.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Refuse,
    Blackhole,
}

pub struct Proxy {
    /// `http://127.0.0.1:port`
    pub url: String,
    fault: watch::Sender<Fault>,
}

impl Proxy {
    /// A proxy to `target` (`http://host:port` or `host:port`), forwarding.
    pub async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (fault, faults) = watch::channel(Fault::None);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (faults, target) = (faults.clone(), target.clone());
                tokio::spawn(serve(client, target, faults));
            }
        });
        Self { url, fault }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

async fn serve(mut client: TcpStream, target: String, mut faults: watch::Receiver<Fault>) {
    let fault = *faults.borrow_and_update();
    match fault {
        Fault::Refuse => {}
        // Held until the fault changes; the caller's own timeout ends it first.
        Fault::Blackhole => {
            let _ = faults.changed().await;
        }
        Fault::None => {
            let Ok(mut server) = TcpStream::connect(&target).await else { return };
            let faulted = async {
                while faults.changed().await.is_ok() {
                    if *faults.borrow() != Fault::None {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = copy_bidirectional(&mut client, &mut server) => {}
                () = faulted => {}
            }
        }
    }
}
