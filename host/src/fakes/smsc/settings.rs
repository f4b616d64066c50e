//! How the fake behaves: id and receipt forms, error and throttle rates, and `POST /settings`'s patch.

use serde::{Deserialize, Serialize};

macro_rules! named {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Its name on the command line and in `/settings`.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(concat!("`{}` is not ", $what, " (one of: {})"), s, [$($name),+].join(", "))),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

/// How the `message_id` in `submit_sm_resp` is written: SMSCs differ, and an ESME must match
/// receipts to messages whichever they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Lowercase hex, no padding (`1f`).
    Hex,
    /// Decimal (`31`).
    Decimal,
    /// Uppercase hex, zero-padded to 10 digits (`000000001F`).
    HexZeros,
    /// A UUID derived from the counter (deterministic, v4-shaped).
    Uuid,
}
named!(IdFormat, "an id format", { Hex => "hex", Decimal => "decimal", HexZeros => "hex-zeros", Uuid => "uuid" });

impl IdFormat {
    /// Message number `n` in this form.
    pub fn format(self, n: u64) -> String {
        match self {
            IdFormat::Hex => format!("{n:x}"),
            IdFormat::Decimal => n.to_string(),
            IdFormat::HexZeros => format!("{n:010X}"),
            IdFormat::Uuid => {
                // The same id for the same number, run after run.
                let bytes = fastrand::Rng::with_seed(n).u128(..).to_be_bytes();
                uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
            }
        }
    }
}

/// How the id inside a receipt is written, compared with the response's: Nexmo, for one,
/// answers in hex and receipts in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptIdFormat {
    /// As in the `submit_sm_resp`.
    Same,
    /// The counter in decimal, whatever the response said.
    Decimal,
    /// The counter in lowercase hex.
    Hex,
}
named!(ReceiptIdFormat, "a receipt id format", { Same => "same", Decimal => "decimal", Hex => "hex" });

/// The outcome every receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStat {
    /// `DELIVRD`.
    Delivered,
    /// `UNDELIV` (as `Undeliverable`; kept as its own name for readability on the command line).
    Failed,
    /// `UNDELIV`.
    Undeliverable,
    /// `EXPIRED`.
    Expired,
    /// `REJECTD`.
    Rejected,
    /// `ENROUTE`, an intermediate state.
    Enroute,
    /// `ACCEPTD`, an intermediate state.
    Accepted,
    /// No receipts at all (`none`).
    Off,
}
named!(ReceiptStat, "a receipt outcome", {
    Delivered => "delivered", Failed => "failed", Undeliverable => "undeliverable", Expired => "expired",
    Rejected => "rejected", Enroute => "enroute", Accepted => "accepted", Off => "none",
});

impl ReceiptStat {
    /// The `stat:` word, the `message_state` value (SMPP 3.4 §5.2.28), and whether it is a
    /// failure (receipts asked for on failure only get just those). `None` for [`Self::Off`].
    pub(super) fn stat(self) -> Option<(&'static str, u8, bool)> {
        Some(match self {
            ReceiptStat::Delivered => ("DELIVRD", 2, false),
            ReceiptStat::Failed | ReceiptStat::Undeliverable => ("UNDELIV", 5, true),
            ReceiptStat::Expired => ("EXPIRED", 3, true),
            ReceiptStat::Rejected => ("REJECTD", 8, true),
            ReceiptStat::Enroute => ("ENROUTE", 1, false),
            ReceiptStat::Accepted => ("ACCEPTD", 6, false),
            ReceiptStat::Off => return None,
        })
    }
}

/// Where a receipt says what happened: SMSCs use TLVs, the Appendix B text, or both, and an
/// ESME must read each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptAs {
    /// `receipted_message_id` and `message_state`, with an empty `short_message`.
    Tlv,
    /// The text only.
    Text,
    /// Both.
    Both,
}
named!(ReceiptAs, "a receipt form", { Tlv => "tlv", Text => "text", Both => "both" });

