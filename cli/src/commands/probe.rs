//! `magnetar probe URL`: a health probe for containers, whose images carry no curl. GETs the
//! URL once (5 s bound) and exits 0 on a 2xx answer; otherwise prints the status and body on
//! one line and exits 1. Docker `HEALTHCHECK`s and Kubernetes `exec` probes call it.

use std::time::Duration;

use anyhow::{Context, bail};

/// Flags of `magnetar probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to GET, e.g. http://127.0.0.1:8080/admin/v2/brokers/health.
    url: String,
    /// Longest wait for the answer, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// Runs `magnetar probe`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        .build()
        .into();
    let mut resp = agent
        .get(&args.url)
        .call()
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = resp.status();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if !status.is_success() {
        bail!("{} answered {}: {}", args.url, status.as_u16(), body.trim());
    }
    Ok(())
}
