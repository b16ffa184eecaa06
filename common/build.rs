//! `sqlx::migrate!` embeds the migrations when `common` compiles, but Cargo only notices
//! changes to the files it already embedded: without this, a newly added migration would be
//! missing from binaries built incrementally (e.g. `make run` after a pull).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