/// How the fake behaves. All but the account and the seed can be changed while it runs
/// (`POST /settings`), so a test can, say, start throttling mid-run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The account an ESME must bind with.
    pub system_id: String,
    /// Its password.
    #[serde(skip)]
    pub password: String,
    /// Wait before each `submit_sm_resp` (responses stay in order; submits still pipeline).
    pub delay_ms: u64,
    /// Share of submits answered `ESME_RSUBMITFAIL`.
    pub error_rate: f64,
    /// Share answered `ESME_RTHROTTLED`.
    pub throttle_rate: f64,
    /// Share answered `ESME_RMSGQFUL`.
    pub queue_full_rate: f64,
    /// Close a connection, unanswered, on its Nth `submit_sm` (0: never).
    pub drop_after: u64,
    /// At such a drop, take the `submit_sm` first (it is stored and its receipt will come)
    /// and drop the link before answering it, as an SMSC that dies mid-write does: the ESME
    /// never learns that copy's id.
    pub drop_accepts: bool,
    /// The form of ids in `submit_sm_resp`.
    pub id_format: IdFormat,
    /// The form of ids in receipts.
    pub receipt_id_format: ReceiptIdFormat,
    /// What receipts report (or none).
    pub receipt: ReceiptStat,
    /// TLVs, text or both.
    pub receipt_as: ReceiptAs,
    /// Wait after the `submit_sm_resp` before the receipt.
    pub receipt_delay_ms: u64,
    /// Seed of the PRNG behind the rates: each connection draws from its own stream of it, so a
    /// run repeats exactly.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system_id: "smppclient1".into(),
            password: "password".into(),
            delay_ms: 0,
            error_rate: 0.0,
            throttle_rate: 0.0,
            queue_full_rate: 0.0,
            drop_after: 0,
            drop_accepts: false,
            id_format: IdFormat::Hex,
            receipt_id_format: ReceiptIdFormat::Same,
            receipt: ReceiptStat::Delivered,
            receipt_as: ReceiptAs::Both,
            receipt_delay_ms: 0,
            seed: 0,
        }
    }
}

/// Settings that make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A rate outside 0.0–1.0.
    #[error("{name} must be a fraction from 0.0 to 1.0, not {value}")]
    Rate {
        /// Which.
        name: &'static str,
        /// What it was.
        value: f64,
    },
    /// Rates that add up to more than every submit.
    #[error(
        "error_rate + throttle_rate + queue_full_rate is {0}, but they are shares of the same submits, so together at most 1.0"
    )]
    RatesOver(f64),
}

impl Settings {
    /// Check the rates: each a fraction, and together at most all submits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, value) in [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("queue_full_rate", self.queue_full_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SettingsError::Rate { name, value });
            }
        }
        let sum = self.error_rate + self.throttle_rate + self.queue_full_rate;
        if sum > 1.0 + 1e-9 {
            return Err(SettingsError::RatesOver(sum));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsPatch {
    pub(super) delay_ms: Option<u64>,
    pub(super) error_rate: Option<f64>,
    pub(super) throttle_rate: Option<f64>,
    pub(super) queue_full_rate: Option<f64>,
    pub(super) drop_after: Option<u64>,
    pub(super) drop_accepts: Option<bool>,
    pub(super) receipt: Option<String>,
    pub(super) receipt_as: Option<String>,
    pub(super) receipt_delay_ms: Option<u64>,
    pub(super) id_format: Option<String>,
    pub(super) receipt_id_format: Option<String>,
}

pub(super) fn apply(s: &mut Settings, p: SettingsPatch) -> Result<(), String> {
    pub(super) fn set<T: Copy>(slot: &mut T, v: Option<T>) {
        if let Some(v) = v {
            *slot = v;
        }
    }
    pub(super) fn named<T: std::str::FromStr<Err = String>>(
        field: &str,
        slot: &mut T,
        v: Option<String>,
    ) -> Result<(), String> {
        if let Some(v) = v {
            *slot = v.parse().map_err(|e| format!("`{field}`: {e}"))?;
        }
        Ok(())
    }
    set(&mut s.delay_ms, p.delay_ms);
    set(&mut s.error_rate, p.error_rate);
    set(&mut s.throttle_rate, p.throttle_rate);
    set(&mut s.queue_full_rate, p.queue_full_rate);
    set(&mut s.drop_after, p.drop_after);
    set(&mut s.drop_accepts, p.drop_accepts);
    set(&mut s.receipt_delay_ms, p.receipt_delay_ms);
    named("receipt", &mut s.receipt, p.receipt)?;
    named("receipt_as", &mut s.receipt_as, p.receipt_as)?;
    named("id_format", &mut s.id_format, p.id_format)?;
    named("receipt_id_format", &mut s.receipt_id_format, p.receipt_id_format)?;
    s.validate().map_err(|e| e.to_string())
}
