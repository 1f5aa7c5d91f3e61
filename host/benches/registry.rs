#![allow(missing_docs)] // criterion_group! generates an undocumented function

//! What a publish costs as subscriptions pile up: the publish rate to one
//! matching subscriber with no other subscriptions and with 100,000 others
//! (exact topics, `a.*.cN`, `*.xN` and `a.N.>` patterns over 1,000
//! connections), and subscribe plus unsubscribe at that size.
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

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_to_one_subscriber");
    for others in [0, 100_000] {
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
