//! anybatch on async-std: pricing shopping carts, where many carts share
//! products and each price is fetched once.
//!
//! async-std is deprecated upstream (RUSTSEC-2025-0052); this example is for
//! applications that still run on it.
//!
//! Run: `cargo run --example async_std --features async-std`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anybatch::{AsyncStdSpawner, BatchFetcher, Fetcher, Values};

/// Prices in cents from a catalogue that answers many SKUs per request.
struct Prices {
    skus_fetched: Arc<AtomicUsize>,
}

impl Fetcher for Prices {
    type Key = String;
    type Value = u64;
    type Error = std::io::Error;

    async fn fetch(
        &self,
        skus: &[String],
        values: &mut Values<String, u64>,
    ) -> Result<(), Self::Error> {
        self.skus_fetched.fetch_add(skus.len(), Ordering::Relaxed);
        for sku in skus {
            let cents = sku.bytes().map(u64::from).sum::<u64>() * 10;
            values.insert(sku.clone(), cents);
        }
        Ok(())
    }
}

fn main() {
    let skus_fetched = Arc::new(AtomicUsize::new(0));
    let totals = async_std::task::block_on(async {
        let prices = BatchFetcher::builder(Prices {
            skus_fetched: skus_fetched.clone(),
        })
        .spawner(AsyncStdSpawner)
        .build()
        .unwrap();
        let carts: Vec<Vec<String>> = (0..300)
            .map(|cart| {
                (0..5)
                    .map(|item| format!("sku-{}", (cart + item * 7) % 40))
                    .collect()
            })
            .collect();
        let tasks: Vec<_> = carts
            .into_iter()
            .map(|cart| {
                let prices = prices.clone();
                async_std::task::spawn(async move {
                    prices.load_many(&cart).await.unwrap().iter().sum::<u64>()
                })
            })
            .collect();
        let totals = futures::future::join_all(tasks).await;
        prices.close().await;
        totals
    });
    let fetched = skus_fetched.load(Ordering::Relaxed);
    println!(
        "300 carts priced, {fetched} distinct SKUs fetched, first cart {} cents",
        totals[0]
    );
    assert_eq!(fetched, 40, "each of the 40 SKUs is fetched exactly once");
    assert_eq!(totals.len(), 300);
}
