//! The downloader against an HTTP server on 127.0.0.1 that this test starts: success and cache
//! reuse, 404, hash mismatch, a transfer cut short and concurrent downloads, each with the
//! right outcome and no stray file in the cache.
#![cfg(feature = "pretrained")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use mobilenet_burn::Error;
use mobilenet_burn::pretrained::{MobileNetV2Weights, WeightsCache};
use sha2::{Digest, Sha256};

/// The served file: a real checkpoint, so that a successful download also loads.
fn payload() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2_w025_legacy.pth"))
        .expect("fixture")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves `requests` connections, then stops: `/missing.pth` is a 404, `/short.pth` promises
/// the whole payload and sends half, anything else gets the payload.
struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
}

fn serve(requests: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&count);
    let body = payload();
    thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(stream) = stream else { continue };
            served.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            thread::spawn(move || respond(stream, &body));
        }
    });
    Server {
        base,
        requests: count,
    }
}

fn respond(mut stream: TcpStream, body: &[u8]) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        request.push(byte[0]);
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let header = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let _ = match path {
        "/missing.pth" => stream.write_all(header("404 Not Found", 0).as_bytes()),
        "/short.pth" => stream
            .write_all(header("200 OK", body.len()).as_bytes())
            .and_then(|()| stream.write_all(&body[..body.len() / 2])),
        _ => stream
            .write_all(header("200 OK", body.len()).as_bytes())
            .and_then(|()| stream.write_all(body)),
    };
    // Dropping the stream closes the connection, cutting `/short.pth` off.
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn downloads_verifies_and_then_reuses_the_cache() {
    let server = serve(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let hash = sha256_hex(&payload());
    let url = format!("{}/models/weights-{}.pth", server.base, &hash[..8]);

    let path = cache.fetch_url(&url, &hash[..8]).expect("download");
    assert_eq!(std::fs::read(&path).expect("file"), payload());
    assert_eq!(
        entries(dir.path()),
        vec![format!("weights-{}.pth", &hash[..8])]
    );

    let again = cache.fetch_url(&url, &hash[..8]).expect("cache hit");
    assert_eq!(again, path);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "a cache hit makes no request"
    );

    // What arrived is a checkpoint that loads.
    mobilenet_burn::MobileNetV2Config::new()
        .with_width_mult(0.25)
        .with_num_classes(7)
        .init(&common::cpu_device())
        .load_torchvision(&path)
        .expect("load");
}

