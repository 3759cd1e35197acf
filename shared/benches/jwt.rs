//! Sign and verify time per algorithm (`cargo bench -p shared --bench jwt`), and the cost of
//! turning a fetched key set into usable keys (the CPU part of a cold start's key load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shared::keys::{KeyAlg, KeyDoc, KeyProvider, KeySet};
use shared::tokens::{Jwt, Subject};

fn subject() -> Subject<'static> {
    Subject {
        user_id: "9c5e1f0e-0000-4000-8000-000000000000",
        email: "ada@example.com",
        email_verified: true,
        is_superuser: false,
        session_version: 3,
        amr: &["pwd"],
        session_id: "s1",
    }
}

fn bench(c: &mut Criterion) {
    for alg in [KeyAlg::ES256, KeyAlg::RS256, KeyAlg::HS256] {
        let doc = KeyDoc::generate(alg).unwrap();
        let keys = KeySet::from_stages(&doc.to_json(), None, None).unwrap();
        let jwt = Jwt::new(
            Arc::new(KeyProvider::fixed(keys)),
            "https://auth.example.com".into(),
            "secure-auth".into(),
            Duration::from_secs(900),
        );
        let now = shared::now();
        let (token, _) = jwt.issue(&subject(), now).unwrap();
        c.bench_function(&format!("{alg:?} sign"), |b| b.iter(|| jwt.issue(black_box(&subject()), now).unwrap()));
        c.bench_function(&format!("{alg:?} verify"), |b| b.iter(|| jwt.verify(black_box(&token)).unwrap()));
        let json = doc.to_json();
        c.bench_function(&format!("{alg:?} key set parse (cold start CPU)"), |b| {
            b.iter(|| KeySet::from_stages(black_box(&json), Some(&json), None).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
