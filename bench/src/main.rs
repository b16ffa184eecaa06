//! `bench-hello`: a bare Poem hello-world, the throughput ceiling in `scripts/bench.sh`.
//!
//! It has no middleware, no state and no logging on purpose: measured in the same session as
//! the api, it shows how much of the api's cost is Poem and the machine itself and how much is
//! ours. Listens on `BENCH_HELLO_ADDR` (default `127.0.0.1:8090`); `GET /` answers `ok`.

use poem::listener::TcpListener;
use poem::{Route, Server, get, handler};

const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[handler]
fn hello() -> &'static str {
    "ok"
}

// The same runtime flavour as the api (multi-thread, one worker per core), so the ceiling
// compares like with like.
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("BENCH_HELLO_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let app = Route::new().at("/", get(hello));
    Server::new(TcpListener::bind(addr)).run(app).await
}