#[test]
fn http_404_is_a_download_error_and_leaves_nothing() {
    let server = serve(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let error = cache
        .fetch_url(&format!("{}/missing.pth", server.base), "00")
        .expect_err("404");
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(error.to_string().contains("404"), "{error}");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn hash_mismatch_is_an_error_and_leaves_nothing() {
    let server = serve(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let hash = sha256_hex(&payload());
    let wrong = if hash.starts_with("00") { "ff" } else { "00" };
    let error = cache
        .fetch_url(&format!("{}/weights-{wrong}.pth", server.base), wrong)
        .expect_err("mismatch");
    let Error::HashMismatch {
        expected, found, ..
    } = &error
    else {
        panic!("expected HashMismatch, got {error:?}");
    };
    assert_eq!((expected.as_str(), found.as_str()), (wrong, hash.as_str()));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn transfer_cut_short_is_an_error_and_leaves_nothing() {
    let server = serve(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let hash = sha256_hex(&payload());
    let error = cache
        .fetch_url(&format!("{}/short.pth", server.base), &hash[..8])
        .expect_err("cut short");
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn concurrent_downloads_both_end_with_a_valid_file() {
    let server = serve(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = sha256_hex(&payload());
    let url = format!("{}/weights-{}.pth", server.base, &hash[..8]);
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            let cache = WeightsCache::new(dir.path()).with_progress(false);
            let (url, prefix) = (url.clone(), hash[..8].to_string());
            thread::spawn(move || cache.fetch_url(&url, &prefix))
        })
        .collect();
    for download in downloads {
        let path = download.join().expect("thread").expect("download");
        assert_eq!(sha256_hex(&std::fs::read(path).expect("file")), hash);
    }
    assert_eq!(entries(dir.path()).len(), 1, "{:?}", entries(dir.path()));
}

#[test]
fn cached_file_is_used_without_network() {
    // The torchvision URL cannot be reached from here: a cache hit must not try.
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = sha256_hex(&payload());
    let name = format!("weights-{}.pth", &hash[..8]);
    std::fs::write(dir.path().join(&name), payload()).expect("write");
    let path = WeightsCache::new(dir.path())
        .fetch_url(&format!("{UNREACHABLE}/{name}"), &hash[..8])
        .expect("cache hit");
    assert_eq!(path, dir.path().join(&name));
}

/// A URL on a port nothing listens on: any attempt to download fails.
const UNREACHABLE: &str = "http://127.0.0.1:1";

#[test]
fn torch_hub_cache_is_used_when_its_hash_matches() {
    let hub = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    let own = root.path().join("own-cache");
    let hash = sha256_hex(&payload());
    let name = format!("weights-{}.pth", &hash[..8]);
    std::fs::write(hub.path().join(&name), payload()).expect("write");
    let cache = WeightsCache::new(&own)
        .with_progress(false)
        .with_torch_hub(Some(hub.path().to_path_buf()));
    let path = cache
        .fetch_url(&format!("{UNREACHABLE}/{name}"), &hash[..8])
        .expect("found in torch's cache, no network needed");
    assert_eq!(path, hub.path().join(&name));
    assert!(!own.exists(), "nothing written to the crate's own cache");
}

#[test]
fn a_corrupt_torch_hub_file_is_passed_over_for_a_download() {
    let server = serve(1);
    let hub = tempfile::tempdir().expect("tempdir");
    let own = tempfile::tempdir().expect("tempdir");
    let hash = sha256_hex(&payload());
    let name = format!("weights-{}.pth", &hash[..8]);
    std::fs::write(hub.path().join(&name), b"not the weights").expect("write");
    let cache = WeightsCache::new(own.path())
        .with_progress(false)
        .with_torch_hub(Some(hub.path().to_path_buf()));
    let path = cache
        .fetch_url(&format!("{}/{name}", server.base), &hash[..8])
        .expect("downloaded instead");
    assert_eq!(path, own.path().join(&name));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read(hub.path().join(&name)).expect("left alone"),
        b"not the weights"
    );
}

#[test]
fn offline_never_touches_the_network_and_says_where_the_file_goes() {
    let root = tempfile::tempdir().expect("tempdir");
    let own = root.path().join("own-cache");
    let hub = root.path().join("hub");
    let cache = WeightsCache::new(&own)
        .with_progress(false)
        .with_torch_hub(Some(hub.clone()))
        .offline(true);
    let error = cache
        .fetch_url(&format!("{UNREACHABLE}/weights-0123abcd.pth"), "0123abcd")
        .expect_err("offline");
    assert!(matches!(error, Error::Offline { .. }), "{error:?}");
    let text = error.to_string();
    for needed in [
        "weights-0123abcd.pth",
        own.to_str().unwrap(),
        hub.to_str().unwrap(),
        "from_file",
    ] {
        assert!(text.contains(needed), "`{needed}` not in: {text}");
    }
    assert!(!own.exists(), "no cache directory created");
}

#[test]
fn a_failed_download_says_what_to_do_and_leaves_no_empty_directory() {
    let server = serve(1);
    let root = tempfile::tempdir().expect("tempdir");
    let own = root.path().join("new").join("cache");
    let cache = WeightsCache::new(&own).with_progress(false);
    let error = cache
        .fetch_url(&format!("{}/missing.pth", server.base), "00")
        .expect_err("404");
    let text = error.to_string();
    assert!(
        text.contains("missing.pth") && text.contains(own.to_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("MOBILENET_BURN_CACHE"), "{text}");
    assert!(
        !own.exists(),
        "the cache directory it created is removed again"
    );
    assert!(!root.path().join("new").exists());
}

#[test]
fn a_damaged_cached_file_is_reported_not_loaded() {
    let server = serve(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let hash = sha256_hex(&payload());
    let url = format!("{}/models/weights-{}.pth", server.base, &hash[..8]);
    let path = cache.fetch_url(&url, &hash[..8]).expect("download");
    // Cut short after the download, as a full disk or an interrupted copy would.
    let bytes = std::fs::read(&path).expect("file");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let error = cache.fetch_url(&url, &hash[..8]).expect_err("damaged");
    assert!(matches!(error, Error::WrongFile { .. }), "{error:?}");
    assert!(error.to_string().contains("delete it"), "{error}");
}

#[test]
fn from_file_checks_the_weights_hash_unless_told_not_to() {
    // A real checkpoint, but not the file `MobileNetV2Weights::DEFAULT` names.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2_w025_legacy.pth");
    let device = common::cpu_device();
    let error = mobilenet_burn::MobileNetV2::from_file(MobileNetV2Weights::DEFAULT, &path, &device)
        .expect_err("wrong file");
    assert!(matches!(error, Error::WrongFile { .. }), "{error:?}");
    assert!(
        error.to_string().contains("from_file_unverified"),
        "{error}"
    );
    // Unverified, it is loaded, and the shapes (width 0.25, 7 classes) are what differ.
    let error = mobilenet_burn::MobileNetV2::from_file_unverified(
        MobileNetV2Weights::DEFAULT,
        &path,
        &device,
    )
    .expect_err("another width");
    assert!(
        matches!(error, Error::CheckpointMismatch { .. }),
        "{error:?}"
    );
}

/// Hugging Face names every file `model.safetensors`: `fetch_url_as` caches under the name it
/// is given, checks the hash when one is given (a mismatch leaves nothing), and without one
/// takes the file as it came; a name with a path in it is refused before any request.
#[test]
fn fetch_url_as_caches_under_the_given_name_with_an_optional_hash() {
    let server = serve(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = WeightsCache::new(dir.path()).with_progress(false);
    let url = format!(
        "{}/timm/some.model/resolve/main/model.safetensors",
        server.base
    );
    let hash = sha256_hex(&payload());
    let wrong = if hash.starts_with("00") { "ff" } else { "00" };

    let error = cache
        .fetch_url_as(&url, "some.model.safetensors", Some(wrong))
        .expect_err("mismatch");
    assert!(matches!(error, Error::HashMismatch { .. }), "{error:?}");
    assert!(entries(dir.path()).is_empty());

    let path = cache
        .fetch_url_as(&url, "some.model.safetensors", None)
        .expect("download");
    assert_eq!(path, dir.path().join("some.model.safetensors"));
    assert_eq!(std::fs::read(&path).expect("file"), payload());
    // Cached: no request, and a given hash is now checked against the cached file.
    let again = cache
        .fetch_url_as(&url, "some.model.safetensors", Some(&hash[..12]))
        .expect("cache hit");
    assert_eq!(again, path);
    let stale = cache
        .fetch_url_as(&url, "some.model.safetensors", Some(wrong))
        .expect_err("cached file with another hash");
    assert!(matches!(stale, Error::WrongFile { .. }), "{stale:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);

    for name in ["../escape.safetensors", "a/b.safetensors", ""] {
        let error = cache.fetch_url_as(&url, name, None).expect_err(name);
        assert!(matches!(error, Error::Download { .. }), "{name}: {error:?}");
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}
