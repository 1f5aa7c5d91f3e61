#![allow(missing_docs)] // criterion_group! generates an undocumented function

//! What a publish costs as subscriptions pile up: the publish rate to one
//! matching subscriber with no other subscriptions and with up to 300,000
//! others (exact topics, `a.*.cN`, `*.xN` and `a.N.>` patterns over 1,000
//! connections), for a topic published again (its subscribers remembered)
//! and for a new topic each time; and subscribe plus unsubscribe at those
//! sizes. `docs/registry-publish.svg` is criterion's plot of the first.
//!
//! `cargo bench -p microsocket-host --bench registry`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use microsocket_core::SubscriptionKind::{Exact, Pattern};
use microsocket_host::Registry;

/// A registry with `others` unrelated subscriptions and one subscriber
/// (connection 0) to `bench.topic`.
fn registry(others: usize) -> Registry<u32, Bytes> {
    let mut registry = Registry::new();
    for i in 0..others {
        let conn = 1 + (i % 1000) as u32;
        let (kind, bytes) = match i % 4 {
            0 => (Exact, format!("topic.{i}")),
            1 => (Pattern, format!("a.*.c{i}")),
            2 => (Pattern, format!("*.x{i}")),
            _ => (Pattern, format!("a.{i}.>")),
        };
        registry.subscribe(conn, kind, bytes.as_bytes());
    }
    registry.subscribe(0, Exact, b"bench.topic");
    registry
}

/// Subscription counts the publish cost is measured at.
const SIZES: [usize; 5] = [0, 1_000, 10_000, 100_000, 300_000];

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_to_one_subscriber");
    for others in SIZES {
        let mut registry = registry(others);
        let mut out = Vec::new();
        let publication = Bytes::from_static(b"a frame");
        group.bench_with_input(BenchmarkId::from_parameter(others), &others, |b, _| {
            b.iter(|| {
                out.clear();
                registry.publish(black_box(b"bench.topic"), &publication, &mut out);
                assert_eq!(out, [0]);
            });
        });
    }
    group.finish();
    // A different topic each time, never the one before: every publish looks
    // its subscribers up afresh (the registry remembers 1,024 topics).
    let mut group = c.benchmark_group("publish_to_a_new_topic");
    let topics: Vec<Vec<u8>> = (0..4096).map(|i| format!("bench.t{i}").into_bytes()).collect();
    for others in SIZES {
        let mut registry = registry(others);
        registry.subscribe(0, Pattern, b"bench.*");
        let mut out = Vec::new();
        let publication = Bytes::from_static(b"a frame");
        let mut next = 0;
        group.bench_with_input(BenchmarkId::from_parameter(others), &others, |b, _| {
            b.iter(|| {
                out.clear();
                registry.publish(black_box(&topics[next]), &publication, &mut out);
                next = (next + 1) % topics.len();
                assert_eq!(out, [0]);
            });
        });
    }
    group.finish();
}

fn subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe_and_unsubscribe");
    for others in [0, 100_000] {
        let mut registry = registry(others);
        for (name, kind, bytes) in [
            ("exact", Exact, &b"new.topic"[..]),
            ("pattern", Pattern, &b"a.*.new"[..]),
        ] {
            group.bench_with_input(BenchmarkId::new(name, others), &others, |b, _| {
                b.iter(|| {
                    assert!(registry.subscribe(7, kind, black_box(bytes)));
                    assert!(registry.unsubscribe(7, kind, bytes));
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, publish, subscribe);
criterion_main!(benches);
