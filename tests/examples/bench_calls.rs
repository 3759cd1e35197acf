//! DynamoDB calls and sequential round trips per request, with the template's rate limits on
//! and off: the function binaries behind a counting proxy in front of DynamoDB Local
//! (e2e::calls). Prints figures; `tests/e2e/calls.rs` asserts the budgets.
//! `infra/bench-calls.sh` builds the binaries, starts the emulators and runs this.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[tokio::main]
async fn main() {
    for on in [true, false] {
        let rows = e2e::calls::measure(on).await;
        println!("rate limits {}:\n{}", if on { "on" } else { "off" }, e2e::calls::table(&rows));
    }
    println!("budgets (rate limits on): request, calls, round trips");
    for (r, c, t) in e2e::calls::BUDGETS {
        println!("  {r:<34} ≤ {c} calls, ≤ {t} round trips");
    }
}
