//! `vumi fake-smsc`: the far end of an SMPP transport, for trying things out and for tests.

use std::net::SocketAddr;

use anyhow::Context;

use crate::fakes::smsc::{self as fake, IdFormat, ReceiptAs, ReceiptIdFormat, ReceiptStat, Settings};

/// The fake SMSC's flags. Everything after the account can also be changed while it runs,
/// with `POST /settings`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to accept SMPP binds on. A bare port number means 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2775", value_parser = parse_addr)]
    pub bind: SocketAddr,
    /// SMPP port on 127.0.0.1 (shorthand for --bind 127.0.0.1:N); 0 picks a free port, which the
    /// ready line names.
    #[arg(long, value_name = "N", conflicts_with = "bind")]
    pub port: Option<u16>,
    /// Address of the HTTP control API (POST /mo, GET /mt, GET /stats, POST /settings, ...).
    /// Port 0, or a bare `0`, picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2776", value_parser = parse_addr)]
    pub http: SocketAddr,
    /// The account ESMEs must bind with (else ESME_RINVSYSID).
    #[arg(long, default_value = "smppclient1")]
    pub system_id: String,
    /// Its password (else ESME_RINVPASWD).
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Milliseconds to wait before each submit_sm_resp, as a slow SMSC does. Submits still
    /// pipeline; responses keep their order.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Share of submits (0.0 to 1.0) refused with ESME_RSUBMITFAIL (0x45).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,
    /// Share of submits refused with ESME_RTHROTTLED (0x58), for testing back-off.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub throttle_rate: f64,
    /// Share of submits refused with ESME_RMSGQFUL (0x14).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub queue_full_rate: f64,
    /// Close the TCP connection, unanswered and without unbind, on the Nth submit_sm of each
    /// connection (0: never). The count restarts on the next connection, so a client's rebinds
    /// can be tested.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drop_after: u64,
    /// With --drop-after: take that submit_sm first (stored, its receipt will come) and drop
    /// the link before answering it, as an SMSC that dies mid-write does. The ESME never learns
    /// that copy's id, so its receipt matches nothing.
    #[arg(long)]
    pub drop_accepts: bool,
    /// How submit_sm_resp writes message ids: hex (`1f`), decimal (`31`), hex-zeros
    /// (`000000001F`) or uuid. Ids come from one counter.
    #[arg(long, value_name = "FORM", default_value = "hex")]
    pub id_format: IdFormat,
    /// How receipts write the id: same (as the response), decimal or hex (of the counter).
    /// `--id-format hex --receipt-id-format decimal` is what Nexmo does.
    #[arg(long, value_name = "FORM", default_value = "same")]
    pub receipt_id_format: ReceiptIdFormat,
    /// The outcome of the receipt sent for each submit asking for one (registered_delivery):
    /// delivered, failed, undeliverable, expired, rejected, enroute, accepted, or none.
    #[arg(long, value_name = "STAT", default_value = "delivered")]
    pub receipt: ReceiptStat,
    /// Where receipts say it: tlv (receipted_message_id and message_state, empty text), text
    /// (the SMPP 3.4 Appendix B `id:... stat:...` text), or both.
    #[arg(long, value_name = "FORM", default_value = "both")]
    pub receipt_as: ReceiptAs,
    /// Milliseconds between a submit_sm_resp and its receipt.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub receipt_delay_ms: u64,
    /// Seed for the rates' random draws: the same seed gives the same answers, connection by
    /// connection.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("`{s}` is not an address such as 127.0.0.1:2775 (or a bare port)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a fraction from 0.0 to 1.0 (0.1 is one submit in ten)")),
    }
}

/// Bind both listeners, print the ready line, serve until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let smpp_addr = args.port.map_or(args.bind, |p| SocketAddr::from(([127, 0, 0, 1], p)));
    let settings = Settings {
        system_id: args.system_id,
        password: args.password,
        delay_ms: args.delay_ms,
        error_rate: args.error_rate,
        throttle_rate: args.throttle_rate,
        queue_full_rate: args.queue_full_rate,
        drop_after: args.drop_after,
        drop_accepts: args.drop_accepts,
        id_format: args.id_format,
        receipt_id_format: args.receipt_id_format,
        receipt: args.receipt,
        receipt_as: args.receipt_as,
        receipt_delay_ms: args.receipt_delay_ms,
        seed: args.seed,
    };
    settings.validate()?;
    let smpp = tokio::net::TcpListener::bind(smpp_addr)
        .await
        .with_context(|| format!("cannot listen for SMPP on {smpp_addr}"))?;
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http))?;
    // A stable line on stdout: tests wait for it and read the ports from it.
    println!("vumi: fake SMSC listening on {} (SMPP), http on {}", smpp.local_addr()?, http.local_addr()?);
    fake::serve(smpp, http, settings, super::wait_for_signal()).await?;
    Ok(())
}
