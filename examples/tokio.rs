//! anybatch inside a tokio application: 1,000 request handlers, each checking
//! its caller's role, share a handful of backend lookups.
//!
//! Run: `cargo run --example tokio --features tokio`

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anybatch::{BatchFetcher, Fetcher, TokioSpawner, Values};

const REQUESTS: u32 = 1_000;
const USERS: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Admin,
    Member,
}

/// A directory service that answers many user ids per call.
struct Roles {
    calls: Arc<AtomicUsize>,
}

impl Fetcher for Roles {
    type Key = u32;
    type Value = Role;
    type Error = std::io::Error;

    async fn fetch(
        &self,
        users: &[u32],
        values: &mut Values<u32, Role>,
    ) -> Result<(), Self::Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await; // stands in for the network call
        values.extend(users.iter().map(|&user| {
            (
                user,
                if user % 50 == 0 {
                    Role::Admin
                } else {
                    Role::Member
                },
            )
        }));
        Ok(())
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (admins, stats) = runtime.block_on(async {
        let roles = BatchFetcher::builder(Roles {
            calls: calls.clone(),
        })
        .spawner(TokioSpawner::current().expect("inside the runtime"))
        .label("roles")
        .build()
        .unwrap();
        let handlers: Vec<_> = (0..REQUESTS)
            .map(|request| {
                let roles = roles.clone();
                tokio::spawn(async move {
                    let user = request % USERS;
                    (user, roles.load(user).await.unwrap())
                })
            })
            .collect();
        let mut admins = HashMap::new();
        for handler in handlers {
            let (user, role) = handler.await.unwrap();
            if role == Role::Admin {
                admins.insert(user, role);
            }
        }
        roles.close().await;
        (admins, roles.stats())
    });
    let calls = calls.load(Ordering::Relaxed);
    println!(
        "{REQUESTS} requests from {USERS} users, {} admins, {calls} directory calls for {} users",
        admins.len(),
        stats.queued
    );
    assert_eq!(admins.len(), 4, "users 0, 50, 100, 150 are admins");
    // How many calls depends on how the 1 ms windows fall on a busy machine;
    // that each user is looked up exactly once does not.
    assert_eq!(stats.queued, USERS.into(), "each user looked up once");
    assert!(calls >= 2, "200 users need at least two batches of 100");
}
