//! Downloads go through the proxy that `HTTPS_PROXY` names (an HTTP CONNECT proxy this test
//! runs on 127.0.0.1, tunnelling to a server also on 127.0.0.1), and `NO_PROXY` bypasses it.
//! One test in its own binary: it sets environment variables, which every download reads.
#![cfg(feature = "pretrained")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use mobilenet_burn::pretrained::WeightsCache;
use sha2::{Digest, Sha256};

const BODY: &[u8] = b"weights, as far as this test is concerned";

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An HTTP server answering every request with `BODY`; counts connections.
fn server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            read_head(&mut stream);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                BODY.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(BODY);
        }
    });
    (address, count)
}

/// A CONNECT proxy: records each target, answers 200 and tunnels bytes both ways.
fn proxy() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&targets);
    thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let head = read_head(&mut client);
            let mut words = head.split_whitespace();
            let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {target}"));
            let Ok(upstream) = TcpStream::connect(target) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                continue;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut client_read, mut upstream_write) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            thread::spawn(move || std::io::copy(&mut client_read, &mut upstream_write));
            let (mut upstream_read, mut client_write) = (upstream, client);
            thread::spawn(move || std::io::copy(&mut upstream_read, &mut client_write));
        }
    });
    (address, targets)
}

#[test]
fn downloads_honour_https_proxy_and_no_proxy() {
    let (server, served) = server();
    let (proxy, targets) = proxy();
    let prefix: String = Sha256::digest(BODY)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // SAFETY: this binary's only test runs on this thread and no other thread of the process
    // reads or writes the environment while it changes.
    unsafe {
        // ureq takes the first of ALL_PROXY, HTTPS_PROXY, HTTP_PROXY (either case) it finds.
        for name in [
            "ALL_PROXY",
            "all_proxy",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            std::env::remove_var(name);
        }
        std::env::set_var("HTTPS_PROXY", format!("http://{proxy}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let path = cache
        .fetch_url(&format!("http://{server}/a-{prefix}.pth"), &prefix)
        .expect("download through the proxy");
    assert_eq!(std::fs::read(path).unwrap(), BODY);
    assert_eq!(*targets.lock().unwrap(), vec![format!("CONNECT {server}")]);

    // SAFETY: as above.
    unsafe { std::env::set_var("NO_PROXY", "127.0.0.1") };
    cache
        .fetch_url(&format!("http://{server}/b-{prefix}.pth"), &prefix)
        .expect("direct download");
    assert_eq!(
        targets.lock().unwrap().len(),
        1,
        "NO_PROXY bypasses the proxy"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
}
