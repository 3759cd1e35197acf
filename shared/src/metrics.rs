//! Metrics without API calls: CloudWatch Embedded Metric Format lines on stdout, which Lambda
//! ships to CloudWatch Logs and CloudWatch turns into metrics. Emitted in Lambda, or wherever
//! `METRICS=emf` is set; silent otherwise (the local server's console stays readable).

use std::sync::OnceLock;

/// Namespace of every metric (the alarms in template.yaml use it).
pub const NAMESPACE: &str = "SecureAuth";

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("METRICS").is_ok_and(|v| v.eq_ignore_ascii_case("emf"))
    })
}

/// The EMF line for one count of `metric` (public for tests).
pub fn emf_line(metric: &str, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[]], "Metrics": [{"Name": metric, "Unit": "Count"}]}]
        },
        metric: 1
    })
    .to_string()
}

/// Counts one occurrence of `metric` (LoginSucceeded, LoginFailed, AccountLocked, RateLimited,
/// RefreshTokenReuse, MailFailed).
pub fn count(metric: &str) {
    if enabled() {
        println!("{}", emf_line(metric, chrono::Utc::now().timestamp_millis()));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_line_declares_the_metric_and_its_value() {
        let v: serde_json::Value = serde_json::from_str(&super::emf_line("AccountLocked", 1)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "SecureAuth");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "AccountLocked");
        assert_eq!(v["AccountLocked"], 1);
    }
}
