//! anybatch on an executor it does not know: `futures`' `ThreadPool`, plugged
//! in with a closure. Geocodes addresses; unknown ones come back as
//! `NotFound` per key through `load_each`.
//!
//! Run: `cargo run --example custom_spawner`

use anybatch::{BatchFetcher, BoxFuture, Fetcher, LoadError, Values};
use futures::executor::{block_on, ThreadPool};

struct Geocoder;

impl Fetcher for Geocoder {
    type Key = &'static str;
    type Value = (i32, i32);
    type Error = std::io::Error;

    async fn fetch(
        &self,
        places: &[&'static str],
        values: &mut Values<&'static str, (i32, i32)>,
    ) -> Result<(), Self::Error> {
        let known = [
            ("Lisbon", (38, -9)),
            ("Oslo", (59, 10)),
            ("Quito", (0, -78)),
        ];
        values.extend(
            known
                .into_iter()
                .filter(|(place, _)| places.contains(place)),
        );
        Ok(())
    }
}

fn main() {
    let pool = ThreadPool::new().expect("a thread pool");
    let geocoder = BatchFetcher::builder(Geocoder)
        .spawner(move |task: BoxFuture| pool.spawn_ok(task))
        .build()
        .unwrap();
    let places = ["Oslo", "Atlantis", "Quito", "Lisbon", "Oslo"];
    let results = block_on(geocoder.load_each(&places));
    for (place, result) in places.iter().zip(&results) {
        match result {
            Ok((lat, lon)) => println!("{place:<9} {lat:>4} {lon:>4}"),
            Err(error) => println!("{place:<9} {error}"),
        }
    }
    assert_eq!(results[0], Ok((59, 10)));
    assert_eq!(results[1], Err(LoadError::NotFound));
    assert_eq!(results[4], results[0]);
}
