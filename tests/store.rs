//! The segments are the truth, the index a cache (issue #13): a node whose index was deleted
//! or garbled rebuilds it at start and every packet is readable again; a damaged segment
//! record is reported by segment file and count, the rest stay readable, nothing panics.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn store_dir(datadir: &Path) -> PathBuf {
    netdir(datadir).join(bump::config::STORE_DIR)
}

/// Every entry of the store directory but the segment files.
fn index_files(datadir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store_dir(datadir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "segments")
        .collect()
}

fn remove(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap()
    } else {
        std::fs::remove_file(p).unwrap()
    }
}

#[test]
fn a_deleted_garbled_or_damaged_index_is_rebuilt_from_the_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut n = TestNode::start(d.path(), &[]);
    let msgs: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("#repair-{i}"), random_bytes(500 + 1500 * i)))
        .collect();
    for (tag, data) in &msgs {
        n.ok(&["send", tag, "-"], Some(data));
    }
    let held = n.packet_count();
    assert!(held >= 4 + 3);
    let all_readable = |n: &TestNode| {
        msgs.iter()
            .all(|(tag, data)| n.cli(&["get", tag], None).stdout == *data)
    };
    assert!(n.terminate());

    // 1. The index deleted: rebuilt at start, everything readable.
    for p in index_files(d.path()) {
        remove(&p);
    }
    let mut n = TestNode::start(d.path(), &[]);
    let st = n.status();
    let why = st["index_rebuilt"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("missing"), "{st}");
    assert_eq!(n.packet_count(), held);
    assert!(all_readable(&n));
    assert!(n.terminate());

    // 2. The index garbled: every file of it overwritten with noise.
    for p in index_files(d.path()) {
        if p.is_file() {
            let len = std::fs::metadata(&p).unwrap().len().max(4096) as usize;
            std::fs::write(&p, random_bytes(len)).unwrap();
        }
    }
    let mut n = TestNode::start(d.path(), &[]);
    let st = n.status();
    assert!(st["index_rebuilt"].is_string(), "{st}");
    assert_eq!(n.packet_count(), held);
    assert!(all_readable(&n));
    assert!(n.terminate());

    // 3. One record of a segment damaged: after --reindex it is reported by segment, and
    // every other message is readable. The smallest message is one packet: damage the first
    // record of the file, which is that packet (sent first, appended first).
    let seg = std::fs::read_dir(store_dir(d.path()).join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A damaged record is told apart by its proof of work: its id no longer meets the base
    // (on regtest 1 damage in 16 would pass for a packet; on main 1 in 20,000), so pick a
    // damage the node can see.
    let original: [u8; 1024] = bytes[..1024].try_into().unwrap();
    let damaged = (1..=255u8)
        .map(|k| {
            let mut r = original;
            for b in &mut r[100..140] {
                *b ^= k;
            }
            r
        })
        .find(|r| {
            bump::pow::work_of(&bump::packet::PacketId::of_bytes(r)) < bump::pow::REGTEST_BASE_WORK
        })
        .unwrap();
    bytes[..1024].copy_from_slice(&damaged);
    std::fs::write(&seg, &bytes).unwrap();
    let n = TestNode::start(d.path(), &["--reindex"]);
    let st = n.status();
    assert!(
        st["index_rebuilt"].as_str().unwrap().contains("--reindex"),
        "{st}"
    );
    let damaged = st["store_damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{st}");
    assert_eq!(
        damaged[0]["segment"].as_str().unwrap(),
        seg.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(damaged[0]["packets"], 1);
    assert_eq!(n.packet_count(), held - 1);
    for (tag, data) in &msgs[1..] {
        assert_eq!(&n.ok(&["get", tag], None), data, "{tag}");
    }
    let text = String::from_utf8(n.ok(&["status"], None)).unwrap();
    assert!(
        text.contains("damaged") && text.contains("rebuilt"),
        "{text}"
    );
}
