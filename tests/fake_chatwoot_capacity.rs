//! The fake Chatwoot's capacity mode (`fakes/src/chatwoot/capacity.rs`): Puma's bounded pool of workers
//! with a service time per request. Beyond `workers` concurrent requests, the rest wait, so latency grows
//! with concurrency and no more than `workers` are ever in service at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ryze_fakes::chatwoot::{Capacity, Fault};
use ryze_testkit as common;

use common::*;

const SERVICE: Duration = Duration::from_millis(50);

/// `count` concurrent `GET /api` (each on its own connection); answers every request's latency and the
/// time until the last answer.
async fn burst(fake: &FakeChatwoot, count: usize) -> (Vec<Duration>, Duration) {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(count + 1))
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}/api", fake.url());
    let started = Instant::now();
    let calls = (0..count).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let sent = Instant::now();
            let status = client.get(url).send().await.unwrap().status().as_u16();
            assert_eq!(status, 200);
            sent.elapsed()
        }
    });
    let latencies = futures_util::future::join_all(calls).await;
    (latencies, started.elapsed())
}

fn mean(latencies: &[Duration]) -> Duration {
    latencies.iter().sum::<Duration>() / u32::try_from(latencies.len().max(1)).unwrap()
}

#[actix_web::test]
async fn the_pool_bounds_concurrent_service_and_latency_grows_beyond_it() {
    let fake = fake_chatwoot();
    // Off by default: eight at once are answered at once.
    assert_eq!(fake.capacity_stats(), None);
    let (_, unbounded) = burst(&fake, 8).await;

    fake.set_capacity(Some(Capacity { workers: 2, service_time: SERVICE }));
    // Up to the pool's size, each request takes about one service time.
    let (within, within_total) = burst(&fake, 2).await;
    assert!(within.iter().all(|l| *l >= SERVICE), "each request is served for the service time: {within:?}");
    fake.reset_capacity_high_water();

    // Eight at once on two workers: four rounds of 50 ms, so ≥ 200 ms until the last answer, and the
    // mean latency is that of a queue (50, 50, 100, 100, … 200 ms: 125 ms), not of one service time.
    let (beyond, beyond_total) = burst(&fake, 8).await;
    let stats = fake.capacity_stats().unwrap();
    assert_eq!(stats.high_water, 2, "never more than two in service at once: {stats:?}");
    assert!(beyond_total >= 4 * SERVICE, "8 requests on 2 workers of 50 ms took {beyond_total:?}");
    assert!(beyond.iter().max().unwrap() >= &(4 * SERVICE), "the last one waited three rounds: {beyond:?}");
    assert!(mean(&beyond) >= SERVICE * 12 / 5, "mean latency grows with the queue: {beyond:?}");
    assert!(within_total < beyond_total, "latency grows with concurrency: 2 → {within_total:?}, 8 → {beyond_total:?}");
    assert!(unbounded < beyond_total, "without the pool the same burst is faster ({unbounded:?})");
    assert_eq!((stats.in_service, stats.waiting), (0, 0));
    assert!(stats.queued >= 6, "six of the eight had to wait: {stats:?}");
    assert_eq!(stats.served, 10);

    // Off again: fast.
    fake.set_capacity(None);
    assert_eq!(fake.capacity_stats(), None);
}

#[actix_web::test]
async fn throttled_requests_and_proxy_pages_skip_the_service_time() {
    let fake = fake_chatwoot();
    let slow = Duration::from_millis(400);
    fake.set_capacity(Some(Capacity { workers: 1, service_time: slow }));
    fake.set_rate_limit(Some(1));
    let (first, _) = burst(&fake, 1).await;
    assert!(first[0] >= slow, "served by Rails: {first:?}");
    // Rack::Attack answers before Rails: a 429 at once (still in a worker, so counted as served).
    let started = Instant::now();
    let (status, body) = request(&format!("{}/api", fake.url()), "GET", None, None).await;
    assert_eq!((status, body.as_str()), (429, Some("Retry later\n")));
    assert!(started.elapsed() < slow, "the throttle answers without the service time: {:?}", started.elapsed());
    // A proxy's 503 in front of a Chatwoot that is down takes no worker at all.
    fake.set_fault(Fault::Status(503));
    let started = Instant::now();
    assert_eq!(request(&format!("{}/api", fake.url()), "GET", None, None).await.0, 503);
    assert!(started.elapsed() < slow);
    assert_eq!(fake.capacity_stats().unwrap().served, 2);
    assert_eq!(fake.status_counts().into_iter().collect::<Vec<_>>(), vec![(200, 1), (429, 1), (503, 1)]);
}
