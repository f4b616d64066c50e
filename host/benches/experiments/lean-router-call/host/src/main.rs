//! Times one call of each export of `../wit/lean.wit` on one pooled instance, a million times
//! after a warm-up round. See `../run.sh` and BENCHMARKS.md.

use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod s {
    wasmtime::component::bindgen!({ path: "../wit", world: "lean" });
}
mod a {
    wasmtime::component::bindgen!({ path: "../wit", world: "lean", imports: { default: async }, exports: { default: async } });
}

struct St {
    wasi: WasiCtx,
    table: ResourceTable,
}
impl WasiView for St {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
impl s::proto::lean::kvx::Host for St {
    fn get(&mut self, _k: String) -> Option<Vec<u8>> {
        None
    }
}
impl a::proto::lean::kvx::Host for St {
    async fn get(&mut self, _k: String) -> Option<Vec<u8>> {
        None
    }
}
impl s::proto::lean::types::Host for St {}
impl a::proto::lean::types::Host for St {}

fn st() -> St {
    St { wasi: WasiCtx::builder().build(), table: ResourceTable::new() }
}

fn main() {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::new()));
    let engine = Engine::new(&config).unwrap();
    let path = std::env::args().nth(1).unwrap();
    let component = Component::from_file(&engine, &path).unwrap();
    let n = 1_000_000u32;

    // Sync: no async imports anywhere, so `call` is allowed.
    {
        let mut linker: Linker<St> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        s::Lean::add_to_linker::<St, HasSelf<St>>(&mut linker, |s| s).unwrap();
        let mut store = Store::new(&engine, st());
        store.set_epoch_deadline(1_000_000);
        let lean = s::Lean::instantiate(&mut store, &component, &linker).unwrap();
        let info = s::proto::lean::types::RouteInfo {
            content: Some("message number 1".into()),
            from_addr: Some("127.0.0.1:10001".into()),
            to_addr: Some("127.0.0.1:9010".into()),
            endpoint: None,
            session_event: Some(s::proto::lean::types::SessionEvent::Resume),
        };
        for round in 0..2 {
            let t = Instant::now();
            for _ in 0..n {
                let r = lean.call_route_inbound(&mut store, &info, "bench").unwrap().unwrap();
                assert_eq!(r.len(), 1);
            }
            if round == 1 {
                println!("lean, sync call: {:.0} ns", t.elapsed().as_nanos() as f64 / f64::from(n));
            }
        }
    }
    // Async: the same component and record through call_async, as the host calls plugins now.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut linker: Linker<St> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        a::Lean::add_to_linker::<St, HasSelf<St>>(&mut linker, |s| s).unwrap();
        let mut store = Store::new(&engine, st());
        store.set_epoch_deadline(1_000_000);
        let lean = a::Lean::instantiate_async(&mut store, &component, &linker).await.unwrap();
        let info = a::proto::lean::types::RouteInfo {
            content: Some("message number 1".into()),
            from_addr: Some("127.0.0.1:10001".into()),
            to_addr: Some("127.0.0.1:9010".into()),
            endpoint: None,
            session_event: Some(a::proto::lean::types::SessionEvent::Resume),
        };
        for round in 0..2 {
            let t = Instant::now();
            for _ in 0..n {
                let r = lean.call_route_inbound(&mut store, &info, "bench").await.unwrap().unwrap();
                assert_eq!(r.len(), 1);
            }
            if round == 1 {
                println!("lean, async call: {:.0} ns", t.elapsed().as_nanos() as f64 / f64::from(n));
            }
        }
        let full = a::proto::lean::types::UserMessage {
            message_id: "0123456789abcdef0123456789abcdef".into(),
            timestamp: "2026-11-30 12:00:00.000000".into(),
            to_addr: Some("127.0.0.1:9010".into()),
            from_addr: Some("127.0.0.1:10001".into()),
            to_addr_type: None, from_addr_type: None, in_reply_to: None,
            session_event: Some(a::proto::lean::types::SessionEvent::Resume),
            content: Some("message number 1".into()),
            transport_name: Some("bench".into()),
            transport_type: Some("telnet".into()),
            group: None, provider: None,
            transport_metadata: "{}".into(), helper_metadata: "{}".into(), routing_metadata: "{}".into(),
        };
        for round in 0..2 {
            let t = Instant::now();
            for _ in 0..n {
                let r = lean.call_route_full(&mut store, &full, "bench").await.unwrap().unwrap();
                assert_eq!(r.len(), 1);
            }
            if round == 1 {
                println!("full user-message record, async call: {:.0} ns", t.elapsed().as_nanos() as f64 / f64::from(n));
            }
        }
    });
}
