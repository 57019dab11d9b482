use super::{BoxFuture, Spawner};

/// Spawns on the JavaScript event loop (`wasm_bindgen_futures::spawn_local`):
/// the default spawner on wasm32, in the browser and in Node.
#[derive(Clone, Copy, Debug, Default)]
pub struct WasmSpawner;

impl Spawner for WasmSpawner {
    fn spawn(&self, future: BoxFuture) {
        wasm_bindgen_futures::spawn_local(future);
    }
}
