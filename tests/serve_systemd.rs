//! The daemon under systemd's notification protocol, as `systemd/brainaged.service` runs it
//! (`Type=notify`, `WatchdogSec`, `ExecReload`): READY once it accepts associations, watchdog
//! pings at half the interval while it runs, RELOADING then READY at SIGHUP, STOPPING at
//! SIGTERM. A Unix datagram socket stands in for systemd's.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use brainaged::db::Db;
use common::*;

/// Every message the daemon sent within `window`, in order.
fn messages_within(systemd: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        systemd
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match systemd.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading the notification socket: {e}"),
        }
    }
    got
}

#[tokio::test]
async fn the_daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let (_db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&socket).unwrap();
    let socket = socket.display().to_string();
    // A 400 ms watchdog: pings every 200 ms.
    let env = [
        ("NOTIFY_SOCKET", socket.as_str()),
        ("WATCHDOG_USEC", "400000"),
    ];
    let mut daemon = Daemon::start(&tmp.path().join("spool"), &url, &env);

    let first = messages_within(&systemd, Duration::from_secs(5));
    assert_eq!(
        first.first().map(String::as_str),
        Some("READY=1"),
        "{first:?}"
    );
    let pings = messages_within(&systemd, Duration::from_millis(1200));
    assert!(
        pings.iter().all(|m| m == "WATCHDOG=1"),
        "only pings while running: {pings:?}"
    );
    assert!(
        (3..=12).contains(&pings.len()),
        "{} pings in 1.2 s at 200 ms",
        pings.len()
    );

    // SIGHUP (`systemctl reload`): RELOADING, then READY once the reload is done.
    let reload_log = daemon.reload();
    assert!(
        reload_log.contains("configuration reloaded"),
        "{reload_log}"
    );
    let reload: Vec<_> = messages_within(&systemd, Duration::from_millis(300))
        .into_iter()
        .filter(|m| m != "WATCHDOG=1")
        .collect();
    assert_eq!(reload.len(), 2, "{reload:?}");
    assert!(
        reload[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reload:?}"
    );
    assert_eq!(reload[1], "READY=1", "{reload:?}");

    assert!(daemon.terminate().success());
    let last = messages_within(&systemd, Duration::from_millis(200));
    assert!(
        last.iter().any(|m| m == "STOPPING=1"),
        "STOPPING at SIGTERM: {last:?}"
    );
}
