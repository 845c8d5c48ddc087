//! Wall time of `bump send` + `bump get` of a 1 MiB file through a running node (goal < 1 s),
//! beside a baseline measured in the same run: `bump tag` (a process start that talks to no
//! node) twice, plus copying the file with `cat`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bump");

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { 5 };
    let dir = tempfile::tempdir().unwrap();
    let dd = dir.path().to_str().unwrap().to_string();
    let mut node = Command::new(BIN)
        .args([
            "--datadir",
            &dd,
            "--regtest",
            "node",
            "--rpc-bind",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = dir.path().join("regtest/rpc.addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !addr.exists() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let file = dir.path().join("mib");
    let mut data = vec![0u8; 1 << 20];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let f = file.to_str().unwrap();

    let mut best = f64::MAX;
    let mut best_base = f64::MAX;
    for i in 0..rounds {
        let tag = format!("#bench{i}");
        let t = Instant::now();
        let s = Command::new(BIN)
            .args(["--datadir", &dd, "--regtest", "send", &tag, f])
            .output()
            .unwrap();
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
        let g = Command::new(BIN)
            .args(["--datadir", &dd, "--regtest", "get", &tag])
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(
            g.status.success() && g.stdout == data,
            "round trip not byte-exact"
        );
        best = best.min(secs);

        let t = Instant::now();
        for _ in 0..2 {
            Command::new(BIN).args(["tag", "x"]).output().unwrap();
        }
        let c = Command::new("cat").arg(f).output().unwrap();
        assert_eq!(c.stdout.len(), data.len());
        best_base = best_base.min(t.elapsed().as_secs_f64());
    }
    let _ = node.kill();
    let _ = node.wait();
    println!("bump send + bump get of 1 MiB: {:.3} s (best of {rounds})   baseline 2 process starts + cat: {:.3} s", best, best_base);
}
