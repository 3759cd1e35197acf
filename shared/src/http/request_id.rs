//! The request id: API Gateway's id in Lambda, an echoed well-formed `X-Request-Id`, or a
//! fresh UUID. Held in a task-local so that the one error mapping can put it in every problem.

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id ("" outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// An incoming id is echoed only if it is short and made of safe characters.
pub fn well_formed(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}
