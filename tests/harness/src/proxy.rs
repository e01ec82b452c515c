//! A TCP relay between one client and one server that a test can cut and heal: a
//! partition between an instance and etcd while the test itself still reaches both.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections relayed at most over a relay's life.
const MAX_CONNECTIONS: usize = 10_000;

/// Relays connections to `target` until dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a relay");
        listener.set_nonblocking(true).expect("non-blocking relay");
        let addr = listener.local_addr().expect("relay address");
        let (cut, stop) = (Arc::<AtomicBool>::default(), Arc::<AtomicBool>::default());
        let open = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (cut, stop, open) = (Arc::clone(&cut), Arc::clone(&stop), Arc::clone(&open));
            std::thread::spawn(move || {
                let mut relayed = 0;
                while !stop.load(Ordering::Relaxed) && relayed < MAX_CONNECTIONS {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    if cut.load(Ordering::Relaxed) {
                        drop(client); // cut: closed at once
                        continue;
                    }
                    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    else {
                        continue;
                    };
                    relayed += 1;
                    let _ = client.set_nonblocking(false);
                    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone())
                        && let Ok(mut list) = open.lock()
                    {
                        list.push(c);
                        list.push(s);
                    }
                    pipe(&client, &server);
                    pipe(&server, &client);
                }
            })
        };
        Relay {
            addr,
            cut,
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// Cuts the link: open connections are shut and new ones closed at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        if let Ok(mut list) = self.open.lock() {
            for stream in list.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Heals the link: new connections are relayed again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }

    /// The relay as an etcd endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either end closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
