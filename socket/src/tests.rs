//! Tests of the socket-file rules, abstract names, credentials and addresses.

use super::*;
use crate::file::bind_via_private_dir;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

#[test]
fn refuses_live_server_and_leaves_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (_listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    let err = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(guard.is_ours());
    // The first server still works.
    UnixStream::connect(&path).unwrap();
}

#[test]
fn replaces_stale_socket_and_sets_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    drop(listener);
    let _stale = guard.keep();
    assert!(path.exists());
    let (_listener, guard) = bind_unix(&path, 0o660).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    UnixStream::connect(&path).unwrap();
    drop(guard);
    assert!(!path.exists());
}

#[test]
fn default_mode_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (_listener, _guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn never_deletes_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, b"precious").unwrap();
    let err = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn guard_spares_a_newer_servers_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (old_listener, old_guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    drop(old_listener);
    // A newer server replaces the stale file.
    let (_new_listener, new_guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    assert!(!old_guard.is_ours());
    drop(old_guard);
    assert!(path.exists());
    UnixStream::connect(&path).unwrap();
    drop(new_guard);
    assert!(!path.exists());
}

#[test]
fn guard_spares_a_regular_file_put_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (_listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"x").unwrap();
    drop(guard);
    assert_eq!(std::fs::read(&path).unwrap(), b"x");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn refuses_too_long_paths_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fits = dir
        .path()
        .join("a".repeat(MAX_SOCKET_PATH - dir.path().as_os_str().len() - 1));
    assert_eq!(fits.as_os_str().len(), MAX_SOCKET_PATH);
    let (_listener, _guard) = bind_unix(&fits, DEFAULT_SOCKET_MODE).unwrap();
    UnixStream::connect(&fits).unwrap();
    let long = dir
        .path()
        .join("b".repeat(MAX_SOCKET_PATH - dir.path().as_os_str().len()));
    let err = bind_unix(&long, DEFAULT_SOCKET_MODE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let message = err.to_string();
    assert!(message.contains("too long"), "{message}");
    assert!(message.contains(&MAX_SOCKET_PATH.to_string()), "{message}");
    assert!(!long.exists());
}

#[test]
fn names_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let err = bind_unix(missing.join("s.sock"), DEFAULT_SOCKET_MODE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // A regular file where a directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    let err = bind_unix(file.join("s.sock"), DEFAULT_SOCKET_MODE).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

#[test]
fn refuses_modes_beyond_permission_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let err = bind_unix(&path, 0o4755).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(!path.exists());
}

#[test]
fn private_dir_binding_links_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let listener = bind_via_private_dir(&path, &SocketOptions::new(0o640)).unwrap();
    assert_eq!(mode_of(&path), 0o640);
    let _client = UnixStream::connect(&path).unwrap();
    listener.accept().unwrap();
    // The private directory is gone; only the socket remains.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, [std::ffi::OsString::from("p.sock")]);
    // An existing file is never replaced.
    let err = bind_via_private_dir(&path, &SocketOptions::new(0o600)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(mode_of(&path), 0o640);
    let _client = UnixStream::connect(&path).unwrap();
    listener.accept().unwrap();
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1);
}

#[test]
fn never_deletes_a_symlink_or_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.sock");
    let (listener, guard) = bind_unix(&target, DEFAULT_SOCKET_MODE).unwrap();
    drop(listener);
    let _stale = guard.keep();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = bind_unix(&link, DEFAULT_SOCKET_MODE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_socket());
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        bind_unix(&sub, DEFAULT_SOCKET_MODE).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    assert!(sub.is_dir());
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_names_and_peer_credentials() {
    let name = format!("microsocket-test-{}", std::process::id());
    let listener = bind_abstract(name.as_bytes()).unwrap();
    assert_eq!(
        bind_abstract(name.as_bytes()).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    let client = connect_abstract(name.as_bytes()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let creds = peer_credentials(&server).unwrap();
    assert_eq!(creds.pid, std::process::id());
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(creds.uid, std::fs::metadata(dir.path()).unwrap().uid());
    assert_eq!(peer_credentials(&client).unwrap().pid, std::process::id());
    let listener = Listener::from(listener);
    assert_eq!(listener.local_address(), Some(Address::Abstract(name.into_bytes())));
}

#[test]
fn parses_addresses() {
    let cases: &[(&str, Address)] = &[
        ("/run/x.sock", Address::Unix("/run/x.sock".into())),
        ("x.sock", Address::Unix("x.sock".into())),
        ("unix:///run/x.sock", Address::Unix("/run/x.sock".into())),
        ("unix:rel.sock", Address::Unix("rel.sock".into())),
        ("@name", Address::Abstract(b"name".to_vec())),
        ("tcp://127.0.0.1:7000", Address::Tcp("127.0.0.1:7000".into())),
        ("tcp://[::1]:7000", Address::Tcp("[::1]:7000".into())),
    ];
    for (s, want) in cases {
        assert_eq!(&s.parse::<Address>().unwrap(), want, "{s}");
    }
    for bad in ["", "@", "tcp://", "tcp://host", "tcp://:80", "tcp://h:99999", "unix://"] {
        assert!(bad.parse::<Address>().is_err(), "{bad}");
    }
    for s in ["/a/b", "@n", "tcp://h:1", "unix://@odd"] {
        let a: Address = s.parse().unwrap();
        assert_eq!(a.to_string().parse::<Address>().unwrap(), a, "{s}");
    }
}

#[test]
fn address_bind_and_connect_tcp() {
    let listener = Address::Tcp("127.0.0.1:0".into()).bind(DEFAULT_SOCKET_MODE).unwrap();
    let addr = listener.local_address().unwrap();
    let client = addr.connect().unwrap();
    let server = listener.accept().unwrap();
    (&client).write_all(b"hi").unwrap();
    let mut buf = [0; 2];
    (&server).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    assert!(server.peer_credentials().is_none());
}
