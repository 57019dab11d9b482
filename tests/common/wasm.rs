//! Running a test body on wasm32: one JavaScript thread, tasks on its event
//! loop through anybatch's `WasmSpawner`.

use std::future::Future;
use std::pin::pin;

use futures::future::{select, Either};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::{Rt, HANG_LIMIT};

/// Runs `body` as a task on the event loop (`spawn_local`, as the loader's
/// own tasks are), failing after [`HANG_LIMIT`].
pub async fn run_wasm<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + 'static,
{
    let rt = Rt::Wasm(anybatch::WasmSpawner);
    let task = rt.spawn(body(rt.clone()));
    // The guard sleeps on JavaScript's own timer, not futures-timer, so a
    // broken futures-timer fails the test instead of hanging CI.
    let limit = i32::try_from(HANG_LIMIT.as_millis()).expect("a hang limit in i32 milliseconds");
    if let Either::Right(_) = select(pin!(task), pin!(js_sleep(limit))).await {
        panic!("test hung on wasm (no end after {HANG_LIMIT:?})");
    }
}

/// Waits `ms` milliseconds on JavaScript's `setTimeout` (Node and browsers
/// both have it on the global object).
pub async fn js_sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout =
            js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout")).expect("setTimeout");
        let set_timeout: js_sys::Function = set_timeout.into();
        set_timeout
            .call2(&global, &resolve, &JsValue::from(ms))
            .expect("setTimeout call");
    });
    JsFuture::from(promise).await.expect("timeout promise");
}
