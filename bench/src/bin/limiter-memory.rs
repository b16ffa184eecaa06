//! `limiter-memory`: what one caller costs in the api's rate-limit table, and how fast keys can
//! be added, for the `CallerKey` table against the `String`-keyed table it replaced, in one
//! process. Prints a markdown table (`make bench` appends it to the report).
//!
//! Memory is the growth of this process's resident set while the table fills (keys, bucket
//! states, the sharded map's slots and the allocator's own overhead), so it is what a real
//! process pays. `LIMITER_BENCH_KEYS` (default 100,000: the default `RATE_LIMIT_MAX_KEYS`) callers are added.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use api::platform::rate_limit::{CALLER_KEY_BYTES, CallerKey, keyed_limiter};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

/// This process's resident memory in bytes (Linux `VmRSS`).
fn live() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

/// The i-th caller's address: distinct for every i below 2^24.
fn address(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0000 | (i & 0x00FF_FFFF))
}

/// (bytes per key, keys added per second) for adding `keys` callers through `add`.
fn measure(keys: u32, mut add: impl FnMut(u32)) -> (f64, f64) {
    let before = live();
    let started = Instant::now();
    for i in 0..keys {
        add(i);
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = live() - before;
    (bytes / f64::from(keys), f64::from(keys) / seconds)
}

/// Fills one table in this process and prints "bytes-per-key keys-per-second".
fn fill(kind: &str, keys: u32) {
    let (bytes, rate) = if kind == "string" {
        // The previous table: `String` keys formatted per request ("ip:10.0.0.1").
        let quota = Quota::per_minute(std::num::NonZeroU32::new(20).expect("non-zero"))
            .allow_burst(std::num::NonZeroU32::new(10).expect("non-zero"));
        let table = RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>();
        let measured = measure(keys, |i| {
            let _ = table.check_key(&format!("ip:{}", address(i)));
        });
        assert_eq!(table.len(), keys as usize, "every caller has a bucket");
        measured
    } else {
        let table = keyed_limiter(20, 10);
        let measured = measure(keys, |i| {
            let _ = table.check_key(&CallerKey::Ip(IpAddr::V4(address(i))));
        });
        assert_eq!(table.len(), keys as usize, "every caller has a bucket");
        measured
    };
    println!("{bytes} {rate}");
}

/// Runs `fill` in a fresh process, so neither table reuses memory the other freed.
fn fill_in_child(kind: &str, keys: u32) -> (f64, f64) {
    let exe = std::env::current_exe().expect("own path");
    let output = std::process::Command::new(exe)
        .args(["--fill", kind])
        .env("LIMITER_BENCH_KEYS", keys.to_string())
        .output()
        .expect("run child");
    assert!(output.status.success(), "child failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text
        .split_whitespace()
        .map(|n| n.parse::<f64>().expect("number"));
    (
        numbers.next().expect("bytes"),
        numbers.next().expect("rate"),
    )
}

fn main() {
    let keys: u32 = std::env::var("LIMITER_BENCH_KEYS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, kind] = args.as_slice()
        && flag == "--fill"
    {
        fill(kind, keys);
        return;
    }

    let (string_bytes, string_rate) = fill_in_child("string", keys);
    let (key_bytes, key_rate) = fill_in_child("caller-key", keys);
    println!("| rate-limit table, {keys} callers | bytes per caller | callers added per second |");
    println!("|---|---:|---:|");
    println!("| `String` keys (before) | {string_bytes:.0} | {string_rate:.0} |");
    println!("| `CallerKey` ({CALLER_KEY_BYTES} bytes inline) | {key_bytes:.0} | {key_rate:.0} |");
    println!(
        "| ratio `CallerKey` / `String` | {:.2} | {:.2} |",
        key_bytes / string_bytes,
        key_rate / string_rate
    );
    println!();
    println!(
        "A full table ({keys} callers) holds {:.1} MiB per scope.",
        key_bytes * f64::from(keys) / (1024.0 * 1024.0)
    );
}
